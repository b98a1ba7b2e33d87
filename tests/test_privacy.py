"""Unit tests for clinops.privacy: tokens and roles, consent and purpose, pseudonyms, minimisation."""
from __future__ import annotations

import hashlib
import hmac
import os
import stat

import pytest
import yaml

from clinops.privacy import (
    ROLES,
    AuthenticationError,
    AuthorizationError,
    ConsentError,
    ConsentRegistry,
    Principal,
    PrivacyError,
    PurposeError,
    TokenRegistry,
    hash_token,
    load_or_create_key,
    pseudonymise,
)

KEY = b"k" * 32


def test_hash_token_known_answer():
    # SHA-256("test") is a published test vector
    assert hash_token("test") == "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def _write_tokens(tmp_path, entries):
    path = tmp_path / "tokens.yaml"
    path.write_text(yaml.safe_dump({"tokens": entries}))
    return path


def test_token_registry_authenticates_each_role(tmp_path):
    entries = [{"name": f"user-{r}", "role": r, "sha256": hash_token(f"tok-{r}")} for r in ROLES]
    registry = TokenRegistry.load(_write_tokens(tmp_path, entries))
    for role in ROLES:
        assert registry.authenticate(f"Bearer tok-{role}") == Principal(f"user-{role}", role)
    # scheme is case-insensitive (RFC 6750 / 7235)
    assert registry.authenticate("bearer tok-dpo").role == "dpo"


@pytest.mark.parametrize(
    "header, rule",
    [
        (None, "a bearer token is required"),
        ("", "a bearer token is required"),
        ("Basic dXNlcjpwYXNz", "must be 'Bearer <token>'"),
        ("Bearer ", "must be 'Bearer <token>'"),
        ("Bearer not-a-token", "unknown bearer token"),
    ],
)
def test_token_registry_rejects(tmp_path, header, rule):
    registry = TokenRegistry.load(_write_tokens(tmp_path, [{"name": "a", "role": "system", "sha256": hash_token("x")}]))
    with pytest.raises(AuthenticationError) as info:
        registry.authenticate(header)
    assert info.value.field == "Authorization"
    assert info.value.rule == rule


def test_require_role():
    clinician = Principal("c", "clinician")
    assert TokenRegistry.require(clinician, ["clinician", "reviewer"]) is clinician
    with pytest.raises(AuthorizationError) as info:
        TokenRegistry.require(clinician, ["reviewer"])
    assert info.value.field == "role" and "'clinician'" in info.value.rule and "reviewer" in info.value.rule


@pytest.mark.parametrize(
    "entry, field",
    [
        ({"name": "a", "role": "admin", "sha256": hash_token("x")}, "tokens[0].role"),
        ({"name": "a", "role": "system", "sha256": "plaintext"}, "tokens[0].sha256"),
        ({"name": "a", "role": "system"}, "tokens[0].sha256"),
        ({"role": "system", "sha256": hash_token("x")}, "tokens[0].name"),
    ],
)
def test_token_file_errors_name_the_entry(tmp_path, entry, field):
    with pytest.raises(PrivacyError) as info:
        TokenRegistry.load(_write_tokens(tmp_path, [entry]))
    assert info.value.field == field


def test_token_file_duplicates_and_missing(tmp_path):
    dup = [{"name": "a", "role": "system", "sha256": hash_token("x")}, {"name": "b", "role": "dpo", "sha256": hash_token("x")}]
    with pytest.raises(AuthenticationError, match="duplicate token hash"):
        TokenRegistry.load(_write_tokens(tmp_path, dup))
    with pytest.raises(AuthenticationError, match="does not exist"):
        TokenRegistry.load(tmp_path / "nope.yaml")


def test_pseudonymise_known_answer_and_domains():
    expected = hmac.new(KEY, b"encounter\x1f30000001", hashlib.sha256).hexdigest()
    assert pseudonymise("30000001", KEY) == expected
    assert pseudonymise("30000001", KEY, domain="subject") != expected
    assert pseudonymise("30000001", b"j" * 32) != expected
    with pytest.raises(PrivacyError, match="at least 16 bytes"):
        pseudonymise("1", b"short")


