"""Stage 05, drift: the paper's shift scenario, the stream monitor (shift and no-shift runs),
Evidently, and what the governance state machine makes of it (notebook 05)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from clinops import drift
from clinops.modeling import ModelBundle
from clinops.config import Params
import clinops.pipeline.paper_mapping as paper_mapping
from clinops.pipeline.context import load_task_table, task_config, write_figure
from clinops.pipeline.governance import fresh_state_machine
from clinops.report import record_values, write_table
from clinops.tasks.temporal_split import analysis_masks
from clinops.uncertainty import RiskPredictor


def run_drift(P: Params, task: str = "primary") -> SimpleNamespace:
    """The paper's shift scenario, the streaming monitor (shift and no-shift runs), Evidently, escalation."""
    t = task_config(P, task)
    d = t.settings["drift"]
    seed = t.seed
    bundle = ModelBundle.load(t.bundle_dir)
    predictor = RiskPredictor(bundle)
    manifest = t.manifest()
    preds = pd.read_parquet(t.predictions_path)
    X_test = preds[manifest.names].reset_index(drop=True)
    y_test = preds["label"].to_numpy(dtype=int)

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return predictor.predict_frame(frame)["probability"].to_numpy()

    scenario = drift.shift_scenario(predict, X_test, y_test, column=d["feature"], n=min(d["n_shifted"], len(X_test)),
                                    seed=seed, target_prevalence=d.get("target_prevalence") if d.get("shift") is None else None,
                                    shift=d.get("shift"))
    policy = t.resolved.drift
    reference = drift.PsiReference.from_dict(bundle.reference, eps=policy.psi_eps)
    train_rows = load_task_table(t)
    train_rows = train_rows[analysis_masks(train_rows)[0]]  # in_analysis & split == 'train'
    ref_scores = predict(train_rows[manifest.names])
    rate = float(d["rate_per_hour"])
    unshifted = X_test.drop(index=scenario.X_shifted.index)
    before_scores = predict(unshifted)
    # Two days of unshifted admissions, then the shifted ones for as long as the pool lasts (at least 4 days).
    change_at = 48.0
    duration = change_at + max(96.0, len(scenario.X_shifted) / rate)
    state = fresh_state_machine(P, t, "drift")
    events: list = []
    monitor = drift.StreamMonitor.from_policy(policy, reference, reference_scores=ref_scores,
                                              eval_minutes=d["eval_minutes"], on_event=events.append)
    # The PSI bins in the bundle were fixed on encoded training features (categories as codes).
    enc_before, enc_after = manifest.encode(unshifted), manifest.encode(scenario.X_shifted)
    timeline, alarms = drift.simulate_stream(before_scores, scenario.scores_after, enc_before, enc_after,
                                             monitor=monitor, rate_per_hour=rate, change_at_hours=change_at,
                                             duration_hours=duration, seed=seed)
    summary = drift.stream_summary(alarms, change_at_hours=change_at, duration_hours=duration)
    quiet_monitor = drift.StreamMonitor.from_policy(policy, reference, reference_scores=ref_scores,
                                                    eval_minutes=d["eval_minutes"])
    quiet_hours = float(d["no_shift_days"]) * 24
    _, quiet_alarms = drift.simulate_stream(before_scores, None, enc_before, None, monitor=quiet_monitor,
                                            rate_per_hour=rate, change_at_hours=None, duration_hours=quiet_hours,
                                            seed=seed + 1)
    quiet = drift.stream_summary(quiet_alarms, change_at_hours=None, duration_hours=quiet_hours)

    after = alarms[alarms["after_change"]] if len(alarms) else alarms
    if len(after):
        first = after.sort_values("t_hours").iloc[0] if "t_hours" in after else after.iloc[0]
        state.on_drift(detector=str(first.get("detector", "monitor")), details={"drifted_features": monitor.drifted_features()},
                       degradation=None)
    state.on_degradation(reference_auroc=scenario.auroc_full, current_auroc=scenario.auroc_after)

    out = t.reports_dir / "drift"
    out.mkdir(parents=True, exist_ok=True)
    evidently = drift.evidently_report(train_rows[manifest.names], scenario.X_shifted, out / "evidently_psi.html",
                                       method="psi", threshold=policy.psi_alert if hasattr(policy, "psi_alert") else 0.2)
    scen = pd.DataFrame([scenario.summary()])
    scen["degradation_trigger"] = state.policy.degradation_trigger if hasattr(state.policy, "degradation_trigger") else 0.05
    scen["crosses_trigger"] = scen["relative_drop_vs_full"] >= scen["degradation_trigger"]
    # reset_index() keeps the detector names (the index of stream_summary) as a column.
    detection = summary.assign(run="shift at 48 h").reset_index()
    detection = pd.concat([detection, quiet.assign(run=f"no shift, {d['no_shift_days']:g} days").reset_index()],
                          ignore_index=True)
    gov = pd.DataFrame([e.to_dict() if hasattr(e, "to_dict") else dict(e) for e in state.history])
    stream_fig = drift.plot_stream(timeline, alarms, change_at_hours=change_at)
    psi_fig = drift.plot_psi_over_time(timeline, change_at_hours=change_at)
    dl = P.data_label
    write_table(scen, out / "scenario", title=f"Shift scenario: {d['feature']} ({t.title})", data_label=dl)
    write_table(detection, out / "detection", title=f"Detection in a simulated stream at {rate:g} admissions/hour, "
                f"evaluated every {d['eval_minutes']:g} simulated minutes", data_label=dl)
    write_table(evidently, out / "evidently_psi", title="Evidently PSI per feature (reference: training years)",
                data_label=dl)
    write_table(gov, out / "governance_events", title="Governance events of the drift stage (Layer 4)", data_label=dl,
                note="This stage's events only, from a newly deployed (ACTIVE) model; every stage's events: "
                     "governance/events.md.")
    write_figure(stream_fig, out / "score_stream.png")
    write_figure(psi_fig, out / "psi_over_time.png")
    notes = (f"Stream: {rate:g} admissions per simulated hour (Poisson), unshifted test admissions for "
             f"{change_at:g} h, then the {len(scenario.X_shifted):,} shifted ones. Model state after the scenario: "
             f"**{state.state.value if hasattr(state.state, 'value') else state.state}**. Nothing is retrained: "
             "a drift alarm opens a human review; a degradation above the trigger suspends the model until a "
             "reviewer resumes it.")
    if t.comparison and t.task.paper.drift:
        record_values(P.build_dir, f"drift_{t.key}", paper_mapping.drift_values(scenario, summary))
    return SimpleNamespace(scenario=scen, detection=detection, stream_figure=stream_fig, psi_figure=psi_fig,
                           governance=gov, notes=notes, alarms=alarms, timeline=timeline)
