"""SHA-256 of input files for lineage, streamed and cached on disk.

Hashing streams the file in 1 MiB blocks and the result is cached keyed by (absolute path,
size, mtime_ns), so an unchanged 10 GB ``chartevents.csv.gz`` is hashed once, not at every run.
The cache lives in ``$CLINOPS_CACHE_DIR`` (default ``$XDG_CACHE_HOME/clinops`` or
``~/.cache/clinops``), file ``sha256-cache.json``.

Examples
--------
>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as d:
...     f = pathlib.Path(d) / "x.txt"; _ = f.write_text("abc")
...     sha256_file(f, cache=pathlib.Path(d) / "cache.json")[:16]
'ba7816bf8f01cfea'
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_HASH_BLOCK = 1 << 20  # 1 MiB: streaming, constant memory


def default_hash_cache() -> Path:
    base = os.environ.get("CLINOPS_CACHE_DIR")
    if base:
        return Path(base) / "sha256-cache.json"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "clinops" / "sha256-cache.json"


def _read_cache(cache: Path) -> dict:
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}


def sha256_file(path: str | os.PathLike, *, cache: str | os.PathLike | None = None) -> str:
    """Streaming SHA-256 of a file, cached by (absolute path, size, mtime_ns).

    Parameters
    ----------
    path : path-like
        File to hash.
    cache : path-like, optional
        JSON cache file. ``None`` disables the cache.

    Returns
    -------
    str
        Lowercase hex digest (64 characters).
    """
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    cache_path = Path(cache) if cache else None
    if cache_path is not None:
        hit = _read_cache(cache_path).get(key)
        if hit:
            return hit
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            h.update(block)
    digest = h.hexdigest()
    if cache_path is not None:
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            entries = _read_cache(cache_path)  # re-read: another process may have added keys
            entries[key] = digest
            fd, tmp = tempfile.mkstemp(dir=cache_path.parent, prefix=".sha256-")
            with os.fdopen(fd, "w") as fh:
                json.dump(entries, fh, indent=0, sort_keys=True)
            os.replace(tmp, cache_path)
        except OSError as exc:  # a read-only home must not stop the pipeline
            log.warning("could not write SHA-256 cache %s: %s", cache_path, exc)
    return digest
