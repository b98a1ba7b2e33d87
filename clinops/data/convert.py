"""``clinops convert``: a MIMIC-IV csv.gz directory copied once to parquet, one file per table."""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import duckdb

from clinops.data.mimic import MODULES, MimicSchemaError, open_mimic, sql_identifier, sql_string

log = logging.getLogger(__name__)

#: Leading sort keys of the event tables in a parquet copy made with ``sort_events=True``
#: (``clinops convert --sort-events``). Every query of the pipeline
#: filters these tables by itemid; clustered by itemid, parquet's per-row-group min/max
#: statistics let DuckDB skip the row groups of other items. The remaining columns follow as
#: tie-breakers so the row order, and hence the files' SHA-256, is reproducible.
EVENT_SORT_KEYS: dict[str, list[str]] = {
    "mimiciv_icu.chartevents": ["itemid", "stay_id", "charttime"],
    "mimiciv_hosp.labevents": ["itemid", "subject_id", "charttime"],
}


def convert_to_parquet(src: str | os.PathLike, dst: str | os.PathLike, *,
                       progress: Callable[[str, int, int], None] | None = None,
                       memory_limit: str = "2GB", threads: int | None = None,
                       overwrite: bool = False, sort_events: bool = False,
                       hash_cache: str | os.PathLike | None = None) -> dict[str, int]:
    """Copy a MIMIC-IV csv.gz directory to parquet, one file per table.

    Each table is copied by DuckDB (``COPY (SELECT ...) TO ... (FORMAT parquet)``) under a
    memory limit, into a temporary directory beside ``dst`` that is renamed to ``dst`` only
    when every table is written, so ``dst`` is either complete or absent. Tables stream
    straight through in file order. With ``sort_events=True``, chartevents and labevents are
    instead ordered by :data:`EVENT_SORT_KEYS` (itemid first): DuckDB sorts them out of core
    (spilling to disk beyond ``memory_limit``, so no longer a pure stream), and every later
    item-filtered query reads only its items' row groups (measured on the paper-scale
    synthetic data: conversion about 30 % slower, feature extraction about 20 % faster).

    Parameters
    ----------
    src : path-like
        PhysioNet layout (``hosp/*.csv.gz``, ``icu/*.csv.gz``).
    dst : path-like
        Output directory (``hosp/*.parquet``, ``icu/*.parquet``); must not exist unless
        ``overwrite``.
    progress : callable(table, index, total), optional
        Called before each table is copied; ``index`` counts from 1.
    memory_limit : str
        DuckDB memory limit, e.g. ``'2GB'``; DuckDB spills to ``dst``'s temp directory beyond it.
    threads : int, optional
        DuckDB worker threads.
    overwrite : bool
        Replace an existing ``dst``.
    hash_cache : path-like, optional
        SHA-256 cache file (see :func:`open_mimic`); the source files' digests are written to
        ``dst/clinops_convert.json`` for lineage.
    sort_events : bool
        Cluster chartevents and labevents by item id (see above).

    Returns
    -------
    dict[str, int]
        Qualified table name -> rows written.
    """
    dst = Path(dst).expanduser().resolve()
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=True (--overwrite) to replace it")
    db = open_mimic(src, memory_limit=memory_limit, threads=threads, hash_cache=hash_cache)
    if db.format != "csv":
        db.close()
        raise MimicSchemaError(f"{db.root} is already parquet; nothing to convert")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}.tmp-"))
    counts: dict[str, int] = {}
    try:
        db.con.execute(f"SET temp_directory = {sql_string(str(tmp / '.spill'))}")
        names = db.tables
        for i, name in enumerate(names, 1):
            if progress is not None:
                progress(name, i, len(names))
            schema, table = name.split(".", 1)
            module = {v: k for k, v in MODULES.items()}[schema]
            (tmp / module).mkdir(exist_ok=True)
            out = tmp / module / f"{table}.parquet"
            t0 = time.perf_counter()
            select = f"SELECT * FROM {name}"
            keys = EVENT_SORT_KEYS.get(name) if sort_events else None
            if keys and all(k in db.columns[name] for k in keys):
                order = keys + [c for c in db.columns[name] if c not in keys]
                select += " ORDER BY " + ", ".join(sql_identifier(c) for c in order)
            # COPY returns the number of rows written.
            n = db.con.execute(
                f"COPY ({select}) TO {sql_string(str(out))} "
                "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)").fetchone()[0]
            counts[name] = int(n)
            log.info("converted %s: %d rows in %.1f s", name, n, time.perf_counter() - t0)
        shutil.rmtree(tmp / ".spill", ignore_errors=True)
        # Lineage of the copy: which source files (by SHA-256, cached) it was made from.
        (tmp / "clinops_convert.json").write_text(json.dumps(
            {"source": str(db.root), "source_sha256": db.file_sha256(),
             "duckdb": duckdb.__version__, "rows": counts,
             "sorted_by": {k: v for k, v in EVENT_SORT_KEYS.items() if sort_events}},
            indent=2, sort_keys=True) + "\n")
    except BaseException:
        db.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    db.close()
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)
    return counts


def main(argv: list[str] | None = None) -> int:
    """``clinops convert SRC --to parquet --out DST``."""
    ap = argparse.ArgumentParser(prog="clinops convert",
                                 description="Copy a MIMIC-IV csv.gz directory to parquet.")
    ap.add_argument("src", help="MIMIC-IV directory (hosp/*.csv.gz, icu/*.csv.gz)")
    ap.add_argument("--to", choices=["parquet"], default="parquet")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--memory-limit", default="2GB", help="DuckDB memory limit (default 2GB)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--sort-events", action="store_true",
                    help="order chartevents/labevents by itemid (out-of-core sort; faster "
                         "item-filtered queries later)")
    args = ap.parse_args(argv)

    def report(table: str, i: int, n: int) -> None:
        print(f"[{i}/{n}] {table}", file=sys.stderr, flush=True)

    try:
        counts = convert_to_parquet(args.src, args.out, progress=report,
                                    memory_limit=args.memory_limit, threads=args.threads,
                                    overwrite=args.overwrite, sort_events=args.sort_events)
    except (MimicSchemaError, FileExistsError) as exc:
        print(f"clinops convert: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {len(counts)} tables, {sum(counts.values()):,} rows to {args.out}")
    return 0
