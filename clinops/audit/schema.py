"""What callers may log: record kinds, the fields of each kind, payloads, subjects.

The trail refuses bad input before anything is written, with an error naming the field and the
rule: reserved kinds, identifier keys or values equal to the subject id, timestamps (the trail
stamps UTC time itself), non-finite numbers, oversized fields or payloads, and prediction
records without :data:`PREDICTION_FIELDS`.

Examples
--------
>>> encode_fields("review", {"requester": "dr-a", "score": 0.5}, subject=None)
'{"requester":"dr-a","score":0.5}'
>>> encode_fields("review", {"requester": "dr-a", "hadm_id": 7}, subject=None)
Traceback (most recent call last):
...
ValueError: fields.hadm_id: patient identifiers are never logged; pass the encounter id as subject= and it is pseudonymised
"""
from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Set
from typing import Any

from clinops.audit.encoding import canonical_json

__all__ = ["IDENTIFIER_KEYS", "PREDICTION_FIELDS", "RESERVED_KINDS", "USER_KINDS", "check_kind", "encode_fields",
           "encode_payload", "normalise_subject"]

#: Kinds the server and governance code write; any other ``[a-z][a-z0-9_]{1,31}`` kind is allowed.
USER_KINDS = ("prediction", "override", "escalation", "review", "deployment")
#: Kinds only the trail itself writes.
RESERVED_KINDS = frozenset({"erasure", "retention", "key_rotation", "recovery", "signing_key_rotation"})
#: What every prediction record must hold (the paper, "Audit trail implementation").
PREDICTION_FIELDS = ("model_version", "dataset_sha256", "raw_score", "probability", "conformal_set",
                     "requester", "purpose", "prediction_id")
#: Field names that carry patient identifiers in MIMIC-IV and EHR exports: never logged.
IDENTIFIER_KEYS = frozenset({"subject_id", "hadm_id", "stay_id", "encounter_id", "patient_id", "mrn",
                             "subject", "encounter"})
RESERVED_FIELDS = frozenset({"ts", "timestamp"})
MAX_FIELDS_BYTES = 32 * 1024
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_SUBJECT_CHARS = 256

_KIND_RE = re.compile(r"[a-z][a-z0-9_]{1,31}")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")


# -- validation of what callers log -----------------------------------------------------------
def normalise_subject(subject: object) -> str:
    """A subject (encounter) id as text; ints are accepted, everything else must be a non-empty str."""
    if isinstance(subject, bool) or not isinstance(subject, (str, int)):
        raise TypeError(f"subject: must be a str or int encounter id, got {type(subject).__name__}")
    text = str(subject)
    if not text.strip():
        raise ValueError("subject: must not be empty")
    if len(text) > MAX_SUBJECT_CHARS:
        raise ValueError(f"subject: at most {MAX_SUBJECT_CHARS} characters")
    return text


def _normalise(value: Any, path: str, subject: str | None) -> Any:
    """JSON-safe copy of ``value``; names the offending path in every error."""
    # exact-type fast paths for the common plain values and containers (the abc checks below
    # cost ~10x more, and a prediction record holds ~60 values)
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            raise ValueError(f"{path}: must be a finite number, got {value}")
        return value
    if kind is str:
        if subject is not None and value == subject:
            raise ValueError(f"{path}: holds the subject identifier; pass it only as subject=, "
                             "it is pseudonymised and never logged")
        return value
    if kind is dict:
        return _normalise_mapping(value, path, subject)
    if isinstance(value, (list, tuple)):  # concrete types: no abc check
        return [_normalise(item, f"{path}[{i}]", subject) for i, item in enumerate(value)]
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        if subject is not None and value == subject:
            raise ValueError(f"{path}: holds the subject identifier; pass it only as subject=, "
                             "it is pseudonymised and never logged")
        return value
    if isinstance(value, numbers.Integral):
        value = int(value)
        if subject is not None and str(value) == subject:
            raise ValueError(f"{path}: holds the subject identifier; pass it only as subject=, "
                             "it is pseudonymised and never logged")
        return value
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{path}: must be a finite number, got {value}")
        return value
    if isinstance(value, Mapping):
        return _normalise_mapping(value, path, subject)
    if isinstance(value, Set):
        items = [_normalise(item, f"{path}{{}}", subject) for item in value]
        return sorted(items, key=canonical_json)
    raise TypeError(f"{path}: {type(value).__name__} is not a JSON type (str, number, bool, None, "
                    "list, dict)")


