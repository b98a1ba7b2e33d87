"""Byte formats of the log: header, record lines, seal lines (checkpoints: :mod:`clinops.audit.notes`).

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

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

# The formats' shared encodings, what callers may log and the checkpoint notes live in their
# own modules; re-exported here, the one namespace (``rf``) the trail and the tests read formats from.
from clinops.audit.encoding import RecordFormatError, b64, canonical_json, parse_utc, unb64, utc_text
from clinops.audit.notes import (NOTE_COSIGNATURE, NOTE_ED25519, Checkpoint, Cosignature, checkpoint_message,
                                 cosignature_message, log_origin, note_key_hash, public_key_raw)
from clinops.audit.schema import (IDENTIFIER_KEYS, MAX_FIELDS_BYTES, MAX_PAYLOAD_BYTES, MAX_SUBJECT_CHARS,
                                  PREDICTION_FIELDS, RESERVED_FIELDS, RESERVED_KINDS, USER_KINDS, _normalise,
                                  check_kind, encode_fields, encode_payload, normalise_subject)

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

#: How every record line and every seal line starts, and the kind bytes of a signing-key
#: transition (byte searches find them without parsing).
RECORD_START = b'{"seq":'
SEAL_START = b'{"seal":'
TRANSITION_KIND = b'"kind":"signing_key_rotation"'

RECORD_KEYS = ("seq", "prev", "ts", "kind", "id", "subject", "fields", "payload")
SEAL_KEYS = ("seal", "head", "ts", "kid", "sig")
PAYLOAD_KEYS = ("alg", "dk", "iv", "ct")

_KIND_RE = re.compile(r"[a-z][a-z0-9_]{1,31}")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_HEX32_RE = re.compile(r"[0-9a-f]{32}")
_PSEUDONYM_RE = re.compile(r"ps-[0-9a-f]{32}")
_TS_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_KID_RE = re.compile(r"[0-9a-f]{16}")


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
