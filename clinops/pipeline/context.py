"""The run context every stage starts from: parameters, banner, progress, data, task settings.

A *task* fills a run slot (``primary``: ICU mortality or a hospital's own cohort table;
``readmission``: 30-day readmission) and is looked up in the registry :mod:`clinops.tasks`;
:class:`TaskConfig` is that task in this run (its settings, folders and seed).

Artifacts (``build/<run>/<slot>/``): ``cohort.parquet``, ``task_table.parquet`` (one row per
stay: ``id``, the manifest's features in raw units, ``label``, ``split``, ``sensitive_sex``
(M/F), ``sensitive_age`` (years), optional ``group_<name>`` columns), ``bundle/`` (the model
bundle), ``test_predictions.parquet``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pandas as pd

from clinops import fairness
from clinops.config import Params, load_params
from clinops.data import freshness, mimic, postgres, spark, synthetic
from clinops.data.convert import convert_to_parquet
from clinops.features import FeatureManifest
from clinops.settings import TASK_SECTIONS, TaskSettings, resolve_task_settings, task_sections
from clinops.tasks import REGISTRY, Task, required_columns, task_for
from clinops.tasks.own_table import describe_source

#: The registered tasks that read MIMIC-IV (the data step checks every table they need).
MIMIC_TASKS = tuple(name for name, task in REGISTRY.items() if task.required_columns)


# ---------------------------------------------------------------------------------------------
# parameters, banner, progress
# ---------------------------------------------------------------------------------------------
def load(params_file: str | Path) -> Params:
    """Load and validate a parameter file (notebooks call this first)."""
    return load_params(params_file)


def banner(P: Params) -> str:
    """One Markdown line naming the run and, above all, the data it ran on."""
    warn = " **These are not real patients; no number here is a clinical result.**" if P.is_synthetic else ""
    return f"Run `{P.name}` · parameters `{P.path.name}` · data: **{P.data_label}**.{warn}"


def progress(stage: str) -> Callable[..., None]:
    """A progress callback for a stage: prints elapsed seconds and the message on stderr."""
    start = time.monotonic()

    def report(*args: Any) -> None:
        # Callbacks report (message) or (message, fraction done); show fractions as percentages.
        msg = " ".join(f"{a:.0%}" if isinstance(a, float) and 0 <= a <= 1 else str(a) for a in args)
        print(f"[{stage} {time.monotonic() - start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    return report


def write_figure(fig: Any, path: Path) -> Path:
    """Save a matplotlib figure as a report PNG (120 dpi)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def query_dir(P: Params) -> Path:
    """The directory the SQL reads: the parquet copy when ``data.parquet`` is on."""
    if not P["data"].get("parquet", False):
        return P.mimic_dir
    tag = P.mimic_dir.name if P.is_synthetic else P.name
    return P.root / "data" / "parquet" / tag


