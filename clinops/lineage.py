"""Lineage and tracking (Layer 3): every training run is an MLflow run in a local store.

The store lives inside the project (``<root>/mlruns/mlflow.db``, artifacts under
``<root>/mlruns/artifacts``), so no server is needed. A run records the hyperparameters, the
CV and test metrics, the dataset SHA-256s from the data layer, the SHA-256s of the feature SQL
and manifest, the versions of the key packages and the git commit; the full
:class:`~clinops.bundle.ModelBundle` is saved as run artifacts and the XGBoost model is
registered in the MLflow model registry under an alias (e.g. ``champion``). The run id is the
model version that appears in audit records (``bundle.lineage['run_id']``).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import re
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping

from clinops.bundle import ModelBundle

__all__ = ["tracking_uri", "artifact_root", "log_training_run", "load_registered_bundle",
           "package_versions", "git_commit", "KEY_PACKAGES"]

#: Distributions whose versions every run records.
KEY_PACKAGES = ("clinops", "numpy", "pandas", "scikit-learn", "xgboost", "MAPIE", "mlflow",
                "duckdb", "fairlearn", "river", "evidently")

_BUNDLE_ARTIFACT = "bundle"
_MODEL_ARTIFACT = "model"
_METRIC_NAME = re.compile(r"^[A-Za-z0-9_\-. /]+$")


def tracking_uri(project_root: str | Path) -> str:
    """SQLite tracking/registry URI of the project's local MLflow store.

    Parameters
    ----------
    project_root : path
        Project directory; the store is ``<root>/mlruns/mlflow.db``.

    Returns
    -------
    str
        ``'sqlite:///<absolute root>/mlruns/mlflow.db'``.
    """
    root = Path(project_root).resolve()
    return f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"


def artifact_root(project_root: str | Path) -> Path:
    """Directory holding run artifacts: ``<root>/mlruns/artifacts``."""
    return Path(project_root).resolve() / "mlruns" / "artifacts"


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`KEY_PACKAGES` plus Python (``'not installed'`` if absent)."""
    out = {"python": platform.python_version()}
    for dist in KEY_PACKAGES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def git_commit(project_root: str | Path) -> tuple[str, bool | None]:
    """``(commit, dirty)`` of the git checkout at ``project_root``.

    Returns ``('unknown', None)`` outside a git repository or before the first commit.
    ``dirty`` is True when tracked files have uncommitted changes.
    """
    root = str(Path(project_root).resolve())
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--verify", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown", None
        status = subprocess.run(["git", "-C", root, "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True,
                                timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return head.stdout.strip(), dirty


@contextlib.contextmanager
def _store(uri: str) -> Iterator[Any]:
    """Point MLflow at ``uri`` for the block (restored afterwards) and keep it quiet."""
    # mlflow is imported only when a run is logged or loaded: it is heavy (about 2 s) and the
    # server, the notebooks and most tests never need it.
    import mlflow

    quiet = {name: logging.getLogger(name) for name in ("mlflow", "alembic")}
    levels = {name: lg.level for name, lg in quiet.items()}
    for lg in quiet.values():
        lg.setLevel(logging.WARNING)
    env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI",
                                          "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")}
    # Restore exactly what was set before (None = unset), so callers' MLflow setup survives.
    # Public API only: is_tracking_uri_set() tells an explicit tracking URI from the default;
    # an explicit registry URI is exported to MLFLOW_REGISTRY_URI by set_registry_uri.
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    previous_registry = env["MLFLOW_REGISTRY_URI"]
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # no tqdm bars on stderr
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield mlflow
    finally:
        mlflow.set_tracking_uri(previous)
        mlflow.set_registry_uri(previous_registry)
        for k, v in env.items():  # set_*_uri also export env vars; put them back
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for name, lg in quiet.items():
            lg.setLevel(levels[name])


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _check_hashes(hashes: Mapping[str, str], name: str) -> dict[str, str]:
    if not isinstance(hashes, Mapping) or not hashes:
        raise ValueError(f"{name}: must be a non-empty mapping of name -> SHA-256 hex digest")
    out = {}
    for k, v in hashes.items():
        if not isinstance(v, str) or not re.fullmatch(r"[0-9a-f]{64}", v):
            raise ValueError(f"{name}[{k!r}]: must be a 64-character lowercase hex SHA-256, "
                             f"got {v!r}")
        out[str(k)] = v
    return out


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def log_training_run(
    bundle: ModelBundle,
    *,
    project_root: str | Path,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    dataset_sha256: Mapping[str, str],
    feature_sha256: Mapping[str, str],
    experiment: str,
    registered_model_name: str,
    tags: Mapping[str, str] | None = None,
    alias: str = "champion",
) -> str:
    """Log one training run, save the bundle as artifacts and register the model.

    On return ``bundle.lineage`` holds ``run_id``, the hashes, package versions, git commit,
    experiment, registered name/version/alias and the SHA-256 of the saved XGBoost model; the
    bundle saved in the run already contains them (so a bundle loaded from the registry knows
    its own run id).

    Parameters
    ----------
    bundle : ModelBundle
        The fitted model (:func:`clinops.modeling.fit_final`).
    project_root : path
        Project directory holding the store (:func:`tracking_uri`) and the git checkout.
    params : mapping
        Run parameters (hyperparameters, seeds, sizes); nested mappings become dotted keys.
    metrics : mapping
        Metric name -> number (CV and test metrics).
    dataset_sha256 : mapping
        Input file or table -> SHA-256 (from the data layer).
    feature_sha256 : mapping
        e.g. ``{'feature_sql': ..., 'manifest': ...}``.
    experiment : str
        MLflow experiment name (created if absent, artifacts under :func:`artifact_root`).
    registered_model_name : str
        Model registry name; a new version is created for this run.
    tags : mapping, optional
        Extra run tags.
    alias : str
        Registry alias pointed at the new version (default ``'champion'``).

    Returns
    -------
    str
        The MLflow run id.
    """
    # mlflow deferred on purpose (heavy; see _store).
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    if not isinstance(experiment, str) or not experiment.strip():
        raise ValueError("experiment: must be a non-empty string")
    if not isinstance(registered_model_name, str) or not re.fullmatch(
            r"[A-Za-z0-9][A-Za-z0-9_.\-]*", registered_model_name):
        raise ValueError("registered_model_name: must be letters, digits, '_', '.', '-' "
                         f"(starting with a letter or digit), got {registered_model_name!r}")
    if not isinstance(alias, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", alias):
        raise ValueError(f"alias: must be a simple identifier, got {alias!r}")
    data_hashes = _check_hashes(dataset_sha256, "dataset_sha256")
    feat_hashes = _check_hashes(feature_sha256, "feature_sha256")
    metric_values: dict[str, float] = {}
    for k, v in _flatten(metrics).items():
        if not _METRIC_NAME.match(k):
            raise ValueError(f"metrics[{k!r}]: name may hold only letters, digits, _ - . / space")
        try:
            metric_values[k] = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"metrics[{k!r}]: must be a number, got {v!r}") from None
    flat_params = {k: ("None" if v is None else str(v)) for k, v in _flatten(params).items()}

    root = Path(project_root).resolve()
    uri = tracking_uri(root)
    (root / "mlruns").mkdir(parents=True, exist_ok=True)
    versions = package_versions()
    commit, dirty = git_commit(root)

    with _store(uri) as mlflow:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            location = artifact_root(root) / re.sub(r"[^A-Za-z0-9_.-]+", "_", experiment)
            exp_id = client.create_experiment(experiment, artifact_location=location.as_uri())
        else:
            exp_id = exp.experiment_id
        with mlflow.start_run(experiment_id=exp_id) as run:
            run_id = run.info.run_id
            bundle.lineage.update({
                "run_id": run_id,
                "experiment": experiment,
                "dataset_sha256": data_hashes,
                "feature_sha256": feat_hashes,
                "package_versions": versions,
                "git_commit": commit,
                "git_dirty": dirty,
                "registered_model_name": registered_model_name,
                "alias": alias,
            })
            mlflow.log_params(flat_params)
            mlflow.log_metrics(metric_values)
            run_tags = {f"dataset_sha256.{k}": v for k, v in data_hashes.items()}
            run_tags.update({f"feature_sha256.{k}": v for k, v in feat_hashes.items()})
            run_tags.update({f"version.{k}": v for k, v in versions.items()})
            run_tags.update({"git_commit": commit, "git_dirty": str(dirty)})
            run_tags.update({str(k): str(v) for k, v in (tags or {}).items()})
            with tempfile.TemporaryDirectory(prefix="clinops-bundle-") as tmp:
                bdir = bundle.save(Path(tmp) / _BUNDLE_ARTIFACT)
                model_sha = _file_sha256(bdir / "model.json")
                run_tags["model_sha256"] = model_sha
                mlflow.set_tags(run_tags)
                mlflow.log_artifacts(str(bdir), artifact_path=_BUNDLE_ARTIFACT)
            signature = ModelSignature(
                inputs=Schema([ColSpec("double", n) for n in bundle.feature_names]),
                outputs=Schema([ColSpec("float", "raw_score")]))
            info = mlflow.xgboost.log_model(
                bundle.booster, name=_MODEL_ARTIFACT, signature=signature, model_format="json",
                # Naming the requirement skips MLflow's slow import-tracing inference.
                pip_requirements=[f"xgboost=={versions['xgboost']}"],
            )
        # Register through the client: same registry entry as log_model(registered_model_name=)
        # but without the messages MLflow's fluent helper prints to stderr.
        try:
            client.get_registered_model(registered_model_name)
        except MlflowException:
            client.create_registered_model(registered_model_name)
        version_tags = {"run_id": run_id, "model_sha256": model_sha, "git_commit": commit,
                        **{f"dataset_sha256.{k}": v for k, v in data_hashes.items()},
                        **{f"feature_sha256.{k}": v for k, v in feat_hashes.items()}}
        mv = client.create_model_version(registered_model_name, source=info.model_uri,
                                         run_id=run_id, tags=version_tags,
                                         model_id=info.model_id)
        version = str(mv.version)
        client.set_registered_model_alias(registered_model_name, alias, version)
    bundle.lineage.update({"registered_model_version": version, "model_sha256": model_sha})
    return run_id


