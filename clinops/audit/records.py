"""Byte formats of the log: header, record lines, seal lines, checkpoints; input validation.

Every format is plain ASCII so it can be read, hashed and checked with standard tools. The
formats are specified in clinops/docs/audit.md ("File formats"); this module is their one implementation.

Record line (one JSON object on one line, keys in exactly this order)::

    {"seq":N,"prev":HEX64,"ts":UTC,"kind":KIND,"id":HEX32,"subject":PSEUDONYM|null,
     "fields":{...sorted keys...},"payload":{"alg":"A256GCM","dk":DEK_ID,"iv":B64,"ct":B64}|null}

Its leaf hash is ``SHA-256(0x00 || line)`` (the line without its newline): the RFC 6962 leaf of
the Merkle tree, and the value the next record's ``prev`` holds. Record 0's ``prev`` is the
genesis hash, ``SHA-256("clinops-audit/v1 genesis\\n" || header bytes)``.

Seal line (ends every commit; the Ed25519 signature covers the seal message)::

    {"seal":N,"head":HEX64,"ts":UTC,"kid":KID,"sig":B64}
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import numbers
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "Checkpoint",
    "Cosignature",
    "RecordFormatError",
    "RESERVED_KINDS",
    "USER_KINDS",
    "PREDICTION_FIELDS",
]

FORMAT = "clinops-audit"
#: 2: checkpoints as C2SP signed notes, data keys wrapped with subject and day (version 1 trails are refused).
VERSION = 2
DOMAIN = b"clinops-audit/v1"

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

RECORD_KEYS = ("seq", "prev", "ts", "kind", "id", "subject", "fields", "payload")
SEAL_KEYS = ("seal", "head", "ts", "kid", "sig")
PAYLOAD_KEYS = ("alg", "dk", "iv", "ct")

_KIND_RE = re.compile(r"[a-z][a-z0-9_]{1,31}")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_HEX32_RE = re.compile(r"[0-9a-f]{32}")
_PSEUDONYM_RE = re.compile(r"ps-[0-9a-f]{32}")
_TS_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_KID_RE = re.compile(r"[0-9a-f]{16}")


class RecordFormatError(ValueError):
    """A line of the log is not a well-formed record, seal or checkpoint."""


# -- time -----------------------------------------------------------------------------------
def utc_text(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` for an aware datetime (naive ones are rejected)."""
    if moment.tzinfo is None:
        raise ValueError("clock: timestamps must be timezone-aware (UTC), got a naive datetime")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_utc(text: str) -> datetime:
    """Inverse of :func:`utc_text`."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


# -- canonical JSON -------------------------------------------------------------------------
def canonical_json(value: Any) -> str:
    """Compact, key-sorted, ASCII-only JSON (the form hashed and searched)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Strict base64: only the canonical encoding is accepted.

    ``b64decode`` ignores the unused low bits of the last character, so several texts decode to
    the same bytes; a signature could then be altered without being detected. Re-encoding and
    comparing rules that out.
    """
    data = base64.b64decode(text.encode("ascii"), validate=True)
    if base64.b64encode(data).decode("ascii") != text:
        raise ValueError("base64: not in canonical form")
    return data


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


# -- record lines ---------------------------------------------------------------------------
def genesis_hash(header: bytes) -> bytes:
    """The ``prev`` of record 0: binds the chain to the exact header bytes."""
    return hashlib.sha256(DOMAIN + b" genesis\n" + header).digest()


def record_prefix(seq: int, prev_hex: str) -> bytes:
    """The first bytes every record line with this ``seq`` and ``prev`` starts with."""
    return b'{"seq":%d,"prev":"%s",' % (seq, prev_hex.encode("ascii"))


def record_line(seq: int, prev_hex: str, ts: str, kind: str, record_id: str, pseudonym: str | None,
                fields_json: str, payload_json: str) -> bytes:
    """One record line (without newline), in the canonical key order."""
    subject = "null" if pseudonym is None else f'"{pseudonym}"'
    text = (f'{{"seq":{seq},"prev":"{prev_hex}","ts":"{ts}","kind":"{kind}","id":"{record_id}",'
            f'"subject":{subject},"fields":{fields_json},"payload":{payload_json}}}')
    return text.encode("ascii")


def payload_json(dek_id: str, iv: bytes, ct: bytes) -> str:
    return f'{{"alg":"A256GCM","dk":"{dek_id}","iv":"{b64(iv)}","ct":"{b64(ct)}"}}'


def payload_aad(log_id: str, record_id: str, pseudonym: str, dek_id: str) -> bytes:
    """Associated data of a payload: the ciphertext opens only in its own record."""
    return b"%s payload\n%s\n%s\n%s\n%s" % (DOMAIN, log_id.encode(), record_id.encode(), pseudonym.encode(),
                                            dek_id.encode())


_LINE_HEAD_RE = re.compile(
    rb'\{"seq":(?:0|[1-9][0-9]*),"prev":"[0-9a-f]{64}","ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z",'
    rb'"kind":"[a-z][a-z0-9_]{1,31}","id":"[0-9a-f]{32}","subject":(null|"ps-[0-9a-f]{32}"),"fields":\{')
_LINE_TAIL_RE = re.compile(
    rb',"payload":(null|\{"alg":"A256GCM","dk":"dk-[0-9a-f]{24}","iv":"[A-Za-z0-9+/]{16}",'
    rb'"ct":"[A-Za-z0-9+/]+={0,2}"\})\}')
_json_decode = json.JSONDecoder().decode


def check_record_layout(line: bytes) -> str | None:
    """Why ``line`` is not a record in the exact layout the writer produces, or None if it is.

    Stricter and faster than :func:`parse_record`: a regex over the fixed part, JSON parsing
    only for the ``fields`` object (the ``payload`` envelope is matched by its regex).
    """
    head = _LINE_HEAD_RE.match(line)
    if head is None:
        return "the fixed part (seq, prev, ts, kind, id, subject) is not in the canonical layout"
    cut = line.rfind(b',"payload":')
    tail = _LINE_TAIL_RE.fullmatch(line, cut) if cut >= head.end() else None
    if tail is None:
        return "payload: must be null or {alg: A256GCM, dk, iv, ct} in the canonical layout"
    if head.group(1) == b"null" and tail.group(1) != b"null":
        return "payload: an encrypted payload needs a subject"
    try:
        fields = _json_decode(line[head.end() - 1:cut].decode("ascii"))
    except (ValueError, UnicodeDecodeError) as exc:
        return f"fields: not valid JSON ({exc})"
    if not isinstance(fields, dict):
        return "fields: must be an object"
    return None


def parse_record(line: bytes) -> dict[str, Any]:
    """Parse and strictly check one record line; raises :class:`RecordFormatError`."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordFormatError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict) or tuple(obj) != RECORD_KEYS:
        raise RecordFormatError(f"keys must be exactly {', '.join(RECORD_KEYS)} in that order")
    seq, prev, ts, kind, rid, subject, fields, payload = obj.values()
    if type(seq) is not int or seq < 0:
        raise RecordFormatError("seq: must be a non-negative integer")
    if not isinstance(prev, str) or not _HEX64_RE.fullmatch(prev):
        raise RecordFormatError("prev: must be 64 lowercase hex digits")
    if not isinstance(ts, str) or not _TS_RE.fullmatch(ts):
        raise RecordFormatError("ts: must be YYYY-MM-DDTHH:MM:SS.ffffffZ")
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        raise RecordFormatError("kind: must match [a-z][a-z0-9_]{1,31}")
    if not isinstance(rid, str) or not _HEX32_RE.fullmatch(rid):
        raise RecordFormatError("id: must be 32 lowercase hex digits")
    if subject is not None and (not isinstance(subject, str) or not _PSEUDONYM_RE.fullmatch(subject)):
        raise RecordFormatError("subject: must be null or a pseudonym ps-<32 hex>")
    if not isinstance(fields, dict):
        raise RecordFormatError("fields: must be an object")
    if payload is not None:
        if not isinstance(payload, dict) or tuple(payload) != PAYLOAD_KEYS or payload["alg"] != "A256GCM":
            raise RecordFormatError("payload: must be null or {alg: A256GCM, dk, iv, ct}")
        if subject is None:
            raise RecordFormatError("payload: an encrypted payload needs a subject")
    return obj