def ensure_data(P: Params) -> SimpleNamespace:
    """Make sure the MIMIC-IV tables exist (generating the synthetic ones if needed).

    Idempotent, and never stale: a synthetic directory is generated once per (scale, seed) and
    generator code (regenerated when ``SYNTHETIC.json`` records another code hash); the parquet copy
    is made once per set of source files (made again when its ``clinops_convert.json`` names other
    SHA-256s). Both checks are :mod:`clinops.data.freshness` (the benchmarks reuse data by the same
    ones). Writes ``build/<run>/stamps/data.json`` with the SHA-256 of every source file.
    """
    report = progress("data")
    stamp = P.build_dir / "stamps" / "data.json"
    if P.source == "table":
        info = describe_source(P)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(info, indent=1, default=str))
        return SimpleNamespace(stamp=stamp, info=info, summary_markdown=f"User table `{info['path']}`.")
    if P.source == "postgres":
        # The SQL runs inside the database: check it before any work, record what was loaded.
        with open_database(P) as db:
            hashes = db.file_sha256()
            manifest = db.synthetic_manifest()
        # The params' label must agree with what load-postgres recorded (no synthetic data called real).
        postgres.check_loaded_from((P["data"].get("postgres") or {}).get("loaded_from"), manifest, db.dsn_label)
        info = {"source": P.source, "engine": P.engine, "data_label": P.data_label, "database": db.dsn_label,
                "sha256": hashes}
        if manifest is not None:
            info["synthetic"] = manifest  # the generator's SYNTHETIC.json, from the database's provenance
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(info, indent=1, default=str))
        return SimpleNamespace(stamp=stamp, info=info, summary_markdown=(
            f"Tables read inside PostgreSQL ({db.dsn_label}); {len(hashes)} tables carry the SHA-256 of the file "
            "`clinops load-postgres` loaded them from."))
    src = P.mimic_dir
    if P.is_synthetic:
        if freshness.synthetic_staleness(src) is not None:
            # absent, or written by another version of the generator's code: (re)generate
            made_by = freshness.generated_by(src)
            syn = P["data"].get("synthetic", {})
            report(f"{'generating' if made_by is None else 'regenerating (the generator changed)'} synthetic "
                   f"MIMIC-IV (scale {syn.get('scale', 1.0)}) into {src}")
            synthetic.generate(src, scale=float(syn.get("scale", 1.0)), seed=int(syn.get("seed", P.seed)),
                               progress=report, overwrite=True)
    elif not src.is_dir():
        raise FileNotFoundError(f"data.mimic_dir: {src} does not exist (edit {P.path.name}: it must be the "
                                "PhysioNet MIMIC-IV v2.2 folder holding hosp/ and icu/)")
    queries = query_dir(P)
    # Check the source before converting: one message listing every missing table/column.
    db = mimic.open_mimic(src, required=required_columns(*MIMIC_TASKS))
    hashes = db.file_sha256()
    if queries != src and freshness.parquet_staleness(queries, hashes) is not None:
        # absent, or a copy of other source files (regenerated or replaced): convert again
        report(f"converting to parquet -> {queries}")
        convert_to_parquet(src, queries, progress=lambda t, i, n: report(f"[{i}/{n}] {t}"), overwrite=True)
    info = {"source": P.source, "data_label": P.data_label, "mimic_dir": str(src), "query_dir": str(queries),
            "sha256": hashes}
    if P.engine != "duckdb":
        info["engine"] = P.engine  # the DuckDB stamp stays byte-identical to before engines existed
    if P.is_synthetic:
        info["synthetic"] = json.loads((src / "SYNTHETIC.json").read_text())
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(info, indent=1, default=str))
    n_files = len(hashes)
    summary = (f"Tables read from `{queries}` ({n_files} source files hashed with SHA-256 for lineage)."
               + (" Synthetic data generated by `clinops synth`: see its SYNTHETIC.json." if P.is_synthetic else ""))
    return SimpleNamespace(stamp=stamp, info=info, summary_markdown=summary)


def synthetic_scale(P: Params) -> float | None:
    """The generator scale of this run's data, or None for real or user data.

    From the data's provenance as the data step recorded it (``SYNTHETIC.json`` in
    ``stamps/data.json``: the generated directory's, or the one ``clinops load-postgres`` recorded
    in the database), so a PostgreSQL run is marked exactly as the DuckDB run of the same files.
    A synthetic run whose stamp is not written yet falls back to its params (what it generates).
    """
    stamp = P.build_dir / "stamps" / "data.json"
    manifest = json.loads(stamp.read_text()).get("synthetic") if stamp.is_file() else None
    if manifest is not None:
        return float(manifest["scale"])
    if P.is_synthetic:
        return float(P["data"].get("synthetic", {}).get("scale", 1.0))
    return None


def open_database(P: Params, task: Task | None = None) -> Any:
    """This run's MIMIC-IV on its engine: DuckDB views (default), PostgreSQL or Spark.

    Checks, before returning, that every table and column ``task`` reads (every MIMIC-IV task's
    when None) is there. Every engine's database has the interface of
    :class:`clinops.data.mimic.MimicDatabase` (``con.execute``, ``require``, ``close``).
    """
    required = task.required_columns if task is not None else required_columns(*MIMIC_TASKS)
    if P.engine == "postgres":
        pg = P["data"].get("postgres") or {}
        name = pg.get("dsn_env", postgres.DSN_ENV)
        if not os.environ.get(name):
            raise postgres.PostgresError(f"postgres: environment variable {name} is not set (rule: data.postgres.dsn_env "
                                         "names the variable holding the DSN; a DSN never goes into a parameter file)")
        return postgres.open_postgres(os.environ[name], required=required)
    if P.engine == "spark":
        master = (P.get("spark") or {}).get("master", spark.DEFAULT_MASTER)
        return spark.open_spark(query_dir(P), master=master, required=required)
    return mimic.open_mimic(query_dir(P), required=required)


