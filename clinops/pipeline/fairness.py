"""Stage 04, fairness: Table 2, gaps with bootstrap CIs, alert rules, forest plot (notebook 04)."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from clinops import fairness
from clinops.config import Params
import clinops.pipeline.paper_mapping as paper_mapping
from clinops.pipeline.context import groups_for, task_config, write_figure
from clinops.pipeline.governance import fresh_state_machine
from clinops.report import record_values, write_table


def run_fairness(P: Params, task: str = "primary") -> SimpleNamespace:
    """Table 2, fairness gaps with bootstrap CIs, alert rules and the forest plot (notebook 04)."""
    t = task_config(P, task)
    rs = t.resolved
    threshold, min_group = rs.operating_threshold, rs.fairness.min_group_size
    n_boot = int(t.settings["fairness"]["n_boot"])  # a reporting setting, not a rule the model carries
    seed = t.seed
    preds = pd.read_parquet(t.predictions_path)
    y, prob = preds["label"].to_numpy(dtype=int), preds["probability"].to_numpy()
    groups = groups_for(t, preds)
    table = fairness.subgroup_table(y, prob, {k: v.to_numpy() for k, v in groups.items()}, threshold=threshold,
                                    n_boot=n_boot, seed=seed, min_group_size=min_group)
    gaps = pd.concat([fairness.fairness_gaps(y, prob, groups[a].to_numpy(), threshold=threshold, n_boot=n_boot,
                                             seed=seed, min_group_size=min_group, attribute=a)
                      for a in groups], ignore_index=True)
    alerts = fairness.fairness_alerts(table, rs.fairness, gaps=gaps)
    state = fresh_state_machine(P, t, "fairness")
    if alerts:
        state.on_fairness_alert(alerts)
    fig = fairness.plot_subgroups(table, title=f"{t.title}: test years, threshold {threshold} ({P.data_label})")
    alerts_md = ("No fairness alert: every gap is within the policy."
                 if not alerts else "\n".join(f"- **ALERT** {a.message}" for a in alerts)
                 + "\n\nAn alert sends the model to human review (Layer 4); it never triggers retraining.")
    out = t.reports_dir / "fairness"
    # index=True: the (attribute, group) index is what names each row, NOT ESTIMABLE ones included.
    write_table(table, out / "table2", title=f"Table 2: performance by subgroup ({t.title})", data_label=P.data_label,
                index=True, note=f"Bootstrap 95 % CIs, {n_boot} resamples, seed {seed}. Groups with fewer than "
                     f"{min_group} stays or one outcome class are reported as not estimable.")
    write_table(gaps, out / "fairness_gaps", title="Fairness gaps with bootstrap 95 % CIs", data_label=P.data_label)
    (out / "alerts.md").write_text(f"# Fairness alerts ({t.title})\n\nData: **{P.data_label}**.\n\n{alerts_md}\n")
    write_figure(fig, out / "subgroups.png")

    if t.comparison:
        record_values(P.build_dir, f"fairness_{t.key}", paper_mapping.fairness_values(t.task.paper, table, gaps))
    return SimpleNamespace(table2=table, gaps=gaps, alerts=alerts, alerts_markdown=alerts_md, figure=fig,
                           state=state.state)
