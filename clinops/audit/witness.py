"""A checkpoint witness: a separate process, with its own key and state, that cosigns checkpoints.

A log operator who holds the signing key (or an insider who can only delete files) can show
different auditors different histories, or cut records off the end: every file that would
reveal it lives in the log directory. A witness closes that gap. It keeps, per log, the latest
checkpoint it has cosigned, and cosigns a new one only after checking

1. the log's Ed25519 signature, with a log key it was configured with (not one the log sends);
2. a consistency proof from its latest checkpoint to the new one (RFC 9162): the log only grew.

So once a checkpoint is cosigned, no checkpoint of a shorter or different history will ever be,
and ``verify`` with the witness's key and its latest checkpoint catches truncation and forks
without trusting the log directory.

Protocol: the C2SP ``tlog-witness`` ``add-checkpoint`` call over HTTP, with checkpoints as C2SP
signed notes and cosignatures as C2SP ``tlog-cosignature`` (``cosignature/v1``) lines::

    POST /add-checkpoint
    old <size the witness has>\\n<consistency proof, one base64 hash per line>\\n\\n<checkpoint note>

    200  the cosignature line             409  "<size>\\n": the witness is at another size
    403  not signed by a configured log   422  the consistency proof does not verify
    400  malformed request

plus ``GET /checkpoint?origin=<origin>`` for the latest cosigned checkpoint (404 if none), which
verifiers and writers use to learn what the witness has seen.

Run it with ``clinops audit witness --state DIR --log-key LOG.pub --port N``.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import logging
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clinops.audit import records as rf
from clinops.audit.keys import Ed25519Signer, load_public_key, public_key_pem
from clinops.audit.merkle import MerkleTree, verify_consistency
from clinops.audit.records import Checkpoint, Cosignature, RecordFormatError
from clinops.audit.storage import atomic_write

__all__ = ["WitnessClient", "WitnessKey", "WitnessRefused", "WitnessState", "main", "serve"]

_log = logging.getLogger(__name__)
DEFAULT_NAME = "clinops-witness"
_TIMEOUT_SECONDS = 10.0


class WitnessRefused(RuntimeError):
    """The witness refused a checkpoint for a reason that means the log is not what it claims."""


@dataclass(frozen=True)
class WitnessKey:
    """A witness's identity as a verifier pins it: its key name and Ed25519 public key.

    Attributes
    ----------
    name : str
        The key name on its cosignature lines.
    public_key : Ed25519PublicKey
    """

    name: str
    public_key: Ed25519PublicKey

    @classmethod
    def load(cls, source: Path | str | bytes, name: str = DEFAULT_NAME) -> "WitnessKey":
        """From a PEM file / PEM bytes / base64 key and a name."""
        if not isinstance(name, str) or not name or " " in name:
            raise ValueError(f"witness name: a non-empty name without spaces, got {name!r}")
        return cls(name, load_public_key(source))

    def cosignature(self, cp: Checkpoint) -> Cosignature | None:
        """This witness's valid cosignature on ``cp``, or None."""
        return cp.cosigned_by(self.name, self.public_key)


def _encode_request(old: int, proof: list[bytes], note: bytes) -> bytes:
    return (b"old %d\n" % old + b"".join(base64.b64encode(h) + b"\n" for h in proof) + b"\n" + note)


def _decode_request(body: bytes) -> tuple[int, list[bytes], bytes]:
    head, sep, note = body.partition(b"\n\n")
    lines = head.split(b"\n")
    if not sep or not lines[0].startswith(b"old ") or not lines[0][4:].isdigit():
        raise ValueError("request: must start with 'old <size>', then proof lines, a blank line and the checkpoint")
    proof = []
    for line in lines[1:]:
        try:
            h = base64.b64decode(line, validate=True)
        except ValueError:
            h = b""
        if len(h) != 32:
            raise ValueError("request: every proof line must be one base64 SHA-256 hash")
        proof.append(h)
    return int(lines[0][4:]), proof, note


