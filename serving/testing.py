"""Test and benchmark harness: a small real model bundle and a real uvicorn server in a thread.

Nothing here is used by the service itself. :func:`build_demo_bundle` trains a small model with
the real :func:`clinops.modeling.fit_final` on synthetic rows (seeded), so tests exercise the
same bundle format, calibration and conformal code the pipeline produces. :class:`ServerThread`
runs the app under uvicorn on 127.0.0.1 and a free port, so tests talk real HTTP.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import uvicorn

from clinops.config import load_params
from clinops.features import FeatureManifest
from clinops.modeling import ModelBundle, fit_final, split_for_calibration
from clinops.settings import resolve_task_settings
from serving.app import CONFIG_DIR, create_app
from serving.tls import tls13_context_factory

# Plausible synthetic ranges (uniform) for the mortality features, in manifest units.
_DEMO_RANGES = {
    "age": (18, 95), "gcs": (3, 15), "map": (35, 110), "heart_rate": (50, 160), "resp_rate": (8, 40),
    "temperature": (35.0, 40.5), "spo2": (75, 100), "creatinine": (0.4, 6.0), "lactate": (0.5, 9.0),
    "albumin": (1.5, 4.8), "bilirubin": (0.2, 8.0), "platelets": (20, 450), "inr": (0.9, 4.0),
}


def demo_frame(n: int, *, seed: int, manifest: FeatureManifest | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Synthetic raw feature rows and labels with a known, learnable signal.

    Parameters
    ----------
    n : int
        Rows.
    seed : int
        Random seed (everything is drawn from one ``numpy.random.default_rng(seed)``).
    manifest : FeatureManifest, optional
        Defaults to the packaged mortality manifest.

    Returns
    -------
    X_raw : DataFrame of shape (n, n_features)
        Raw values in manifest units; about 10 % of lab values missing.
    y : ndarray of int, shape (n,)
        Outcome drawn from a logistic model of age, GCS, MAP, lactate and vasopressor use
        (about 11 % positive and an AUROC of about 0.85 for the true risk, as in the paper).
    """
    manifest = manifest or FeatureManifest.load("mortality")
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {}
    for spec in manifest.specs:
        if spec.kind == "numeric":
            lo, hi = _DEMO_RANGES.get(spec.name, (1.0, 10.0))
            values = rng.uniform(lo, hi, n)
            if spec.name in ("age", "gcs"):
                values = np.round(values)
            if spec.name in ("lactate", "albumin", "bilirubin", "inr"):
                values[rng.random(n) < 0.1] = np.nan
            data[spec.name] = values
        elif spec.kind == "binary":
            data[spec.name] = (rng.random(n) < 0.35).astype(float)
        else:
            data[spec.name] = rng.choice(list(spec.categories), n)
    X = pd.DataFrame(data, columns=manifest.names)
    lactate = X["lactate"].fillna(2.0).to_numpy()
    logit = (-5.2 + 0.035 * (X["age"].to_numpy() - 60) - 0.25 * (X["gcs"].to_numpy() - 12)
             - 0.03 * (X["map"].to_numpy() - 70) + 0.35 * lactate + 0.8 * X["vasopressor"].to_numpy())
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def build_demo_bundle(directory: str | Path, *, n: int = 1500, seed: int = 7, run_id: str = "demo-run",
                      manifest: FeatureManifest | None = None, settings=None) -> Path:
    """Train and save a small model bundle with the real pipeline functions.

    Parameters
    ----------
    directory : path-like
        Where :meth:`clinops.modeling.ModelBundle.save` writes the bundle.
    n : int
        Synthetic training rows.
    seed : int
        Seed for data, split, XGBoost and calibration.
    run_id : str
        Stored as ``lineage.run_id`` (the model version the server reports).
    settings : clinops.settings.TaskSettings, optional
        The rules the bundle carries (default: :func:`demo_settings`, the paper's mortality task).
    manifest : FeatureManifest, optional
        Defaults to the packaged mortality manifest; another one (an own cohort's) must keep
        the mortality features :func:`demo_frame` draws the outcome from.

    Returns
    -------
    Path
        The bundle directory.
    """

    manifest = manifest or FeatureManifest.load("mortality")
    X_raw, y = demo_frame(n, seed=seed, manifest=manifest)
    X = manifest.encode(X_raw)
    X_fit, X_cal, y_fit, y_cal = split_for_calibration(X, y, fraction=0.4, seed=seed)
    params = {"n_estimators": 60, "max_depth": 3, "learning_rate": 0.1, "subsample": 0.9,
              "colsample_bytree": 0.9, "min_child_weight": 1}
    bundle = fit_final(X_fit, y_fit, X_cal, y_cal, params=params, manifest=manifest, seed=seed,
                       settings=settings if settings is not None else demo_settings(),
                       lineage={"run_id": run_id, "dataset_sha256": "0" * 64, "source": "serving.testing demo data"})
    return bundle.save(directory)


