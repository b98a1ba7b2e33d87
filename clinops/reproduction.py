"""The reproduction check: every regenerated table against the committed copy.

``make all`` ends here. For each CSV the run wrote, the committed version (``git show
HEAD:<path>``) is compared cell by cell:

* **identical**: same header, same rows, every cell equal as text;
* **within tolerance**: equal except floating-point cells that differ by at most
  :data:`FLOAT_ABS_TOL` (absolute) or :data:`FLOAT_REL_TOL` (relative). Counts and every
  integer cell must be identical. The tolerance exists because a float computed from the same
  data and seed can change in its last bits with the BLAS kernel or the thread count
  (scikit-learn's LBFGS, XGBoost's histogram sums): 1e-9 is far above that noise (~1e-15
  relative) and far below the 3 decimals any report shows;
* **differs**: anything else; the report lists the cells (column, row, committed -> now);
* **no committed copy**: a new table, or a run whose reports are not committed (a user's own
  cohort, real MIMIC-IV).

Cells that name this run rather than its results (``VOLATILE``: the MLflow run id, the tracking
store's path, wall-clock times of governance events) are not compared, and the report says so.

Examples
--------
>>> import pandas as pd
>>> a = pd.DataFrame({"n": [10], "auc": [0.8]})
>>> compare_frames(a, a.assign(auc=0.8 + 1e-12))["status"]
'within tolerance'
>>> compare_frames(a, a.assign(n=11))["status"]
'differs'
"""
from __future__ import annotations

import argparse
import io
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from clinops.config import load_params
from clinops.report import write_table

FLOAT_ABS_TOL = 1e-9
FLOAT_REL_TOL = 1e-9
#: path suffix -> (column, rows selected by another column's value or None for all rows)
VOLATILE: dict[str, list[tuple[str, tuple[str, Sequence[str]] | None]]] = {
    "model/lineage.csv": [("value", ("item", ("MLflow run id (model version)", "tracking store")))],
    "governance/events.csv": [("time_utc", None)],
    "drift/governance_events.csv": [("time_utc", None)],
}
STATUS_ORDER = ("differs", "missing", "no committed copy", "within tolerance", "identical")


def committed_text(root: Path, path: Path) -> str | None:
    """The committed (HEAD) content of ``path``, or None (untracked, or not a git checkout)."""
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "show", f"HEAD:{rel.as_posix()}"], capture_output=True,
                             check=False)
    except OSError:
        return None
    return out.stdout.decode() if out.returncode == 0 else None


def _volatile_mask(frame: pd.DataFrame, rel: str) -> pd.DataFrame:
    mask = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    for suffix, rules in VOLATILE.items():
        if not rel.endswith(suffix):
            continue
        for column, selector in rules:
            if column not in frame.columns:
                continue
            if selector is None:
                mask[column] = True
            elif selector[0] in frame.columns:
                mask.loc[frame[selector[0]].astype(str).isin(selector[1]), column] = True
    return mask


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _is_integer_text(text: str) -> bool:
    return text.lstrip("-").isdigit()


def compare_frames(committed: pd.DataFrame, now: pd.DataFrame, *, rel: str = "", max_listed: int = 10) -> dict[str, Any]:
    """Compare two tables read as text. Returns ``status``, ``n_cells``, ``n_differing``,
    ``max_abs_diff`` (float cells), ``volatile_cells`` and ``cells`` (the first differing ones)."""
    committed, now = committed.astype(str), now.astype(str)
    out: dict[str, Any] = {"n_cells": int(now.size), "n_differing": 0, "max_abs_diff": 0.0, "volatile_cells": 0,
                           "cells": ""}
    if list(committed.columns) != list(now.columns) or committed.shape != now.shape:
        out.update(status="differs", n_differing=int(max(committed.size, now.size)),
                   cells=f"shape/header: committed {committed.shape} {list(committed.columns)[:8]} -> "
                         f"now {now.shape} {list(now.columns)[:8]}")
        return out
    volatile = _volatile_mask(now, rel) | _volatile_mask(committed, rel)
    out["volatile_cells"] = int(volatile.to_numpy().sum())
    listed, exact = [], True
    for col in now.columns:
        for i in range(len(now)):
            a, b = committed.iat[i, committed.columns.get_loc(col)], now.iat[i, now.columns.get_loc(col)]
            if a == b or volatile.iat[i, now.columns.get_loc(col)]:
                continue
            fa, fb = _as_number(a), _as_number(b)
            if (fa is not None and fb is not None and not (_is_integer_text(a) and _is_integer_text(b))
                    and (math.isnan(fa) == math.isnan(fb))):
                diff = 0.0 if math.isnan(fa) else abs(fa - fb)
                out["max_abs_diff"] = max(out["max_abs_diff"], diff)
                if diff <= FLOAT_ABS_TOL or diff <= FLOAT_REL_TOL * max(abs(fa), abs(fb)):
                    exact = False
                    continue
            out["n_differing"] += 1
            if len(listed) < max_listed:
                listed.append(f"{col}[{i}]: {a} -> {b}")
    out["cells"] = "; ".join(listed)
    out["status"] = "differs" if out["n_differing"] else ("identical" if exact else "within tolerance")
    return out