# -- the witness (server side) -----------------------------------------------------------------
class WitnessState:
    """The witness's key and, per log origin, the latest checkpoint it cosigned (one directory).

    Parameters
    ----------
    root : Path
        State directory: ``witness.key`` (mode 600, created if missing), ``witness.pub`` and
        ``logs/<sha256(origin)>.checkpoint``.
    log_keys : list of Ed25519PublicKey
        The log keys it accepts checkpoints from.
    name : str
        The witness's key name.
    clock : callable, optional
        Unix time in seconds; default :func:`time.time`.
    """

    def __init__(self, root: Path, log_keys: list[Ed25519PublicKey], name: str = DEFAULT_NAME,
                 clock=time.time) -> None:
        if not log_keys:
            raise ValueError("log_keys: the witness needs at least one log public key to accept checkpoints from")
        self.root = Path(root)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.root / "logs").mkdir(mode=0o700, exist_ok=True)
        key_path = self.root / "witness.key"
        if key_path.exists():
            self.signer = Ed25519Signer.load(key_path)
        else:
            self.signer = Ed25519Signer.generate()
            self.signer.save(key_path)
        atomic_write(self.root / "witness.pub", public_key_pem(self.signer.public_key), mode=0o444)
        self.name = name
        self.key = WitnessKey(name, self.signer.public_key)
        self.log_keys = list(log_keys)
        self.clock = clock
        self._lock = threading.Lock()

    def _path(self, origin: str) -> Path:
        return self.root / "logs" / f"{hashlib.sha256(origin.encode()).hexdigest()}.checkpoint"

    def latest(self, origin: str) -> bytes | None:
        """The latest cosigned checkpoint note of ``origin``, or None."""
        try:
            return self._path(origin).read_bytes()
        except FileNotFoundError:
            return None

    def add_checkpoint(self, body: bytes) -> tuple[int, bytes]:
        """Handle one ``add-checkpoint`` request; returns ``(HTTP status, response body)``."""
        try:
            old, proof, note = _decode_request(body)
            cp = Checkpoint.from_bytes(note)
        except (ValueError, RecordFormatError) as exc:
            return 400, f"{exc}\n".encode()
        if not any(cp.verify(key) for key in self.log_keys):
            return 403, b"checkpoint is not signed by a log key this witness was configured with\n"
        with self._lock:
            stored = self.latest(cp.origin)
            have = Checkpoint.from_bytes(stored) if stored is not None else None
            size = have.size if have is not None else 0
            if old != size:
                return 409, b"%d\n" % size
            if cp.size < size:
                return 400, b"checkpoint is smaller than the one already cosigned\n"
            if have is not None:
                if cp.size == size:
                    consistent = not proof and cp.root == have.root
                else:
                    consistent = verify_consistency(size, cp.size, bytes.fromhex(have.root), bytes.fromhex(cp.root),
                                                    proof)
                if not consistent:
                    _log.warning("witness: refused %s at size %d: not consistent with size %d", cp.origin, cp.size,
                                 size)
                    return 422, b"consistency proof does not verify: the log was rewritten or rolled back\n"
            elif proof:
                return 400, b"the first checkpoint of a log takes an empty proof\n"
            stamp = int(self.clock())
            cosig = Cosignature(self.name, rf.note_key_hash(self.name, rf.NOTE_COSIGNATURE,
                                                            rf.public_key_raw(self.signer.public_key)),
                                stamp, self.signer.sign(rf.cosignature_message(cp.message(), stamp)))
            atomic_write(self._path(cp.origin), cp.unwitnessed().with_cosignature(cosig).to_bytes(), mode=0o600)
        return 200, cosig.line().encode("utf-8")