REPO_ROOT = Path(__file__).resolve().parent.parent


def demo_settings(params_file: str = "params/default.yaml", task: str = "primary"):
    """The resolved settings of a task of the repository's parameter file (the demo model's)."""

    return resolve_task_settings(load_params(REPO_ROOT / params_file, root=REPO_ROOT), task)


def demo_app(bundle_dir: str | Path, state_dir: str | Path, **options):
    """The serving app on a bundle directory with the demo tokens and consent seed (the rules
    are the bundle's settings); ``options`` go to :func:`serving.app.create_app`."""

    return create_app(ModelBundle.load(bundle_dir), state_dir=Path(state_dir),
                      tokens_path=CONFIG_DIR / "tokens.example.yaml",
                      consent_seed_path=CONFIG_DIR / "consent.example.yaml", **options)


def demo_token(role: str) -> dict[str, str]:
    """Authorization header with the published demo token of ``role``."""
    return {"Authorization": f"Bearer demo-{role}-token"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerThread:
    """Run an ASGI app under uvicorn in a background thread (context manager).

    Parameters
    ----------
    app : ASGI application
    port : int, optional
        Defaults to a free port.
    ssl_certfile, ssl_keyfile : str, optional
        Serve HTTPS with TLS 1.3 as the minimum version.
    """

    def __init__(self, app, *, port: int | None = None, ssl_certfile: str | None = None,
                 ssl_keyfile: str | None = None):

        self.port = port or free_port()
        tls = ssl_certfile is not None
        self.config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False,
            ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile,
            ssl_context_factory=tls13_context_factory if tls else None)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)
        self.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class ServerProcess:
    """Run ``python -m serving`` in a child process on 127.0.0.1 and a free port (context manager).

    Waits until every worker has built its app and ``/healthz`` answers; on exit stops the
    server with SIGTERM. Its output goes to ``log_path``.

    Parameters
    ----------
    bundle_dir : path-like
        ``--model-dir``.
    state_dir : path-like
        ``--state-dir``.
    workers : int
        ``--workers``.
    args : list of str
        More command-line arguments.
    log_path : path-like, optional
        Defaults to ``server.log`` beside ``state_dir``.
    umask : int, optional
        The child's umask (default: inherited).
    """

    def __init__(self, bundle_dir: str | Path, state_dir: str | Path, *, workers: int = 2,
                 args: list[str] | None = None, log_path: str | Path | None = None, umask: int | None = None,
                 timeout: float = 120.0):
        self.state_dir = Path(state_dir)
        self.port = free_port()
        self.workers = workers
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path) if log_path else self.state_dir.parent / f"server-{self.port}.log"
        self.argv = [sys.executable, "-m", "serving", "--model-dir", str(bundle_dir), "--state-dir",
                     str(self.state_dir), "--host", "127.0.0.1", "--port", str(self.port), "--workers",
                     str(workers), "--demo", "--log-level", "info", *(args or [])]
        self.umask = umask
        self.timeout = timeout
        self.process: subprocess.Popen | None = None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (children of the supervisor)."""
        import psutil  # a test-only dependency, needed only by the multi-process server tests

        return [c.pid for c in psutil.Process(self.process.pid).children() if c.is_running()]  # type: ignore[union-attr]

    def __enter__(self) -> "ServerProcess":
        import httpx  # a test-only dependency (the HTTP client), deferred like psutil

        umask = self.umask
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(self.argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            preexec_fn=None if umask is None else (lambda: os.umask(umask)))
        deadline = time.monotonic() + self.timeout
        while self.log().count("serving model ") < self.workers:  # each worker logs it once its app is built
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"server did not start:\n{self.log()}")
            time.sleep(0.2)
        while True:
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"server does not answer /healthz:\n{self.log()}")
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