# -- seals ----------------------------------------------------------------------------------
def seal_message(log_id: str, seq: int, head_hex: str, ts: str) -> bytes:
    """What a seal's Ed25519 signature covers."""
    return b"%s seal\n%s\n%d\n%s\n%s\n" % (DOMAIN, log_id.encode(), seq, head_hex.encode(), ts.encode())


def seal_line(seq: int, head_hex: str, ts: str, kid: str, sig: bytes) -> bytes:
    return f'{{"seal":{seq},"head":"{head_hex}","ts":"{ts}","kid":"{kid}","sig":"{b64(sig)}"}}'.encode("ascii")


def key_transition_message(log_id: str, old_kid: str, new_kid: str, new_public_b64: str) -> bytes:
    """What the outgoing signing key signs to hand the log over to the next one."""
    return b"%s key-transition\n%s\n%s\n%s\n%s\n" % (DOMAIN, log_id.encode(), old_kid.encode(), new_kid.encode(),
                                                     new_public_b64.encode())


def receipt_message(log_id: str, first: int, count: int, commit_root_hex: str, ts: str) -> bytes:
    """What a receipt's signature covers: the log accepted ``count`` records from ``first`` with this root."""
    return b"%s receipt\n%s\n%d\n%d\n%s\n%s\n" % (DOMAIN, log_id.encode(), first, count, commit_root_hex.encode(),
                                                   ts.encode())


