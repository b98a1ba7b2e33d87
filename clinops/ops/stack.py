"""A real Prometheus server next to the serving demo: ``make stack``, and the integration test.

Prometheus pulls ``/metrics`` from the server; the server never sends anything to Prometheus,
so Prometheus being down, slow or refused (a wrong token) cannot touch a prediction
(tests/test_ops_stack.py stops it mid-traffic to show it).
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from clinops.ops.files import OPS_DIR, rule_paths
from clinops.ops.prometheus import scrape_config


class PrometheusError(RuntimeError):
    """Prometheus is not installed, did not start, or refused a query."""


def prometheus_binary() -> str | None:
    """Path of the ``prometheus`` executable (Debian package ``prometheus``), or None."""
    return shutil.which("prometheus")


class PrometheusServer:
    """A Prometheus process on 127.0.0.1 with its configuration and data in ``directory``.

    Parameters
    ----------
    directory : created if absent; holds ``prometheus.yml``, ``secrets/metrics-token``,
        ``data/`` and ``prometheus.log``
    root : project root: the rule files are the committed ones under ``serving/ops``
    target, task, scheme, ca_file : the serving demo to scrape (see
        :func:`clinops.ops.prometheus.scrape_config`)
    metrics_token : bearer token of a role allowed to read ``/metrics``
    port : Prometheus's port
    scrape_interval : also the rule evaluation interval
    """

    def __init__(self, directory: str | Path, *, root: str | Path, target: str, task: str, metrics_token: str,
                 port: int, scrape_interval: str = "15s", scheme: str = "http", ca_file: str | None = None):
        self.directory = Path(directory).resolve()
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        token_file = self.directory / "secrets" / "metrics-token"
        self.config: dict[str, Any] = scrape_config(
            target=target, task=task, credentials_file=str(token_file),
            rule_files=[str(p.resolve()) for p in rule_paths(Path(root) / OPS_DIR)],
            scrape_interval=scrape_interval, evaluation_interval=scrape_interval, scheme=scheme, ca_file=ca_file)
        self._token = metrics_token
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "PrometheusServer":
        """Write the configuration, start Prometheus and wait until it is ready.

        Raises
        ------
        PrometheusError : no ``prometheus`` executable, or not ready within ``timeout`` seconds.
        """
        binary = prometheus_binary()
        if binary is None:
            raise PrometheusError("prometheus: not installed (Debian: apt-get install prometheus)")
        token_file = self.directory / "secrets" / "metrics-token"
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.touch(mode=0o600)
        token_file.write_text(self._token + "\n")
        (self.directory / "prometheus.yml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        log = (self.directory / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [binary, f"--config.file={self.directory / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.directory / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT, cwd=self.directory)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited with {self.process.returncode}: "
                                      f"{(self.directory / 'prometheus.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise PrometheusError(f"prometheus: not ready on {self.url} after {timeout} s")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` now: ``[{"metric": {labels}, "value": [t, "v"]}, ...]``.

        Raises
        ------
        PrometheusError : Prometheus refused the query (the message is its error).
        """
        body = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        if body.get("status") != "success":
            raise PrometheusError(f"{expr}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]["result"]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "PrometheusServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_stack(server_command: list[str], *, root: Path, directory: Path, target: str, task: str,
              metrics_token: str, prometheus_port: int, scrape_interval: str = "15s", scheme: str = "http",
              ca_file: str | None = None) -> int:
    """Start the server command and Prometheus scraping it; print the URLs; stop both on Ctrl-C.

    Returns the server's exit code (0 when stopped by Ctrl-C or SIGTERM).
    """
    prometheus = PrometheusServer(directory, root=root, target=target, task=task, metrics_token=metrics_token,
                                  port=prometheus_port, scrape_interval=scrape_interval, scheme=scheme,
                                  ca_file=ca_file)
    server = subprocess.Popen(server_command)
    stopping = False

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        deadline = time.monotonic() + 60
        while ca_file and not Path(ca_file).exists() and time.monotonic() < deadline:
            time.sleep(0.2)  # a self-signed certificate the server is writing now
        prometheus.start()
        print(f"\nserving demo      {scheme}://{target}/review  (the review page; metrics: {scheme}://{target}/metrics, token needed)\n"
              f"prometheus        {prometheus.url}  (alerts: {prometheus.url}/alerts, targets: "
              f"{prometheus.url}/targets)\n"
              f"grafana dashboard {(root / OPS_DIR / 'grafana' / 'dashboards').relative_to(root)}/ "
              f"(see README, 'Operations')\n"
              f"Ctrl-C stops both.\n", flush=True)
        while not stopping and server.poll() is None:
            time.sleep(0.5)
    finally:
        try:  # a Ctrl-C in the terminal reached the server too: give it time to stop by itself
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
        prometheus.stop()
    return 0 if stopping else (server.returncode or 0)


def demo_metrics_token() -> str:
    """The published demo token of the ``system`` role (the scraper of the demo token file,
    serving/config/tokens.example.yaml; the package never imports the server, so the published
    value is stated here)."""
    return "demo-system-token"


def main_stack(args) -> int:
    """``clinops ops stack``: see :func:`run_stack`."""
    token = args.metrics_token_file.read_text().strip() if args.metrics_token_file else demo_metrics_token()
    if not args.server_command:
        print("stack: give the server command after --", file=sys.stderr)
        return 2
    return run_stack(args.server_command, root=args.root, directory=args.dir, target=args.target, task=args.task,
                     metrics_token=token, prometheus_port=args.prometheus_port, scrape_interval=args.scrape_interval,
                     scheme="https" if args.tls_ca else "http", ca_file=str(args.tls_ca.resolve()) if args.tls_ca else None)

