"""Detection delay and false alarms of a simulated stream, per detector."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from clinops.drift.detectors import DETECTORS
from clinops.drift.streams import stream_label

__all__ = ["stream_summary"]


def stream_summary(alarms: pd.DataFrame, *, change_at_hours: float | None, duration_hours: float,
                   detectors: Sequence[str] | None = None) -> pd.DataFrame:
    """Detection delay and false alarms per detector from :func:`simulate_stream`'s alarms.

    Parameters
    ----------
    alarms : DataFrame from :func:`clinops.drift.simulate_stream` (or a monitor's ``alarms()``)
    change_at_hours : the change point (None: no change, every alarm is a false alarm)
    duration_hours : length of the stream
    detectors : names of the detectors that ran (default: ``alarms.attrs['detectors']``, which
        the monitor sets, else the registry's default-enabled ones); each gets a row even
        without alarms.

    Returns
    -------
    DataFrame indexed by detector (the detectors, then 'psi_drift', 'psi_watch', 'any'; a
    detector on a feature stream is named ``cusum[mech_vent]``; 'any' is the combined monitor:
    every detector and the PSI alert, not the PSI watch level):
    ``false_alarms_before_change`` (all alarms when there is no change), ``detected``,
    ``delay_hours`` and ``delay_admissions`` of the first alarm after the change,
    ``features`` (PSI alarms: which features), ``false_alarms_per_30_days``.
    """
    if detectors is None:
        detectors = alarms.attrs.get("detectors")
    if detectors is None:
        detectors = [name for name, cls in DETECTORS.items() if cls.Settings().enabled]
    a = alarms.copy()
    if "after_change" not in a:
        a["after_change"] = False
    feature = a["feature"] if "feature" in a else pd.Series(None, index=a.index, dtype=object)
    a["label"] = [f"psi_{k}" if d == "psi" else (d if f is None or f != f else stream_label(d, f))
                  for d, k, f in zip(a["detector"], a["kind"], feature)]
    rows = []
    before_hours = change_at_hours if change_at_hours is not None else duration_hours
    for label in [*detectors, "psi_drift", "psi_watch", "any"]:
        sub = a if label == "any" else a[a["label"] == label]
        if label == "any":
            sub = sub[sub["label"] != "psi_watch"]
        before = sub[~sub["after_change"].astype(bool)]
        after = sub[sub["after_change"].astype(bool)]
        first = after.iloc[0] if len(after) else None
        rows.append({
            "detector": label,
            "false_alarms_before_change": len(before),
            "false_alarms_per_30_days": len(before) / before_hours * 720 if before_hours > 0 else np.nan,
            "detected": bool(first is not None),
            "delay_hours": float(first["hours_after_change"]) if first is not None else np.nan,
            "delay_admissions": float(first["admissions_after_change"]) if first is not None else np.nan,
            "features": ",".join(sorted(set(after["feature"].dropna()))) if label.startswith("psi") else "",
        })
    return pd.DataFrame(rows).set_index("detector")