def _normalise_mapping(value: Mapping[Any, Any], path: str, subject: str | None) -> dict[str, Any]:
    out = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"{path}: keys must be str, got {type(key).__name__} {key!r}")
        if key.lower() in IDENTIFIER_KEYS:
            raise ValueError(f"{path}.{key}: patient identifiers are never logged; pass the "
                             "encounter id as subject= and it is pseudonymised")
        # a finite float needs no copy and no path (most of a prediction's values)
        if type(item) is float and math.isfinite(item):
            out[key] = item
        else:
            out[key] = _normalise(item, f"{path}.{key}", subject)
    return out


def _require_str(fields: Mapping[str, Any], name: str) -> None:
    value = fields.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"fields.{name}: required, a non-empty string")


def check_kind(kind: object, *, internal: bool = False) -> str:
    """Validate a record kind; reserved kinds are allowed only from the trail itself."""
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        raise ValueError(f"kind: must match [a-z][a-z0-9_]{{1,31}}, got {kind!r}")
    if kind in RESERVED_KINDS and not internal:
        raise ValueError(f"kind: {kind!r} is reserved for the audit trail itself "
                         f"(use AuditTrail.erase / retention / rotate_key)")
    return kind


def encode_fields(kind: str, fields: Mapping[str, Any] | None, subject: str | None) -> str:
    """Validate ``fields`` for ``kind`` and return their canonical JSON text.

    Rules: a mapping of JSON values (numbers finite); no ``ts``/``timestamp`` key (the trail
    stamps UTC time); no identifier keys and no value equal to the subject id; every kind has a
    ``requester``; ``prediction`` records carry :data:`PREDICTION_FIELDS` with the types below.
    """
    if fields is None:
        fields = {}
    if not isinstance(fields, Mapping):
        raise TypeError(f"fields: must be a dict, got {type(fields).__name__}")
    for key in fields:
        if isinstance(key, str) and key in RESERVED_FIELDS:
            raise ValueError(f"fields.{key}: reserved; the trail stamps every record with UTC time")
    clean = _normalise(fields, "fields", subject)
    if kind not in RESERVED_KINDS:
        _require_str(clean, "requester")
    if kind == "prediction":
        for name in PREDICTION_FIELDS:
            if name not in clean:
                raise ValueError(f"fields.{name}: required in a prediction record")
        for name in ("model_version", "purpose", "prediction_id"):
            _require_str(clean, name)
        sha = clean["dataset_sha256"]
        if not isinstance(sha, str) or not _HEX64_RE.fullmatch(sha):
            raise ValueError("fields.dataset_sha256: must be 64 lowercase hex digits (SHA-256)")
        for name in ("raw_score", "probability"):
            if isinstance(clean[name], bool) or not isinstance(clean[name], (int, float)):
                raise ValueError(f"fields.{name}: must be a number")
        if not 0.0 <= clean["probability"] <= 1.0:
            raise ValueError(f"fields.probability: must be in [0, 1], got {clean['probability']}")
        if not isinstance(clean["conformal_set"], list):
            raise ValueError("fields.conformal_set: must be a list (or set) of labels")
    text = canonical_json(clean)
    if len(text) > MAX_FIELDS_BYTES:
        raise ValueError(f"fields: {len(text)} bytes as JSON, at most {MAX_FIELDS_BYTES}")
    return text


def encode_payload(payload: Mapping[str, Any], subject: str | None) -> bytes:
    """Validate a payload (feature values) and return the canonical JSON bytes to encrypt."""
    if not isinstance(payload, Mapping):
        raise TypeError(f"payload: must be a dict, got {type(payload).__name__}")
    data = canonical_json(_normalise(payload, "payload", subject)).encode("ascii")
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload: {len(data)} bytes as JSON, at most {MAX_PAYLOAD_BYTES}")
    return data
