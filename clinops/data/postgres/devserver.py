"""A throw-away PostgreSQL server: ``initdb`` and ``pg_ctl`` in a folder, on a free port.

For the engine tests and ``benchmarks/bench_engines.py`` (one implementation for both). The
server runs as the ``postgres`` user when the caller is root (PostgreSQL refuses to run as
root), without fsync (the folder is thrown away) and listens on 127.0.0.1 only.

Examples
--------
>>> pg_binary("no-such-postgres-tool") is None
True
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

__all__ = ["pg_binary", "PostgresServer"]

#: Debian's versioned folders, newest first (the binaries are not on PATH there).
_DEBIAN_VERSIONS = ("17", "16", "15", "14")


def pg_binary(name: str) -> str | None:
    """Path of a PostgreSQL server program (``initdb``, ``pg_ctl``), or None when not installed."""
    found = shutil.which(name)
    if found:
        return found
    for version in _DEBIAN_VERSIONS:
        candidate = Path(f"/usr/lib/postgresql/{version}/bin/{name}")
        if candidate.is_file():
            return str(candidate)
    return None


class PostgresServer:
    """A server in ``folder`` (``data/`` and ``server.log`` inside): :meth:`start` returns its DSN."""

    def __init__(self, folder: str | os.PathLike, *, timeout: float = 300):
        self.folder = Path(folder)
        self.data = self.folder / "data"
        self.timeout = timeout
        self.as_root = os.geteuid() == 0
        self.initdb, self.pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            raise FileNotFoundError("PostgreSQL server programs initdb and pg_ctl are not installed "
                                    "(Debian: apt-get install postgresql; .ci/run installs them)")

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        line = " ".join(f"'{c}'" for c in cmd)
        full = ["su", "postgres", "-c", line] if self.as_root else list(cmd)
        return subprocess.run(full, check=check, capture_output=True, text=True, timeout=self.timeout)

    def start(self) -> str:
        """``initdb`` and ``pg_ctl start``; returns ``host=127.0.0.1 port=... user=postgres dbname=postgres``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.folder, "postgres", "postgres")
            os.chmod(self.folder, 0o700)
            # a temporary folder's parents are private to root: the postgres user must reach it
            for parent in self.folder.parents:
                if parent in (Path("/tmp"), Path("/")):
                    break
                os.chmod(parent, os.stat(parent).st_mode | 0o711)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.folder / "server.log"), "-o",
                  f"-p {port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "-w", "start")
        return f"host=127.0.0.1 port={port} user=postgres dbname=postgres"

    @property
    def pid(self) -> int:
        """The postmaster's process id."""
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])

    def stop(self) -> None:
        """Fast shutdown; if it outlasts pg_ctl's wait (an overloaded machine), an immediate one
        (no checkpoint: the folder is thrown away); a server already gone is fine."""
        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")
        except subprocess.CalledProcessError:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

