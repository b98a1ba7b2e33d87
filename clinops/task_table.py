"""The task table on disk, with the hashes of the bytes it was built from and is read as.

A task table (``build/<run>/<task>/task_table.parquet``: one row per stay or admission) is
written atomically beside ``task_table.sources.json``, which names the SHA-256 of every source
file the building step read. The training step reads the table's bytes once, hashes exactly
those bytes, and records both in the model's lineage: a model version names the data it was
trained on, never a hash left over from an earlier run.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Mapping

import pandas as pd

SOURCES_SUFFIX = ".sources.json"


def sources_path(table_path: str | Path) -> Path:
    """``task_table.parquet`` -> ``task_table.sources.json``."""
    p = Path(table_path)
    return p.with_name(p.stem + SOURCES_SUFFIX)


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_task_table(table: pd.DataFrame, path: str | Path, *, sources: Mapping[str, str]) -> str:
    """Write the table (parquet) and its sources file atomically; return the table's SHA-256.

    Parameters
    ----------
    table : DataFrame, one row per stay/admission
    path : the parquet file to write
    sources : source file name -> SHA-256 of the bytes the building step read
    """
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    path = Path(path)
    _atomic_write(path, data)
    meta = {"sources": dict(sorted(sources.items())), "task_table_sha256": digest}
    _atomic_write(sources_path(path), (json.dumps(meta, indent=1) + "\n").encode())
    return digest


def read_task_table(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a task table and the hashes of what it is made of.

    Returns
    -------
    table : DataFrame
    hashes : dict
        The source hashes recorded when the table was built, plus ``task_table.parquet``: the
        SHA-256 of the bytes read here (the ones the caller trains on).

    Raises
    ------
    FileNotFoundError : the table or its sources file is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the step that builds the task table first")
    meta_path = sources_path(path)
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} is missing: rebuild the task table (it names the source hashes)")
    data = path.read_bytes()
    hashes = dict(json.loads(meta_path.read_text())["sources"])
    hashes[path.name] = hashlib.sha256(data).hexdigest()
    return pd.read_parquet(io.BytesIO(data)), hashes


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Streaming SHA-256 of a file."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


__all__ = ["write_task_table", "read_task_table", "sources_path", "file_sha256"]
