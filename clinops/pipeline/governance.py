"""Governance events of the stages: one fresh state machine per stage, and the declared merge.

Stages never share a state file, so what a report says cannot depend on which stage ran first
or on an earlier run; :func:`merge_governance_events` joins the stages' events (Layer 4).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from clinops import governance
from clinops.config import Params
from clinops.pipeline.context import TaskConfig, task_config
from clinops.report import write_table

GOVERNANCE_STAGES = ("fairness", "drift")


def governance_events_path(t: TaskConfig, stage: str) -> Path:
    """Where a stage writes its governance events (one file per stage, merged by a declared rule)."""
    if stage not in GOVERNANCE_STAGES:
        raise ValueError(f"stage: must be one of {GOVERNANCE_STAGES}, got {stage!r}")
    return t.build_dir / "governance" / f"{stage}.json"


def fresh_state_machine(P: Params, t: TaskConfig, stage: str) -> governance.GovernanceStateMachine:
    """A fresh state machine for one stage: each stage judges the newly deployed model (ACTIVE).

    Stages never share a state file, so what a report says cannot depend on which stage ran
    first or on an earlier run; :func:`merge_governance_events` joins the stages' events.
    """
    path = governance_events_path(t, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    return governance.GovernanceStateMachine(t.resolved.governance, path=path, model_id=f"{P.name}:{t.key}")


def merge_governance_events(P: Params, task: str = "primary") -> pd.DataFrame:
    """Join the governance events of the fairness and drift stages into one table.

    Writes ``<reports>/governance/events.{csv,md}``. Each stage starts from an ACTIVE model, so
    the table lists, per stage, what that stage's evidence did to the model state.
    """
    t = task_config(P, task)
    frames = []
    for stage in GOVERNANCE_STAGES:
        path = governance_events_path(t, stage)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run the {stage} step of task {t.key} first")
        history = json.loads(path.read_text()).get("history", [])
        frames.append(pd.DataFrame(history).assign(stage=stage))
    events = pd.concat(frames, ignore_index=True)
    if len(events):
        events = events[["stage", *[c for c in events.columns if c != "stage"]]]
        for col in events.columns:  # nested details as JSON text, so the CSV is one value per cell
            if events[col].map(lambda v: isinstance(v, (dict, list))).any():
                events[col] = events[col].map(lambda v: json.dumps(v, sort_keys=True, default=str))
    write_table(events, t.reports_dir / "governance" / "events", title=f"Governance events by stage ({t.title})",
                data_label=P.data_label,
                note="Each stage evaluates the newly registered model from the ACTIVE state; nothing here "
                     "retrains a model. `time_utc` is when the workflow recorded the event (wall clock).")
    return events
