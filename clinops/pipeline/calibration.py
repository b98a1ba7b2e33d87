"""Stage 00, synthetic data only: the generator's calibration targets beside plain-SQL counts, and
the real data's traps counted in the generated tables."""
from __future__ import annotations

import pandas as pd

from clinops.config import Params
from clinops.data.synth.calibration import connect, measure, target_table
from clinops.data.synth.traps import trap_table
from clinops.report import write_table


def run_synthetic_calibration(P: Params) -> pd.DataFrame:
    """The generator's calibration targets beside plain-SQL counts on this run's raw files.

    Writes ``reports/synthetic/calibration.{csv,md}``. Only for synthetic data: the targets are
    the paper's cohort statistics that the generator is built to reproduce (by construction, not
    a result).
    """
    if not P.is_synthetic:
        raise ValueError(f"{P.path.name}: data.source is {P.source!r}; calibration targets exist only for synthetic data")
    scale = float(P["data"].get("synthetic", {}).get("scale", 1.0))
    m = measure(P.mimic_dir)
    # Below paper scale the shares carry sampling noise: widen by 3 binomial SDs, as the quick test does.
    table = target_table(m, scale=scale, noise_sd=0.0 if scale >= 1 else 3.0)
    extra = pd.DataFrame([{"target": "any in-hospital death (not a target)", "paper (scaled)": float("nan"),
                           "measured": m["any_death_prevalence"], "tolerance": float("nan"), "within": True}])
    table = pd.concat([table, extra], ignore_index=True)
    write_table(table, P.reports_dir / "synthetic" / "calibration",
                title=f"Synthetic MIMIC-IV: calibration targets at scale {scale:g}", data_label=P.data_label,
                note="Counted with plain SQL over the raw csv.gz files (clinops.data.synth.calibration), "
                     "independently of the pipeline's cohort and feature SQL. These agree with the paper by "
                     "construction of the generator; they are not findings.")
    return table


def run_synthetic_traps(P: Params) -> pd.DataFrame:
    """Each real-data trap (:mod:`clinops.data.synth.traps`) counted in this run's raw files.

    Writes ``reports/synthetic/traps.{csv,md}``. Only for synthetic data: on a real copy the
    traps are simply there; here the count says whether the generated world carries each one, so
    whether the pipeline's tests on it can meet it (a 0 means they cannot).
    """
    if not P.is_synthetic:
        raise ValueError(f"{P.path.name}: data.source is {P.source!r}; the trap counts are a check of synthetic data")
    scale = float(P["data"].get("synthetic", {}).get("scale", 1.0))
    table = trap_table(connect(P.mimic_dir))
    write_table(table, P.reports_dir / "synthetic" / "traps",
                title=f"Synthetic MIMIC-IV: the real data's traps at scale {scale:g}", data_label=P.data_label,
                note="Counted with one plain-SQL query per trap over the raw csv.gz files, on MIMIC-IV v2.2 "
                     "columns only (clinops.data.synth.traps), so they count what the generated data holds. "
                     "Real MIMIC-IV v2.2 has about 4,300 chartevents rows per ICU stay (313,645,063 rows / "
                     "73,181 stays, mimic-code validate.sql); see clinops/docs/synthetic.md.")
    return table
