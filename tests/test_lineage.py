"""Tests for clinops.lineage: a real MLflow SQLite store in a temporary project directory."""
from __future__ import annotations

import hashlib
import os
import subprocess

import numpy as np
import pandas as pd
import pytest

from clinops import lineage, modeling, uncertainty
from tests.fixtures.tiny import TINY_MANIFEST as TINY

# the shared tiny manifest without its categorical feature (these tests fit on three numbers)
TINY_MANIFEST = {**TINY, "features": [f for f in TINY["features"] if f["name"] != "unit"]}
CONFIG = {"n_estimators": 40, "max_depth": 3, "learning_rate": 0.1, "subsample": 0.9,
          "colsample_bytree": 0.9, "min_child_weight": 1}
SHA_A = hashlib.sha256(b"admissions").hexdigest()
SHA_B = hashlib.sha256(b"icustays").hexdigest()
SHA_SQL = hashlib.sha256(b"select 1").hexdigest()


def _bundle(seed: int = 0) -> modeling.ModelBundle:
    rng = np.random.default_rng(seed)
    n = 1200
    X = pd.DataFrame({"age": rng.uniform(20, 90, n), "lactate": rng.gamma(2, 1.2, n),
                      "vent": rng.integers(0, 2, n).astype(float)})
    logit = -3 + 0.04 * (X.age - 60) + 0.6 * X.lactate + X.vent
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int).to_numpy()
    X.loc[rng.random(n) < 0.2, "lactate"] = np.nan
    X_fit, X_cal, y_fit, y_cal = modeling.split_for_calibration(X, y, fraction=0.3, seed=seed)
    return modeling.fit_final(X_fit, y_fit, X_cal, y_cal, params=CONFIG, manifest=TINY_MANIFEST,
                              seed=seed)


def _log(bundle, root, **over):
    kw = dict(project_root=root, params={"xgb": CONFIG, "seed": 0, "task": "mortality"},
              metrics={"cv_auroc_mean": 0.81, "test_auroc": 0.79, "test_ece": 0.02},
              dataset_sha256={"admissions.csv.gz": SHA_A, "icustays.csv.gz": SHA_B},
              feature_sha256={"feature_sql": SHA_SQL,
                              "manifest": bundle.lineage["manifest_sha256"]},
              experiment="icu-mortality", registered_model_name="icu-mortality-xgb",
              tags={"task": "mortality"})
    kw.update(over)
    return lineage.log_training_run(bundle, **kw)


def test_tracking_uri_is_inside_the_project(tmp_path):
    assert lineage.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert lineage.artifact_root(tmp_path) == tmp_path.resolve() / "mlruns" / "artifacts"


def test_logged_run_has_lineage_and_registered_model(tmp_path, capfd):
    from mlflow import MlflowClient

    bundle = _bundle()
    run_id = _log(bundle, tmp_path)
    out, err = capfd.readouterr()
    assert out == ""  # library code prints nothing
    assert "Successfully registered" not in err and "Downloading" not in err

    client = MlflowClient(tracking_uri=lineage.tracking_uri(tmp_path))
    run = client.get_run(run_id)
    assert run.data.params["xgb.max_depth"] == "3" and run.data.params["task"] == "mortality"
    assert run.data.metrics == {"cv_auroc_mean": 0.81, "test_auroc": 0.79, "test_ece": 0.02}
    tags = run.data.tags
    assert tags["dataset_sha256.admissions.csv.gz"] == SHA_A
    assert tags["dataset_sha256.icustays.csv.gz"] == SHA_B
    assert tags["feature_sha256.feature_sql"] == SHA_SQL
    assert tags["feature_sha256.manifest"] == bundle.lineage["manifest_sha256"]
    assert tags["version.xgboost"] == __import__("xgboost").__version__
    assert tags["version.scikit-learn"] == __import__("sklearn").__version__
    assert tags["git_commit"] == "unknown"  # tmp_path is not a git checkout
    assert tags["task"] == "mortality"
    # artifacts under <root>/mlruns/artifacts, bundle complete
    names = {a.path for a in client.list_artifacts(run_id, "bundle")}
    assert names == {"bundle/model.json", "bundle/calibrator.joblib", "bundle/bundle.json"}
    assert run.info.artifact_uri.startswith((tmp_path.resolve() / "mlruns" / "artifacts").as_uri())
    # registry: version 1 with alias champion pointing at this run
    mv = client.get_model_version_by_alias("icu-mortality-xgb", "champion")
    assert str(mv.version) == "1" and mv.run_id == run_id
    assert mv.tags["dataset_sha256.admissions.csv.gz"] == SHA_A
    assert bundle.run_id == run_id and bundle.lineage["registered_model_version"] == "1"
    assert bundle.lineage["package_versions"]["MAPIE"] == "1.6.0"

    # the registered model is the bundle's booster: same predictions from its model.json
    import xgboost as xgb
    from urllib.parse import urlparse

    # the registry records the logged model as its source, models:/<model id>
    assert mv.source.startswith("models:/m-")
    logged = client.get_logged_model(mv.model_id or mv.source.removeprefix("models:/"))
    registered = xgb.Booster()
    registered.load_model(urlparse(logged.artifact_location).path + "/model.json")
    grid = np.column_stack([np.linspace(20, 90, 50), np.linspace(0, 10, 50), np.arange(50) % 2])
    np.testing.assert_array_equal(registered.inplace_predict(grid),
                                  bundle.booster.inplace_predict(grid))
    assert mv.tags["model_sha256"] == bundle.lineage["model_sha256"]


