"""What a prediction task declares, in one place: the contract between a task and the workflow.

A task is a configuration of the same modules (cohort and label, features, then the shared
model, fairness and drift stages). Everything the workflow needs to know about one task is a
field of :class:`Task`, so the stages never branch on a task's name: where its rows come from
(``slot``, ``sources``), which MIMIC-IV tables and columns it reads (``required_columns``,
checked before any work starts), its feature manifest, the SQL files that define its table,
its seed offset and which values of the paper it reproduces (:class:`PaperIds`).

Examples
--------
>>> t = Task(name="sepsis", slot="primary", sources=("mimic-iv",), title="sepsis", manifest="sepsis",
...          required_columns={"mimiciv_icu.icustays": ["stay_id"]})
>>> t.title_for(None), t.reports_subdir, t.paper is None
('sepsis', '', True)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover - annotations only; tasks know no workflow at run time
    from clinops.config import Params
    from clinops.features import FeatureManifest

#: Run slots: the folder a task's artifacts go to (build/<run>/<slot>) and its settings section.
SLOTS = ("primary", "readmission")


@dataclass(frozen=True)
class PaperIds:
    """Which values of the paper (ids of ``clinops/paper_values.yaml``) a task's stages report.

    Attributes
    ----------
    model : mapping of str to str
        Test-evaluation metric (``auroc``, ``auroc_ci_low``, ``sensitivity``, ..., ``ece``,
        ``conformal_coverage``) -> paper id, in the order they are recorded.
    cv_and_hyperparameters : bool
        Also report stage-1 CV AUROCs (``cv_auroc_<model>``) and the chosen hyperparameters
        (``hp_<name>``).
    gap_prefix : str
        Fairness gaps are reported as ``<gap_prefix><eod|dpd|ppd>_<sex|age>`` where the paper
        has such an id.
    table2 : bool
        Report Table 2 cells (``t2_<metric>_<group>``) and ``max_auroc_gap``.
    drift : bool
        Report the drift scenario (``drift_auroc_before``, ...).
    """

    model: Mapping[str, str] = field(default_factory=dict)
    cv_and_hyperparameters: bool = False
    gap_prefix: str = ""
    table2: bool = False
    drift: bool = False


@dataclass(frozen=True)
class Task:
    """One prediction task.

    Attributes
    ----------
    name : str
        Registry key and the policy files' ``tasks:`` entry (``mortality``, ``readmission``).
    slot : {'primary', 'readmission'}
        Where the task's artifacts go (``build/<run>/<slot>``) and which settings apply.
    sources : tuple of str
        The ``data.source`` values the task runs on (one task per slot and source).
    title : str or callable(Params) -> str
        How reports name the task.
    manifest : str or callable(Params) -> dict
        A packaged manifest name, or a function building the manifest dict from the parameters.
    required_columns : mapping of table -> columns
        The MIMIC-IV tables and columns the task reads (empty for a task that reads no MIMIC-IV).
    sql_by_stage : mapping of stage -> file names
        Files of ``clinops/sql`` each stage of the task reads (declared workflow inputs).
    feature_sql_sha256 : callable(FeatureManifest) -> str, optional
        Digest of the SQL that defines the task table, stored in the model's lineage.
    seed_offset : int
        Added to the run's seed, so tasks get different but fixed seeds.
    reports_subdir : str
        Sub-folder of the run's reports ('' for the primary task).
    paper : PaperIds or None
        Values of the paper this task reproduces; None: no comparison with the paper.
    policy_task : str or None
        Entry of the policy files' ``tasks:`` that applies (None: the files' defaults).
    age_feature, sex_feature : str or None
        Model inputs that are the sensitive attributes age (years) and sex (male flag), if any.
    """

    name: str
    slot: str
    sources: tuple[str, ...]
    title: str | Callable[["Params"], str]
    manifest: str | Callable[["Params"], dict]
    required_columns: Mapping[str, Sequence[str]] = field(default_factory=dict)
    sql_by_stage: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    feature_sql_sha256: Callable[["FeatureManifest"], str] | None = None
    seed_offset: int = 0
    reports_subdir: str = ""
    paper: PaperIds | None = None
    policy_task: str | None = None
    age_feature: str | None = None
    sex_feature: str | None = None

    def __post_init__(self) -> None:
        if self.slot not in SLOTS:
            raise ValueError(f"Task {self.name!r}: slot must be one of {SLOTS}, got {self.slot!r}")

    def title_for(self, P: "Params") -> str:
        """The task's title in this run's reports."""
        return self.title(P) if callable(self.title) else self.title

    def manifest_source(self, P: "Params") -> Any:
        """What :meth:`clinops.features.FeatureManifest.load`/``from_dict`` takes for this run."""
        return self.manifest(P) if callable(self.manifest) else self.manifest


def merge_requirements(*specs: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """The union of table -> columns requirements, in first-seen order.

    Examples
    --------
    >>> merge_requirements({"a.t": ["x", "y"]}, {"a.t": ["y", "z"], "b.u": ["w"]})
    {'a.t': ['x', 'y', 'z'], 'b.u': ['w']}
    """
    merged: dict[str, list[str]] = {}
    for spec in specs:
        for table, cols in spec.items():
            have = merged.setdefault(table, [])
            have += [c for c in cols if c not in have]
    return merged