def test_load_or_create_key_is_stable_and_private(tmp_path):
    path = tmp_path / "keys" / "privacy.key"
    key = load_or_create_key(path)
    assert len(key) == 32
    assert load_or_create_key(path) == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


SEED = {
    "purposes": {"direct_care": "treating team", "research": "approved protocol", "quality_improvement": "audit"},
    "consents": [
        {"encounter_id": "1001", "purposes": ["direct_care", "quality_improvement"]},
        {"encounter_id": 1002, "purposes": ["direct_care", "research"]},
    ],
}


@pytest.fixture()
def seed_path(tmp_path):
    path = tmp_path / "consent.yaml"
    path.write_text(yaml.safe_dump(SEED))
    return path


def test_consent_registry_checks_purpose(tmp_path, seed_path):
    registry = ConsentRegistry.open(tmp_path / "consent.sqlite", key=KEY, seed_path=seed_path)
    assert registry.purposes() == {"direct_care": "treating team", "quality_improvement": "audit", "research": "approved protocol"}
    assert registry.allowed_purposes("1002") == {"direct_care", "research"}
    registry.check("1001", "direct_care")
    with pytest.raises(ConsentError) as info:
        registry.check("1001", "research")
    assert info.value.field == "purpose"
    assert info.value.rule == "consent for this encounter covers ['direct_care', 'quality_improvement'], not 'research'"
    with pytest.raises(ConsentError, match="no consent is recorded"):
        registry.check("9999", "direct_care")
    with pytest.raises(PurposeError, match="not a registered purpose"):
        registry.check("1001", "marketing")
    with pytest.raises(PurposeError):
        registry.grant("1003", ["marketing"])


def test_consent_erasure_survives_restart_and_reseed(tmp_path, seed_path):
    db = tmp_path / "consent.sqlite"
    registry = ConsentRegistry.open(db, key=KEY, seed_path=seed_path)
    assert registry.erase("1001") == 2
    assert registry.is_erased("1001") and not registry.is_erased("1002")
    with pytest.raises(ConsentError, match="no consent"):
        registry.check("1001", "direct_care")
    with pytest.raises(ConsentError, match="erased"):
        registry.grant("1001", ["direct_care"])
    registry.close()
    reopened = ConsentRegistry.open(db, key=KEY, seed_path=seed_path)
    assert reopened.allowed_purposes("1001") == frozenset()
    reopened.seed(seed_path)  # an explicit re-seed must not resurrect the erased encounter
    assert reopened.allowed_purposes("1001") == frozenset()
    assert reopened.allowed_purposes("1002") == {"direct_care", "research"}
    # the tombstone holds a keyed pseudonym, never the identifier itself
    rows = reopened._db.execute("SELECT pseudonym FROM erased").fetchall()
    assert rows == [(pseudonymise("1001", KEY),)]


def test_consent_seed_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"purposes": {"direct_care": "x"}, "consents": [{"encounter_id": "1", "purposes": []}]}))
    with pytest.raises(ConsentError) as info:
        ConsentRegistry.open(":memory:", key=KEY, seed_path=bad)
    assert info.value.field == "consents[0].purposes"
    bad.write_text(yaml.safe_dump({"purposes": {"not a code": "x"}}))
    with pytest.raises(PurposeError) as info:
        ConsentRegistry.open(":memory:", key=KEY, seed_path=bad)
    assert info.value.field == "purposes.not a code"


def test_consent_store_is_private_and_erasure_overwrites(tmp_path, seed_path):
    db = tmp_path / "state" / "consent.sqlite"
    registry = ConsentRegistry.open(db, key=KEY, seed_path=seed_path)
    registry.grant("30000777", ["research"])
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600 and stat.S_IMODE(os.stat(db.parent).st_mode) == 0o700
    assert registry.erase("30000777") == 1
    registry.close()
    on_disk = b"".join(p.read_bytes() for p in db.parent.iterdir())
    assert b"30000777" not in on_disk              # neither in the database file nor in its log


def test_a_refused_grant_changes_nothing():
    registry = ConsentRegistry.open(":memory:", key=KEY)
    registry.add_purpose("direct_care", "treating team")
    with pytest.raises(PurposeError):
        registry.grant("1", ["direct_care", "marketing"])
    assert registry.allowed_purposes("1") == frozenset()
