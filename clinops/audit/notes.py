"""Checkpoints as C2SP signed notes: the log's signed tree head and witnesses' cosignatures.

A checkpoint (C2SP tlog-checkpoint, with one ``ts`` extension line) states the log's size and
RFC 6962 Merkle root, signed by the log's Ed25519 key; witnesses add timestamped cosignatures
(C2SP tlog-cosignature/v1). :class:`Checkpoint` parses and writes the one canonical byte form.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clinops.audit.encoding import RecordFormatError, b64, unb64

__all__ = ["NOTE_COSIGNATURE", "NOTE_ED25519", "Checkpoint", "Cosignature", "checkpoint_message",
           "cosignature_message", "log_origin", "note_key_hash", "public_key_raw"]

_HEX32_RE = re.compile(r"[0-9a-f]{32}")

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