def test_load_registered_bundle_round_trip_and_new_versions(tmp_path):
    first = _bundle(seed=0)
    run1 = _log(first, tmp_path)
    second = _bundle(seed=1)
    run2 = _log(second, tmp_path)
    assert run1 != run2
    loaded = lineage.load_registered_bundle("icu-mortality-xgb", "champion", project_root=tmp_path)
    assert loaded.run_id == run2 and loaded.lineage["registered_model_version"] == "2"
    assert loaded.lineage["dataset_sha256"] == {"admissions.csv.gz": SHA_A,
                                                "icustays.csv.gz": SHA_B}
    rec = {"age": 71, "lactate": 3.3, "vent": 1}
    a = uncertainty.RiskPredictor(second).predict_one(rec)
    b = uncertainty.RiskPredictor(loaded).predict_one(rec)
    assert a == b and b.model_version == run2
    with pytest.raises(LookupError, match="no version of 'icu-mortality-xgb' with alias 'gold'"):
        lineage.load_registered_bundle("icu-mortality-xgb", "gold", project_root=tmp_path)


def test_tampered_bundle_artifact_is_refused(tmp_path):
    bundle = _bundle()
    run_id = _log(bundle, tmp_path)
    model_file = (tmp_path / "mlruns" / "artifacts" / "icu-mortality" / run_id / "artifacts"
                  / "bundle" / "model.json")
    assert model_file.is_file()
    model_file.write_text(model_file.read_text().replace('"3"', '"4"', 1))
    with pytest.raises(ValueError, match="bundle model.json has SHA-256"):
        lineage.load_registered_bundle("icu-mortality-xgb", "champion", project_root=tmp_path)


def test_bad_lineage_input_is_rejected(tmp_path):
    bundle = _bundle()
    with pytest.raises(ValueError, match=r"dataset_sha256\['a'\]: must be a 64-character"):
        _log(bundle, tmp_path, dataset_sha256={"a": "abc"})
    with pytest.raises(ValueError, match=r"metrics\['auc'\]: must be a number"):
        _log(bundle, tmp_path, metrics={"auc": "high"})
    with pytest.raises(ValueError, match="registered_model_name"):
        _log(bundle, tmp_path, registered_model_name="bad name!")
    with pytest.raises(FileNotFoundError, match="no MLflow store"):
        lineage.load_registered_bundle("x", "champion", project_root=tmp_path / "nowhere")


def test_git_commit_recorded_in_a_git_checkout(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("x")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "init")
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert lineage.git_commit(tmp_path) == (head, False)
    (tmp_path / "a.txt").write_text("y")
    assert lineage.git_commit(tmp_path) == (head, True)


def test_logging_leaves_the_callers_mlflow_setup_as_it_was(tmp_path, monkeypatch):
    """The store is used for the call only: an unset tracking URI stays unset, a set one is kept."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(None)
    with lineage._store(lineage.tracking_uri(tmp_path)) as m:
        assert m.get_tracking_uri() == lineage.tracking_uri(tmp_path)
    assert not mlflow.is_tracking_uri_set()
    assert "MLFLOW_TRACKING_URI" not in os.environ
    mine = f"sqlite:///{tmp_path / 'mine.db'}"
    mlflow.set_tracking_uri(mine)
    try:
        with lineage._store(lineage.tracking_uri(tmp_path / "other")):
            pass
        assert mlflow.get_tracking_uri() == mine
    finally:
        mlflow.set_tracking_uri(None)