def _handler(state: WitnessState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path != "/add-checkpoint":
                return self._reply(404, b"unknown path\n")
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= 1 << 20:
                return self._reply(400, b"request body: 1 byte to 1 MiB\n")
            status, body = state.add_checkpoint(self.rfile.read(length))
            self._reply(status, body, "text/x.tlog.size" if status == 409 else "text/plain; charset=utf-8")

        def do_GET(self) -> None:  # noqa: N802
            url = urllib.parse.urlsplit(self.path)
            origin = urllib.parse.parse_qs(url.query).get("origin", [""])[0]
            if url.path != "/checkpoint" or not origin:
                return self._reply(404, b"use GET /checkpoint?origin=ORIGIN\n")
            note = state.latest(origin)
            self._reply(404, b"no checkpoint of this log\n") if note is None else self._reply(200, note)

        def log_message(self, fmt: str, *args: object) -> None:
            _log.info("witness: " + fmt, *args)

    return Handler


def serve(state: WitnessState, host: str = "127.0.0.1", port: int = 0) -> HTTPServer:
    """An HTTP server for ``state`` bound to ``host:port`` (0: a free port); call ``serve_forever``."""
    # One request at a time: cosigning is a read-check-write of the state that must not interleave.
    return HTTPServer((host, port), _handler(state))


# -- the client (the log's side, and verifiers') ----------------------------------------------
class WitnessClient:
    """Talks to a witness at ``url`` whose key the caller pins.

    Parameters
    ----------
    url : str
        Base URL, e.g. ``http://127.0.0.1:8471``.
    key : WitnessKey
        The witness's name and public key, obtained out of band.
    """

    def __init__(self, url: str, key: WitnessKey) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self._sizes: dict[str, int] = {}

    def _call(self, request: urllib.request.Request) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_SECONDS) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except urllib.error.URLError as exc:
            raise OSError(f"witness {self.url} unreachable: {exc.reason}") from None

    def latest(self, log_id: str) -> Checkpoint | None:
        """The witness's latest cosigned checkpoint of ``log_id`` (cosignature checked), or None.

        Raises
        ------
        OSError
            The witness is unreachable or answered with something that is not a checkpoint it cosigned.
        """
        origin = rf.log_origin(log_id)
        status, body = self._call(urllib.request.Request(
            f"{self.url}/checkpoint?{urllib.parse.urlencode({'origin': origin})}"))
        if status == 404:
            self._sizes[origin] = 0
            return None
        if status != 200:
            raise OSError(f"witness {self.url}: HTTP {status}: {body[:200]!r}")
        try:
            cp = Checkpoint.from_bytes(body)
        except RecordFormatError as exc:
            raise OSError(f"witness {self.url}: not a checkpoint: {exc}") from None
        if cp.origin != origin or self.key.cosignature(cp) is None:
            raise OSError(f"witness {self.url}: the checkpoint it returned lacks a valid cosignature by "
                          f"{self.key.name}")
        self._sizes[origin] = cp.size
        return cp

    def add_checkpoint(self, cp: Checkpoint, tree: MerkleTree) -> Cosignature:
        """Have the witness cosign ``cp`` (``tree`` is the log's tree, for the consistency proof).

        Raises
        ------
        WitnessRefused
            The witness holds a larger or different history (rollback or fork), or does not
            accept the log's key.
        OSError
            The witness is unreachable or misbehaves; the checkpoint stays unwitnessed.
        """
        origin = cp.origin
        if origin not in self._sizes:
            self.latest(cp.log_id)
        for _ in range(2):
            old = self._sizes[origin]
            if old > cp.size:
                raise WitnessRefused(f"the witness has cosigned {old} records of this log, the log has {cp.size}: "
                                     "the log was truncated or rolled back")
            proof = tree.consistency_proof(old, cp.size) if 0 < old < cp.size else []
            status, body = self._call(urllib.request.Request(
                f"{self.url}/add-checkpoint", data=_encode_request(old, proof, cp.unwitnessed().to_bytes()),
                method="POST", headers={"Content-Type": "text/plain"}))
            if status == 409 and body.strip().isdigit():
                self._sizes[origin] = int(body.strip())
                continue
            if status == 422:
                raise WitnessRefused(f"the witness refused the checkpoint at size {cp.size}: "
                                     f"{body.decode(errors='replace').strip()}")
            if status == 403:  # e.g. after a signing-key rotation the witness was not told about
                raise OSError(f"witness {self.url} does not accept this log's key (give it the new key with "
                              f"--log-key): {body.decode(errors='replace').strip()}")
            if status != 200:
                raise OSError(f"witness {self.url}: HTTP {status}: {body[:200]!r}")
            try:
                cosigned = Checkpoint.from_bytes(cp.unwitnessed().to_bytes() + body)
            except RecordFormatError as exc:
                raise OSError(f"witness {self.url}: malformed cosignature: {exc}") from None
            cosig = self.key.cosignature(cosigned)
            if cosig is None:
                raise OSError(f"witness {self.url}: the cosignature does not verify under {self.key.name}'s key")
            self._sizes[origin] = cp.size
            return cosig
        raise OSError(f"witness {self.url}: its size kept changing")


# -- command line ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``clinops audit witness``: run a witness until interrupted."""
    p = argparse.ArgumentParser(prog="clinops audit witness", description=__doc__.split("\n")[0])
    p.add_argument("--state", type=Path, required=True, help="the witness's own directory (key and state)")
    p.add_argument("--log-key", type=Path, action="append", required=True,
                   help="public key (PEM) of a log whose checkpoints this witness accepts; repeatable")
    p.add_argument("--name", default=DEFAULT_NAME, help="key name on the cosignatures (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="TCP port (default 0: a free one, printed)")
    args = p.parse_args(argv)
    try:
        state = WitnessState(args.state, [load_public_key(k) for k in args.log_key], args.name)
        server = serve(state, args.host, args.port)
    except (OSError, ValueError) as exc:
        print(f"clinops audit witness: {exc}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    print(f"witness {args.name} listening on http://{host}:{port} (public key {args.state / 'witness.pub'})",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