def load_registered_bundle(name: str, alias: str = "champion", *,
                           project_root: str | Path) -> ModelBundle:
    """Load the :class:`ModelBundle` behind a registry alias.

    The bundle's XGBoost model file is checked against the SHA-256 recorded on the model
    version, so a bundle that does not match what was registered is refused.

    Parameters
    ----------
    name : str
        Registered model name.
    alias : str
        Registry alias (e.g. ``'champion'``).
    project_root : path
        Project holding the store.

    Returns
    -------
    ModelBundle
        With ``lineage['run_id']`` = the registered version's run.
    """
    # mlflow deferred on purpose (heavy; see _store).
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = tracking_uri(project_root)
    if not (Path(project_root).resolve() / "mlruns" / "mlflow.db").is_file():
        raise FileNotFoundError(f"project_root: no MLflow store at {uri}")
    with _store(uri) as mlflow:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        try:
            mv = client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            raise LookupError(f"model registry: no version of {name!r} with alias {alias!r}"
                              ) from exc
        with tempfile.TemporaryDirectory(prefix="clinops-bundle-") as tmp:
            local = mlflow.artifacts.download_artifacts(
                run_id=mv.run_id, artifact_path=_BUNDLE_ARTIFACT, dst_path=tmp,
                tracking_uri=uri)
            expected = mv.tags.get("model_sha256")
            actual = _file_sha256(Path(local) / "model.json")
            if expected is not None and actual != expected:
                raise ValueError(f"model registry: {name!r}@{alias} bundle model.json has "
                                 f"SHA-256 {actual}, registered {expected}")
            bundle = ModelBundle.load(local)
    if bundle.run_id != mv.run_id:
        raise ValueError(f"model registry: bundle run_id {bundle.run_id!r} does not match the "
                         f"registered version's run {mv.run_id!r}")
    bundle.lineage.setdefault("registered_model_version", str(mv.version))
    bundle.lineage.setdefault("model_sha256", actual)
    return bundle