def compare_tables(root: Path, reports_dir: Path, paths: Sequence[Path]) -> pd.DataFrame:
    """One row per regenerated CSV (and per committed CSV of the run the run did not write)."""
    rows = []
    seen = set()
    for path in sorted(Path(p).resolve() for p in paths):
        seen.add(path)
        rel = path.relative_to(reports_dir.resolve()).as_posix() if path.is_relative_to(reports_dir.resolve()) else str(path)
        text = committed_text(root, path)
        if not path.is_file():
            rows.append({"table": rel, "status": "missing", "cells": "the run did not write it"})
            continue
        if text is None:
            rows.append({"table": rel, "status": "no committed copy"})
            continue
        result = compare_frames(pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False),
                                pd.read_csv(path, dtype=str, keep_default_na=False), rel=rel)
        rows.append({"table": rel, **result})
    cols = ["table", "status", "n_cells", "n_differing", "max_abs_diff", "volatile_cells", "cells"]
    frame = pd.DataFrame(rows).reindex(columns=cols)
    return frame.sort_values("table", kind="stable").reset_index(drop=True)


def write_report(P, paths: Sequence[str | Path]) -> pd.DataFrame:
    """Compare and write ``<reports>/reproduction.{csv,md}``; returns the table."""
    table = compare_tables(P.root, P.reports_dir, [Path(p) for p in paths])
    counts = table["status"].value_counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in STATUS_ORDER if s in counts)
    note = (f"{len(table)} tables: {summary}. Each regenerated CSV is compared with the committed copy (git HEAD). "
            f"Counts and integers must be identical; floating-point cells may differ by at most {FLOAT_ABS_TOL:g} "
            f"absolute or {FLOAT_REL_TOL:g} relative (the last bits of a float can change with the BLAS kernel or "
            "thread count; reports show 3 decimals). Not compared: the MLflow run id and tracking-store path "
            "(model/lineage.csv) and the wall-clock times of governance events (time_utc).")
    write_table(table, P.reports_dir / "reproduction", title="Reproduction check", data_label=P.data_label, note=note)
    return table


def check(P) -> int:
    """``make all``'s verdict: exit 1 listing every table that differs or is missing."""
    path = P.reports_dir / "reproduction.csv"
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    bad = table[table["status"].isin(["differs", "missing"])]
    if len(bad):
        print(f"clinops: reproduction check FAILED: {len(bad)} of {len(table)} tables differ from the committed copy "
              f"({path.with_suffix('.md')}):", file=sys.stderr)
        for _, row in bad.iterrows():
            print(f"  {row['table']}: {row['status']}: {row['cells']}", file=sys.stderr)
        print("If the change is intended (new code or settings), review the tables and commit them; "
              "`make all ALLOW_DIFF=1` reports without failing.", file=sys.stderr)
        return 1
    counts = table["status"].value_counts().to_dict()
    print(f"reproduction check: {len(table)} tables, " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="clinops reproduce",
                                 description="Compare regenerated tables with the committed copies.")
    ap.add_argument("params")
    ap.add_argument("tables", nargs="*", type=Path, help="regenerated CSV files (the workflow passes them)")
    ap.add_argument("--check", action="store_true", help="read reproduction.csv; exit 1 if a table differs")
    args = ap.parse_args(argv)
    P = load_params(args.params)
    if args.check:
        return check(P)
    table = write_report(P, args.tables)
    print(f"wrote {P.reports_dir / 'reproduction.md'} ({len(table)} tables)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
