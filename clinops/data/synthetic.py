"""Synthetic MIMIC-IV v2.2: ``clinops synth --out DIR --scale 1.0 --seed N``.

Writes a directory laid out like PhysioNet's MIMIC-IV v2.2 (``hosp/*.csv.gz``,
``icu/*.csv.gz``, v2.2 columns in DDL order) whose patients are invented. ``scale=1`` is paper
scale: after the cohort rules of clinops/docs/architecture.md it holds 23,841 ICU stays (16,751 in
2008-2016, 7,090 in 2017-2019) and a 30-day readmission cohort of about 31,847 MED discharges.
What is modelled and what is not: clinops/docs/synthetic.md.

The output is written to a temporary sibling directory and renamed into place at the end, so
a failed or interrupted run leaves nothing at ``out_dir``. The same (scale, seed) gives
byte-identical files whatever the number of worker processes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa

from .synth import events, population, tables
from .synth.schema import TABLES, encode_member, header_member

__all__ = ["GENERATOR_VERSION", "generate", "generator_code_sha256", "main"]

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1.0.0"
#: Modules of clinops/data/synth/ that read or count the data but never shape it: editing them
#: does not change what the generator writes.
_NOT_GENERATING = frozenset({"calibration.py", "traps.py"})


def generator_code_sha256() -> str:
    """SHA-256 of the generator's source (this file and ``synth/``), recorded in ``SYNTHETIC.json``.

    The workflow regenerates a data directory whose recorded hash differs: a generator edit must
    reach the data, not only the rules that read it (issue 15).
    """
    root = Path(__file__).resolve().parent
    files = [Path(__file__).resolve()] + sorted(p for p in (root / "synth").rglob("*.py")
                                                  if p.name not in _NOT_GENERATING)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
MAX_SCALE = 10.0
Progress = Callable[[str, float], None]


def _check_args(scale: float, seed: int, workers: int) -> None:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"scale: must be a finite number, got {scale!r}")
    if not 0.001 <= scale <= MAX_SCALE:
        raise ValueError(f"scale: must be in [0.001, {MAX_SCALE}], got {scale}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed: must be an integer in [0, 2**63), got {seed!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: must be a positive integer, got {workers!r}")


def _chunk_results(specs: list, workers: int) -> Iterator[dict]:
    """Chunk outputs in chunk order, made in ``workers`` processes (in this one if 1)."""
    if workers == 1 or len(specs) == 1:
        for spec in specs:
            yield events.make_chunk(spec)
        return
    # spawn: worker processes start clean (no inherited Arrow thread pools or locks)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                             initializer=_init_worker) as pool:
        yield from pool.map(events.make_chunk, specs, chunksize=1)


def _init_worker() -> None:
    pa.set_cpu_count(1)   # one process per core; no nested thread pools


def generate(out_dir: str | os.PathLike, *, scale: float = 1.0, seed: int,
             progress: Progress | None = None, workers: int | None = None,
             overwrite: bool = False) -> dict[str, int]:
    """Write a synthetic MIMIC-IV v2.2 directory and return the row count of every table.

    Parameters
    ----------
    out_dir : path-like
        Directory to create; it receives ``hosp/<table>.csv.gz``, ``icu/<table>.csv.gz`` and
        ``SYNTHETIC.json`` (generator version, seed, scale, row counts, a synthetic-data note).
    scale : float, default 1.0
        1.0 = paper scale: 23,841 cohort ICU stays (about 33,600 ICU stays in all and
        35 million chartevents rows). About 2.2 gives MIMIC-IV v2.2's 73,000 ICU stays; 3.0
        gives about 100,000 ICU stays and over 100 million chartevents rows. Allowed range
        [0.001, 10]; every count scales linearly.
    seed : int
        Master seed in [0, 2**63); the same (scale, seed) gives byte-identical files.
    progress : callable(str, float), optional
        Called with a message and the fraction done (0-1) as the run advances.
    workers : int, optional
        Processes generating the event tables; default ``min(2, os.cpu_count())``. Does not
        change the output.
    overwrite : bool, default False
        Replace an existing ``out_dir`` (only after the new data is complete).

    Returns
    -------
    dict of str to int
        Rows written per table, keyed like ``"icu/chartevents"``.

    Raises
    ------
    ValueError
        ``scale``, ``seed`` or ``workers`` out of range.
    FileExistsError
        ``out_dir`` exists and ``overwrite`` is False.
    """
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    _check_args(scale, seed, workers)
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not overwrite:
        raise FileExistsError(f"out_dir: {out} already exists (pass overwrite=True to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    report = progress or (lambda msg, frac: None)
    started = time.perf_counter()
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        (tmp / "hosp").mkdir(parents=True)
        (tmp / "icu").mkdir()
        rows = _write_all(tmp, scale, seed, workers, report)
        manifest = {
            "generator": "clinops.data.synthetic", "generator_version": GENERATOR_VERSION,
            "generator_code_sha256": generator_code_sha256(),
            "mimic_iv_version": "2.2", "seed": seed, "scale": scale,
            "rows": rows,
            "note": ("SYNTHETIC DATA: invented patients laid out like MIMIC-IV v2.2 "
                     "(PhysioNet). Not real patients and not derived from MIMIC-IV records; "
                     "see clinops/docs/synthetic.md for what is modelled and what is not."),
        }
        (tmp / "SYNTHETIC.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("synthetic MIMIC-IV written to %s in %.1f s", out, time.perf_counter() - started)
    report("done", 1.0)
    return rows


def _write_all(root: Path, scale: float, seed: int, workers: int, report: Progress
               ) -> dict[str, int]:
    report("planning patients, admissions and ICU stays", 0.0)
    pop = population.build_population(scale, seed, progress=report)
    providers, caregivers = tables.id_pools(scale, seed)
    rows: dict[str, int] = {}

    def write(name: str, cols: dict) -> None:
        data = encode_member(name, cols, include_header=True)
        (root / f"{name}.csv.gz").write_bytes(data)
        rows[name] = len(next(iter(cols.values())))

    report("writing hosp and icu tables", 0.1)
    transfers, icustays = tables.transfers_and_icustays(pop, seed)   # sets pop.stays["stay_id"]
    visits = tables.outpatient_visits(pop, seed)
    write("hosp/patients", tables.patients_table(pop))
    write("hosp/admissions", tables.admissions_table(pop, providers, seed))
    write("hosp/transfers", transfers)
    write("icu/icustays", icustays)
    write("hosp/services", tables.services_table(pop))
    write("hosp/diagnoses_icd", tables.diagnoses_table(pop, seed))
    write("hosp/procedures_icd", tables.procedures_table(pop, seed))
    write("hosp/omr", tables.omr_table(pop, visits, seed))
    for name, cols in tables.dictionary_tables().items():
        write(name, cols)
    write("hosp/provider", {"provider_id": np.array(sorted(providers), dtype=object)})
    write("icu/caregiver", {"caregiver_id": caregivers})

    specs = events.plan_chunks(pop, visits, caregivers, tuple(providers), seed)
    handles = {name: open(root / f"{name}.csv.gz", "wb") for name in events.EVENT_TABLES}
    try:
        for name, fh in handles.items():
            fh.write(header_member(name))
            rows[name] = 0
        for i, result in enumerate(_chunk_results(specs, workers)):
            for name, (member, n) in result.items():
                handles[name].write(member)
                rows[name] += n
            report(f"event tables: chunk {i + 1} of {len(specs)}", 0.15 + 0.85 * (i + 1) / len(specs))
    finally:
        for fh in handles.values():
            fh.close()
    missing = [t for t in TABLES if t not in rows]
    if missing:
        raise RuntimeError(f"tables not written: {missing}")
    return dict(sorted(rows.items()))


def main(argv: list[str] | None = None) -> int:
    """``clinops synth``: generate a synthetic MIMIC-IV v2.2 directory."""
    parser = argparse.ArgumentParser(
        prog="clinops synth",
        description="Write a synthetic MIMIC-IV v2.2 directory (hosp/, icu/ as .csv.gz).")
    parser.add_argument("--out", required=True, help="output directory (must not exist)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="1.0 = paper scale (23,841 cohort stays); 2.2 = MIMIC-IV's ICU stay "
                             "count; 3 = over 100 M chartevents rows")
    parser.add_argument("--seed", type=int, required=True, help="master seed (integer >= 0)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: min(2, cores)); output is identical")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)

    last = [-1.0]

    def progress(msg: str, frac: float) -> None:
        if args.quiet:
            return
        if frac >= 1.0 or frac - last[0] >= 0.02:
            last[0] = frac
            print(f"[{100 * frac:5.1f}%] {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    try:
        rows = generate(args.out, scale=args.scale, seed=args.seed, progress=progress,
                        workers=args.workers, overwrite=args.overwrite)
    except (ValueError, FileExistsError) as exc:
        print(f"clinops synth: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        total = sum(rows.values())
        print(f"wrote {total:,} rows in {len(rows)} tables to {args.out} "
              f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
