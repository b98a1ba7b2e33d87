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
    # unknown/other sex: a row of Table 2, never one side of a male/female gap
    outside = {"sex": fairness.SEX_OUTSIDE_GAPS}
    gaps = pd.concat([fairness.fairness_gaps(y, prob, groups[a].to_numpy(), threshold=threshold, n_boot=n_boot,
                                             seed=seed, min_group_size=min_group, attribute=a,
                                             exclude=outside.get(a, ()))
                      for a in groups], ignore_index=True)
    pairwise = pd.concat([fairness.pairwise_gap_intervals(y, prob, groups[a].to_numpy(),
                                                          metrics=list(rs.fairness.pairwise_gap_limits),
                                                          threshold=threshold, n_boot=n_boot, seed=seed,
                                                          min_group_size=min_group, attribute=a,
                                                          exclude=outside.get(a, ()))
                          for a in groups], ignore_index=True)
    alerts = fairness.fairness_alerts(table, rs.fairness, gaps=gaps, pairwise=pairwise, exclude=outside)
    by_rule = fairness.alerts_by_rule(rs.fairness, pairwise=pairwise, gaps=gaps)
    counts = {rule: int(by_rule[f"alert_{rule}"].sum()) for rule in fairness.ALERT_RULES}
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
    write_table(by_rule, out / "alerts_by_rule", title="Fairness alerts under the point rule and the CI rule",
                data_label=P.data_label,
                note=f"Alerts: {counts['point']} under the point rule (the paper's: gap > limit), "
                     f"{counts['ci_excludes']} under ci_excludes (bootstrap 95 % CI entirely above the limit; "
                     f"{n_boot} resamples, seed {seed}). Rule in force: **{rs.fairness.alert_rule}**.")
    (out / "alerts.md").write_text(f"# Fairness alerts ({t.title})\n\nData: **{P.data_label}**.\n\n{alerts_md}\n")
    write_figure(fig, out / "subgroups.png")

    if t.comparison:
        record_values(P.build_dir, f"fairness_{t.key}", paper_mapping.fairness_values(t.task.paper, table, gaps))
    return SimpleNamespace(table2=table, gaps=gaps, alerts=alerts, alerts_by_rule=by_rule, alert_counts=counts, alerts_markdown=alerts_md, figure=fig,
                           state=state.state)