@dataclass(frozen=True)
class Seal:
    """A parsed seal line: the signature over the chain head at the end of a commit."""

    seq: int
    head: str
    ts: str
    kid: str
    sig: bytes

    def message(self, log_id: str) -> bytes:
        return seal_message(log_id, self.seq, self.head, self.ts)


def parse_seal(line: bytes) -> Seal:
    """Parse and strictly check one seal line; raises :class:`RecordFormatError`."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordFormatError(f"seal: not valid JSON ({exc})") from None
    if not isinstance(obj, dict) or tuple(obj) != SEAL_KEYS:
        raise RecordFormatError(f"seal: keys must be exactly {', '.join(SEAL_KEYS)} in that order")
    seq, head, ts, kid, sig = obj.values()
    if type(seq) is not int or seq < 0:
        raise RecordFormatError("seal: seal must be a non-negative integer")
    if not isinstance(head, str) or not _HEX64_RE.fullmatch(head):
        raise RecordFormatError("seal: head must be 64 lowercase hex digits")
    if not isinstance(ts, str) or not _TS_RE.fullmatch(ts):
        raise RecordFormatError("seal: ts must be YYYY-MM-DDTHH:MM:SS.ffffffZ")
    if not isinstance(kid, str) or not _KID_RE.fullmatch(kid):
        raise RecordFormatError("seal: kid must be 16 hex digits")
    try:
        raw = unb64(sig) if isinstance(sig, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 64:
        raise RecordFormatError("seal: sig must be a base64 Ed25519 signature (64 bytes)")
    if seal_line(seq, head, ts, kid, raw) != line:
        # Seals are not hashed into the chain, so every byte must be the one canonical form.
        raise RecordFormatError("seal: not in the canonical byte layout")
    return Seal(seq, head, ts, kid, raw)


# -- checkpoints: C2SP tlog-checkpoint in a C2SP signed note ----------------------------------
#: Signature types of C2SP signed-note: Ed25519 (the log) and timestamped cosignature/v1 (witnesses).
NOTE_ED25519 = 0x01
NOTE_COSIGNATURE = 0x04
_NOTE_DASH = "\u2014 "
_NOTE_NAME_RE = re.compile(r"[!-~]+")  # no spaces, no '+' restriction needed for our names
_CP_EXT_RE = re.compile(r"ts (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)")
_KEYHASH_RE = re.compile(r"[0-9a-f]{8}")


def public_key_raw(public_key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def log_origin(log_id: str) -> str:
    """The checkpoint origin line (and the log's signed-note key name) of log ``log_id``."""
    return f"clinops.audit/{log_id}"


def note_key_hash(name: str, sig_type: int, public_raw: bytes) -> str:
    """C2SP signed-note key id: first 4 bytes of SHA-256(name || 0x0A || type || public key), as 8 hex."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_raw).digest()[:4].hex()


def cosignature_message(body: bytes, timestamp: int) -> bytes:
    """What a C2SP tlog-cosignature/v1 signs: ``cosignature/v1\\ntime T\\n`` then the checkpoint body."""
    return b"cosignature/v1\ntime %d\n" % timestamp + body


@dataclass(frozen=True)
class Cosignature:
    """A witness's timestamped cosignature (C2SP tlog-cosignature) on a checkpoint.

    Attributes
    ----------
    name : str
        The witness's key name.
    key_hash : str
        8 hex digits: :func:`note_key_hash` of the name and Ed25519 public key, type 0x04.
    timestamp : int
        Unix seconds at which the witness cosigned.
    sig : bytes
        Ed25519 signature over :func:`cosignature_message`.
    """

    name: str
    key_hash: str
    timestamp: int
    sig: bytes

    def line(self) -> str:
        blob = bytes.fromhex(self.key_hash) + self.timestamp.to_bytes(8, "big") + self.sig
        return f"{_NOTE_DASH}{self.name} {b64(blob)}\n"


@dataclass(frozen=True)
class Checkpoint:
    """A signed tree head: the log ``log_id`` had ``size`` records with Merkle root ``root`` at ``ts``.

    Stored and exchanged as a C2SP ``tlog-checkpoint`` inside a C2SP signed note, the format
    witnesses and monitors read::

        clinops.audit/<log_id>
        <size>
        <base64 root>
        ts <UTC time>

        \u2014 clinops.audit/<log_id> <base64(key hash || Ed25519 signature)>
        \u2014 <witness name> <base64(key hash || timestamp || Ed25519 signature)>   (cosignatures)

    Attributes
    ----------
    log_id : str
    size : int
        Tree size (number of records covered).
    root : str
        RFC 6962 root hash, 64 hex digits.
    ts : str
        UTC time of signing (an extension line of the checkpoint).
    kid : str
        Signed-note key hash (8 hex digits) of the log key that signed.
    sig : bytes
        Ed25519 signature over :meth:`message` (the checkpoint body).
    cosignatures : tuple of Cosignature
        Witness cosignatures, in the order stored.
    """

    log_id: str
    size: int
    root: str
    ts: str
    kid: str
    sig: bytes
    cosignatures: tuple[Cosignature, ...] = ()

    @classmethod
    def signed(cls, log_id: str, size: int, root: str, ts: str, signer: Any) -> "Checkpoint":
        """A checkpoint signed by ``signer`` (a :class:`clinops.audit.keys.Signer`)."""
        kid = note_key_hash(log_origin(log_id), NOTE_ED25519, public_key_raw(signer.public_key))
        return cls(log_id, size, root, ts, kid, signer.sign(checkpoint_message(log_id, size, root, ts)))

    @property
    def origin(self) -> str:
        return log_origin(self.log_id)

    def message(self) -> bytes:
        """The signed text: the checkpoint body (origin, size, base64 root, ``ts`` extension line)."""
        return checkpoint_message(self.log_id, self.size, self.root, self.ts)

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        """True when the log signature is by ``public_key`` (key hash and Ed25519 signature)."""
        if self.kid != note_key_hash(self.origin, NOTE_ED25519, public_key_raw(public_key)):
            return False
        try:
            public_key.verify(self.sig, self.message())
            return True
        except InvalidSignature:
            return False

    def cosigned_by(self, name: str, public_key: Ed25519PublicKey) -> Cosignature | None:
        """The valid cosignature of witness ``name`` holding ``public_key``, or None."""
        want = note_key_hash(name, NOTE_COSIGNATURE, public_key_raw(public_key))
        for cosig in self.cosignatures:
            if cosig.name == name and cosig.key_hash == want:
                try:
                    public_key.verify(cosig.sig, cosignature_message(self.message(), cosig.timestamp))
                    return cosig
                except InvalidSignature:
                    return None
        return None

    def with_cosignature(self, cosig: Cosignature) -> "Checkpoint":
        """This checkpoint with ``cosig`` added (replacing one by the same key)."""
        kept = tuple(c for c in self.cosignatures if (c.name, c.key_hash) != (cosig.name, cosig.key_hash))
        return replace(self, cosignatures=kept + (cosig,))

    def unwitnessed(self) -> "Checkpoint":
        """This checkpoint without cosignatures (what the log signed)."""
        return replace(self, cosignatures=())

    def to_bytes(self) -> bytes:
        """The signed note, UTF-8 (the signature lines start with an em dash)."""
        log_line = f"{_NOTE_DASH}{self.origin} {b64(bytes.fromhex(self.kid) + self.sig)}\n"
        text = (self.message().decode("ascii") + "\n" + log_line
                + "".join(c.line() for c in self.cosignatures))
        return text.encode("utf-8")

    def to_dict(self) -> dict[str, Any]:
        """``{"note": signed note text}``: how proof bundles carry a checkpoint."""
        return {"note": self.to_bytes().decode("utf-8")}

    @classmethod
    def from_dict(cls, obj: Any) -> "Checkpoint":
        if not isinstance(obj, dict) or tuple(obj) != ("note",) or not isinstance(obj["note"], str):
            raise RecordFormatError('checkpoint: must be {"note": signed note text}')
        return cls.from_bytes(obj["note"].encode("utf-8"))

    @classmethod
    def from_bytes(cls, data: bytes) -> "Checkpoint":
        """Parse a checkpoint note; only the canonical bytes :meth:`to_bytes` writes are accepted."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise RecordFormatError("checkpoint: not UTF-8") from None
        body, sep, sigs = text.partition("\n\n")
        lines = body.split("\n")
        if not sep or len(lines) != 4:
            raise RecordFormatError("checkpoint: body must be origin, size, root and one 'ts' line, then a blank line")
        origin, size_text, root_b64, ext = lines
        if not origin.startswith("clinops.audit/") or not _HEX32_RE.fullmatch(origin[len("clinops.audit/"):]):
            raise RecordFormatError("checkpoint: origin must be clinops.audit/<32 hex log id>")
        if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise RecordFormatError("checkpoint: size must be a non-negative decimal integer")
        try:
            root = unb64(root_b64)
        except ValueError:
            root = b""
        if len(root) != 32:
            raise RecordFormatError("checkpoint: root must be a base64 SHA-256 hash")
        ts_match = _CP_EXT_RE.fullmatch(ext)
        if ts_match is None:
            raise RecordFormatError("checkpoint: the extension line must be 'ts YYYY-MM-DDTHH:MM:SS.ffffffZ'")
        sig_lines = sigs.split("\n")
        if not sig_lines or sig_lines[-1] != "" or len(sig_lines) < 2:
            raise RecordFormatError("checkpoint: signature lines must end with a newline")
        parsed = []
        for line in sig_lines[:-1]:
            if not line.startswith(_NOTE_DASH):
                raise RecordFormatError("checkpoint: a signature line must start with an em dash and a space")
            name, _, blob_b64 = line[len(_NOTE_DASH):].partition(" ")
            try:
                blob = unb64(blob_b64)
            except ValueError:
                blob = b""
            if not _NOTE_NAME_RE.fullmatch(name) or len(blob) < 4 + 64:
                raise RecordFormatError("checkpoint: malformed signature line")
            parsed.append((name, blob))
        name, blob = parsed[0]
        if name != origin or len(blob) != 4 + 64:
            raise RecordFormatError("checkpoint: the first signature must be the log's (key name = origin)")
        cosigs = []
        for name, cblob in parsed[1:]:
            if len(cblob) != 4 + 8 + 64:
                raise RecordFormatError(f"checkpoint: cosignature by {name} is not key hash + timestamp + signature")
            cosigs.append(Cosignature(name, cblob[:4].hex(), int.from_bytes(cblob[4:12], "big"), cblob[12:]))
        cp = cls(origin[len("clinops.audit/"):], int(size_text), root.hex(), ts_match.group(1), blob[:4].hex(),
                 blob[4:], tuple(cosigs))
        if cp.to_bytes() != data:
            raise RecordFormatError("checkpoint: not in the canonical byte layout")
        return cp


def checkpoint_message(log_id: str, size: int, root_hex: str, ts: str) -> bytes:
    """The checkpoint body a log signs (C2SP tlog-checkpoint with one ``ts`` extension line)."""
    return b"%s\n%d\n%s\nts %s\n" % (log_origin(log_id).encode(), size, b64(bytes.fromhex(root_hex)).encode(),
                                       ts.encode())


# -- header ---------------------------------------------------------------------------------
HEADER_KEYS = ("format", "version", "log_id", "created", "segment_records", "checkpoint_every",
               "signing_key_id", "signing_public_key")


def header_bytes(log_id: str, created: str, segment_records: int, checkpoint_every: int,
                 kid: str, public_raw: bytes) -> bytes:
    doc = {"format": FORMAT, "version": VERSION, "log_id": log_id, "created": created,
           "segment_records": segment_records, "checkpoint_every": checkpoint_every,
           "signing_key_id": kid, "signing_public_key": b64(public_raw)}
    return (json.dumps(doc, indent=1) + "\n").encode("ascii")


def parse_header(data: bytes) -> dict[str, Any]:
    """Parse ``audit.json``; raises :class:`RecordFormatError`."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordFormatError(f"audit.json: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or tuple(doc) != HEADER_KEYS:
        raise RecordFormatError(f"audit.json: keys must be exactly {', '.join(HEADER_KEYS)}")
    if doc["format"] != FORMAT or doc["version"] != VERSION:
        raise RecordFormatError(f"audit.json: format must be {FORMAT!r} version {VERSION}")
    if not isinstance(doc["log_id"], str) or not _HEX32_RE.fullmatch(doc["log_id"]):
        raise RecordFormatError("audit.json: log_id must be 32 hex digits")
    for name in ("segment_records", "checkpoint_every"):
        if type(doc[name]) is not int or doc[name] < 1:
            raise RecordFormatError(f"audit.json: {name} must be a positive integer")
    if not isinstance(doc["signing_key_id"], str) or not _KID_RE.fullmatch(doc["signing_key_id"]):
        raise RecordFormatError("audit.json: signing_key_id must be 16 hex digits")
    return doc
