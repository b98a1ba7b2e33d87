"""Settings resolved once: one frozen object per task, built from the parameter and policy files.

Every stage of the workflow, the model bundle and the server read a task's settings from a
:class:`TaskSettings`; nothing else re-reads the parameter or policy files. It answers every
"which value applies?" question in one place:

* the operating threshold (``modeling.threshold``; the only threshold key),
* the fairness rules (``params/policies/fairness.yaml`` with the task's overrides, then the
  parameter file's ``fairness.policy_overrides``), the age edges and the group columns,
* the drift and governance policies with the task's overrides,
* the conformal level and ECE binning, the modeling search settings, the MLflow names.

The object is stored in the model bundle (``bundle.json`` -> ``settings``) and logged to MLflow,
so a served model applies exactly the rules its reports were computed with.

Examples
--------
>>> from clinops.config import load_params
>>> s = resolve_task_settings(load_params("params/default.yaml"), "readmission")
>>> s.operating_threshold, s.fairness.pairwise_gap_limits["auroc"], s.fairness.min_group_size
(0.15, 0.05, 30)
>>> TaskSettings.from_dict(s.to_dict()) == s
True
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from clinops.drift import DriftPolicy
from clinops.fairness import FairnessPolicy
from clinops.governance import GovernancePolicy
from clinops.config import Params, deep_merge
from clinops.policy import PolicyError
from clinops.tasks import SLOTS, task_for

#: Conformal set modes (``uncertainty.conformal_mode``): ``marginal`` (one LAC quantile, the
#: paper's) or ``mondrian`` (one LAC quantile per true class, so each class is covered at the
#: level, deaths included). Stated here, the level that resolves it; :mod:`clinops.uncertainty` reads it.
CONFORMAL_MODES: tuple[str, ...] = ("marginal", "mondrian")

#: Where the calibrator and the conformal quantile get their rows (``modeling.calibration``):
#: ``split`` (the paper's: a held-out slice of the training years, the booster fitted on the
#: rest) or ``cross_fit`` (out-of-fold scores over the whole training split, the booster refitted
#: on all of it; see :mod:`clinops.modeling.cross_fit`).
CALIBRATION_SCHEMES: tuple[str, ...] = ("split", "cross_fit")

#: Calibration maps (``uncertainty.calibrator``): ``isotonic`` (the paper's step function: ties
#: whole blocks of scores) or ``isotonic_interpolated`` (linear between the isotonic blocks'
#: midpoints: strictly increasing, so it never changes the ranking; see
#: :mod:`clinops.uncertainty.calibrators`).
CALIBRATORS: tuple[str, ...] = ("isotonic", "isotonic_interpolated")


#: Sections of a parameter file that a task may override (``readmission: {modeling: ...}``).
TASK_SECTIONS = ("modeling", "uncertainty", "fairness", "drift", "mlflow")
TASKS = SLOTS  # the run slots a task fills (clinops.tasks)


class SettingsError(ValueError):
    """Settings that contradict each other; the message names the file, the key and the rule."""


@dataclass(frozen=True)
class TaskSettings:
    """The resolved settings of one task. Frozen: build it with :func:`resolve_task_settings`.

    Attributes
    ----------
    task : 'primary' (ICU mortality, or a hospital's own cohort) or 'readmission'
    policy_task : the entry of the policy files' ``tasks:`` applied (None: the files' defaults)
    operating_threshold : float in (0, 1)
        Threshold on the calibrated probability for sensitivity, specificity, PPV and the
        fairness tables (``modeling.threshold``).
    confidence_level : float in (0, 1)
        Target coverage of the split-conformal sets.
    ece_bins, ece_strategy : ECE binning (``uncertainty``).
    calibrator : 'isotonic' (default, the paper's step map) or 'isotonic_interpolated' (strictly
        increasing: keeps the raw score's ranking) -- the map the bundle stores (``uncertainty.calibrator``).
    conformal_mode : 'marginal' (default, the paper's: one LAC quantile) or 'mondrian' (one per
        true class) -- which sets the bundle's predictor, hence the server, gives
        (``uncertainty.conformal_mode``).
    high_probability : float in (0, 1) or None
        A calibrated probability at or above it is "high": a {survives} singleton set beside it
        is the contradicting singleton flagged as low confidence (``uncertainty.high_probability``;
        None = the operating threshold, see :attr:`contradiction_probability`).
    age_edges : tuple of float
        Lower bounds of the age groups (years), e.g. (18, 45, 65, 80) -> 18-44, ..., 80+.
    group_columns : tuple of str
        Further group columns audited beside sex and age (own cohorts' ``other_columns``).
    age_feature, sex_feature : str or None
        The model inputs that carry age (years) and sex (binary, 1 = male), from which the
        server groups live outcomes for its fairness rules; None when the model has no such
        input (live fairness by that attribute is then not evaluated, and the server says so).
    fairness, drift, governance : the policies, task overrides applied.
    modeling : mapping
        ``cv_folds``, ``n_iter``, ``calibration_fraction``, ``n_boot``, ``candidates``,
        ``calibration`` ('split' or 'cross_fit', :data:`CALIBRATION_SCHEMES`).
    mlflow : mapping
        ``experiment``, ``registered_model``.
    sources : tuple of str
        The parameter files (``extends`` chain) and policy files the settings came from
        (names relative to the project root; provenance only, not compared).
    """

    task: str
    policy_task: str | None
    operating_threshold: float
    confidence_level: float
    ece_bins: int
    ece_strategy: str
    age_edges: tuple[float, ...]
    group_columns: tuple[str, ...]
    fairness: FairnessPolicy
    drift: DriftPolicy
    governance: GovernancePolicy
    age_feature: str | None = None
    sex_feature: str | None = None
    modeling: Mapping[str, Any] = field(default_factory=dict)
    mlflow: Mapping[str, str] = field(default_factory=dict)
    sources: tuple[str, ...] = field(default=(), compare=False)
    conformal_mode: str = "marginal"
    high_probability: float | None = None
    calibrator: str = "isotonic"

    def __post_init__(self) -> None:
        if self.calibrator not in CALIBRATORS:
            raise SettingsError(f"uncertainty.calibrator: must be one of {list(CALIBRATORS)}, got {self.calibrator!r}")
        scheme = self.modeling.get("calibration", "split")
        if scheme not in CALIBRATION_SCHEMES:
            raise SettingsError(f"modeling.calibration: must be one of {list(CALIBRATION_SCHEMES)}, got {scheme!r}")
        if self.conformal_mode not in CONFORMAL_MODES:
            raise SettingsError(f"uncertainty.conformal_mode: must be one of {list(CONFORMAL_MODES)}, "
                                f"got {self.conformal_mode!r}")
        if self.high_probability is not None and not 0.0 < self.high_probability < 1.0:
            raise SettingsError(f"uncertainty.high_probability: must be in (0, 1), got {self.high_probability!r}")

    @property
    def contradiction_probability(self) -> float:
        """The probability from which a {survives} singleton contradicts the model's own estimate."""
        return float(self.operating_threshold if self.high_probability is None else self.high_probability)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe mapping (what the bundle stores and MLflow logs)."""
        gov = self.governance.to_dict()
        gov["fairness_policy"] = None  # the resolved fairness rules travel as `fairness`, not a path
        return {
            "task": self.task, "policy_task": self.policy_task,
            "operating_threshold": float(self.operating_threshold),
            "confidence_level": float(self.confidence_level),
            "ece_bins": int(self.ece_bins), "ece_strategy": self.ece_strategy,
            "conformal_mode": self.conformal_mode, "high_probability": self.high_probability,
            "calibrator": self.calibrator,
            "age_edges": [float(e) for e in self.age_edges], "group_columns": list(self.group_columns),
            "age_feature": self.age_feature, "sex_feature": self.sex_feature,
            "fairness": self.fairness.to_dict(),
            "drift": self.drift.to_dict(),
            "governance": {k: (list(v) if isinstance(v, tuple) else v) for k, v in gov.items()},
            "modeling": dict(self.modeling), "mlflow": dict(self.mlflow), "sources": list(self.sources),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TaskSettings":
        """Inverse of :meth:`to_dict`; the policies validate their own values."""
        missing = sorted({"task", "operating_threshold", "fairness", "drift", "governance"} - set(d))
        if missing:
            raise SettingsError(f"settings: missing key(s) {missing} (a bundle written before settings were "
                                "resolved once: retrain it with `make all`)")
        return cls(task=d["task"], policy_task=d.get("policy_task"),
                   operating_threshold=float(d["operating_threshold"]),
                   confidence_level=float(d["confidence_level"]), ece_bins=int(d["ece_bins"]),
                   ece_strategy=str(d["ece_strategy"]), age_edges=tuple(float(e) for e in d["age_edges"]),
                   group_columns=tuple(d.get("group_columns", ())),
                   fairness=FairnessPolicy(**d["fairness"]), drift=DriftPolicy(**d["drift"]),
                   governance=GovernancePolicy(**d["governance"]), age_feature=d.get("age_feature"),
                   sex_feature=d.get("sex_feature"), modeling=dict(d.get("modeling", {})),
                   mlflow=dict(d.get("mlflow", {})), sources=tuple(d.get("sources", ())),
                   conformal_mode=str(d.get("conformal_mode", "marginal")),
                   calibrator=str(d.get("calibrator", "isotonic")),
                   high_probability=(None if d.get("high_probability") is None
                                     else float(d["high_probability"])))

    @property
    def sha256(self) -> str:
        """Content hash of the settings (provenance excluded): equal settings, equal hash."""
        d = self.to_dict()
        d.pop("sources")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def flat(self) -> dict[str, str]:
        """Dotted keys -> text, for MLflow parameters (``settings.fairness.min_group_size`` ...)."""
        out: dict[str, str] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, Mapping):
                for k, v in value.items():
                    walk(f"{prefix}.{k}", v)
            else:
                out[prefix] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)

        d = self.to_dict()
        d.pop("sources")
        walk("settings", d)
        return out


def task_sections(P: Params, task: str) -> dict[str, dict]:
    """The top-level sections, merged with the task's own sections (readmission)."""
    base = {s: dict(P.get(s, {}) or {}) for s in TASK_SECTIONS}
    if task == "primary":
        return base
    section = P.get("readmission", {}) or {}
    return {s: deep_merge(base[s], section.get(s, {}) or {}) for s in TASK_SECTIONS}


def policy_task_name(P: Params, task: str) -> str | None:
    """The entry of the policy files' ``tasks:`` that applies (None: the files' defaults)."""
    return task_for(task, P.source).policy_task


def _rel(P: Params, path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(P.root))
    except ValueError:
        return str(path)


def resolve_task_settings(P: Params, task: str) -> TaskSettings:
    """Build and validate the settings of ``task`` ('primary' or 'readmission').

    Raises
    ------
    SettingsError
        Two files name different fairness policies, or an override names an unknown rule.
    PolicyError
        A policy file breaks one of its rules (the message names file, key and rule).
    """
    if task not in TASKS:
        raise SettingsError(f"task: unknown task {task!r} (known: {', '.join(TASKS)})")
    sec = task_sections(P, task)
    m, u, f, d = sec["modeling"], sec["uncertainty"], sec["fairness"], sec["drift"]
    policy_task = policy_task_name(P, task)
    gov_path = P.resolve(P["governance"]["policy"])
    fair_path, drift_path = P.resolve(f["policy"]), P.resolve(d["policy"])
    governance = GovernancePolicy.load(gov_path, task=policy_task)
    if governance.fairness_policy and Path(governance.fairness_policy).resolve() != fair_path.resolve():
        raise SettingsError(f"{P.path}: fairness.policy: {fair_path} differs from the fairness_policy of "
                            f"{gov_path} ({governance.fairness_policy}); one fairness policy per run")
    fairness = FairnessPolicy.load(fair_path, task=policy_task)
    overrides = f.get("policy_overrides") or {}
    if overrides:
        try:
            fairness = FairnessPolicy.from_mapping({**fairness.to_dict(), **overrides}, where="policy_overrides")
        except (PolicyError, TypeError) as exc:
            raise SettingsError(f"{P.path}: fairness.policy_overrides: {exc}") from None
    drift = DriftPolicy.load(drift_path, task=policy_task)
    edges = list(f.get("age_edges", [18, 45, 65, 80]))
    group_columns: tuple[str, ...] = ()
    # Which model inputs are the sensitive attributes is the task's declaration (mortality: age
    # and the male flag; readmission: neither).
    declared_task = task_for(task, P.source)
    age_feature, sex_feature = declared_task.age_feature, declared_task.sex_feature
    if P.source == "table":
        sensitive = P["data"]["table"].get("sensitive") or {}
        if sensitive.get("age_edges"):
            edges = list(sensitive["age_edges"])  # the table's own groups
        group_columns = tuple(sensitive.get("other_columns") or ())
        declared = {f["name"] for f in P["data"]["table"]["features"]}
        age_feature = sensitive.get("age_column") if sensitive.get("age_column") in declared else None
        sex_feature = None  # an own table's sex column is text (M/F), not a model input
    if list(edges) != sorted(edges):
        raise SettingsError(f"{P.path}: age_edges: must be increasing, got {edges}")
    sources = [*(_rel(P, p) for p in P.files), _rel(P, gov_path), _rel(P, fair_path), _rel(P, drift_path)]
    return TaskSettings(
        task=task, policy_task=policy_task, operating_threshold=float(m["threshold"]),
        confidence_level=float(u["confidence_level"]), ece_bins=int(u.get("ece_bins", 10)),
        ece_strategy=str(u.get("ece_strategy", "uniform")),
        conformal_mode=str(u.get("conformal_mode", "marginal")),
        calibrator=str(u.get("calibrator", "isotonic")),
        high_probability=None if u.get("high_probability") is None else float(u["high_probability"]),
        age_edges=tuple(float(e) for e in edges),
        group_columns=group_columns, age_feature=age_feature, sex_feature=sex_feature, fairness=fairness, drift=drift,
        governance=governance.model_copy(update={"fairness_policy": None}),
        modeling={k: m[k] for k in ("cv_folds", "n_iter", "calibration_fraction", "calibration", "n_boot", "candidates")
                  if k in m},
        mlflow={k: sec["mlflow"][k] for k in ("experiment", "registered_model") if k in sec["mlflow"]},
        sources=tuple(dict.fromkeys(sources)))


__all__ = ["TaskSettings", "SettingsError", "CONFORMAL_MODES", "CALIBRATION_SCHEMES", "CALIBRATORS", "resolve_task_settings", "policy_task_name", "task_sections",
           "TASK_SECTIONS", "TASKS"]