def dataset_sha256(P: Params) -> dict[str, str]:
    """SHA-256 of every source file, as the data step computed them in this run."""
    stamp = P.build_dir / "stamps" / "data.json"
    if not stamp.is_file():
        ensure_data(P)
    return json.loads(stamp.read_text())["sha256"]


# ---------------------------------------------------------------------------------------------
# a task in this run
# ---------------------------------------------------------------------------------------------
@dataclass
class TaskConfig:
    """A registered task in this run: its declaration, settings, folders and seed.

    ``resolved`` holds every rule and threshold (:class:`clinops.settings.TaskSettings`, stored
    in the model bundle); ``settings`` keeps the raw sections for what is not a rule of the
    model (the drift *scenario*, search sizes); ``extra`` the task section's other keys (the
    readmission cohort's ``min_age``, ``service``, ...).
    """

    task: Task
    title: str
    manifest_source: Any
    settings: dict
    build_dir: Path
    reports_dir: Path
    resolved: TaskSettings
    seed: int
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The run slot (``primary`` or ``readmission``)."""
        return self.task.slot

    @property
    def comparison(self) -> bool:
        """Whether the task reproduces values of the paper."""
        return self.task.paper is not None

    @property
    def table_path(self) -> Path:
        return self.build_dir / "task_table.parquet"

    @property
    def bundle_dir(self) -> Path:
        return self.build_dir / "bundle"

    @property
    def predictions_path(self) -> Path:
        return self.build_dir / "test_predictions.parquet"

    def manifest(self) -> FeatureManifest:
        src = self.manifest_source
        return FeatureManifest.from_dict(src) if isinstance(src, dict) else FeatureManifest.load(src)

    def feature_hashes(self, manifest: FeatureManifest) -> dict[str, str]:
        """The manifest's digest and the digest of the SQL that built the task table (lineage)."""
        hashes = {"manifest": manifest.sha256}
        if self.task.feature_sql_sha256 is not None:
            hashes["feature_sql"] = self.task.feature_sql_sha256(manifest)
        return hashes


def task_config(P: Params, key: str) -> TaskConfig:
    """The task filling run slot ``key`` (``primary`` or ``readmission``) for this run's data.

    Settings are the top-level sections, overridden by the slot's own section (readmission).
    """
    task = task_for(key, P.source)
    section = P.get(task.slot, {}) or {}
    return TaskConfig(task=task, title=task.title_for(P), manifest_source=task.manifest_source(P),
                      settings=task_sections(P, task.slot), build_dir=P.build_dir / task.slot,
                      reports_dir=P.reports_dir / task.reports_subdir if task.reports_subdir else P.reports_dir,
                      resolved=resolve_task_settings(P, task.slot), seed=int(P.seed + task.seed_offset),
                      extra={k: v for k, v in section.items() if k not in TASK_SECTIONS})


def load_task_table(task: TaskConfig) -> pd.DataFrame:
    """The task table a build stage wrote (FileNotFoundError naming the stage to run first)."""
    if not task.table_path.is_file():
        raise FileNotFoundError(f"{task.table_path} is missing: run the step that builds the {task.title} table first")
    return pd.read_parquet(task.table_path)


def groups_for(task: TaskConfig, frame: pd.DataFrame) -> dict[str, pd.Series]:
    """The sensitive groups of a task-table frame: sex, age group (the task's edges), ``group_*``."""
    edges = list(task.resolved.age_edges)
    groups: dict[str, pd.Series] = {}
    sex, age = frame["sensitive_sex"], frame["sensitive_age"]
    if sex.notna().any():
        groups["sex"] = fairness.sex_groups(sex)  # 'unknown' / 'other' kept as groups of their own
    if age.notna().any():
        groups["age_group"] = fairness.age_groups(age.to_numpy(), edges=edges).astype(str)
        groups["age_group"].index = frame.index
    for col in [c for c in frame.columns if c.startswith("group_")]:
        groups[col[len("group_"):]] = frame[col].astype(str)
    return groups
