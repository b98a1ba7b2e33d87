"""``python -m serving``: run the serving demo under uvicorn (HTTP or HTTPS with TLS 1.3).

Examples
--------
The model that ``make all`` registered (MLflow registry under ``<project>/mlruns``), with the
published demo tokens and consent seed (``--demo``: loopback addresses only)::

    python -m serving --registered clinops-mortality@champion --host 127.0.0.1 --port 8000 --demo

A bundle directory, over HTTPS with a self-signed demo certificate::

    python -m serving --model-dir build/default/primary/bundle --self-signed-cert build/serving/tls --demo

Your own tokens and consent source, on all interfaces (TLS is then required)::

    python -m serving --tokens tokens.yaml --consent consent.yaml --host 0.0.0.0 --tls-cert c.pem --tls-key k.pem

Two worker processes on one state directory (they share the governance state, review queue,
outcome window, audit trail and metrics; a crashed worker is restarted)::

    python -m serving --registered clinops-mortality@champion --workers 2 --demo

Other commands::

    python -m serving hash-token        # reads a token on stdin, prints its token-file line
    python -m serving make-cert DIR     # writes DIR/cert.pem and DIR/key.pem (self-signed)
"""
from __future__ import annotations

import argparse
import gc
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import uvicorn

from clinops.privacy import hash_token
from clinops.statefiles import LockHeld, acquire_lock, private_directory
from serving.dealer import ConnectionDealer, DealtServer
from serving.tls import tls13_context_factory, write_self_signed_certificate

log = logging.getLogger("serving")

_HERE = Path(__file__).resolve().parent


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving", description="Run the clinops serving demo.")
    model = p.add_mutually_exclusive_group()
    model.add_argument("--model-dir", type=Path, help="a saved ModelBundle directory")
    model.add_argument("--registered", default="clinops-mortality@champion", metavar="NAME@ALIAS",
                       help="registered model in the project's MLflow registry (default: %(default)s)")
    p.add_argument("--project-root", type=Path, default=Path.cwd(), help="project holding mlruns/ (default: cwd)")
    p.add_argument("--state-dir", type=Path, default=Path("build/serving"),
                   help="audit trail, review queue, governance state, consent registry (default: %(default)s)")
    p.add_argument("--tokens", type=Path, help="bearer token file (required unless --demo)")
    p.add_argument("--consent", type=Path, help="consent and purpose seed (required unless --demo)")
    p.add_argument("--demo", action="store_true",
                   help="use the published demo tokens and consent seed (serving/config/*.example.yaml); "
                        "only on a loopback address")
    p.add_argument("--insecure-http", action="store_true",
                   help="serve plain HTTP on a non-loopback address (default there: refuse without TLS)")
    p.add_argument("--reference-auroc", type=float, default=None,
                   help="the model's test AUROC for the live degradation rule (default: the registered "
                        "run's metric named by --reference-metric, if any)")
    p.add_argument("--reference-metric", default="test_auroc", help="MLflow run metric holding the test AUROC")
    p.add_argument("--min-outcomes", type=int, default=100, help="linked outcomes before live metrics are judged")
    p.add_argument("--scoring-batch", type=int, default=32,
                   help="most concurrent predictions scored and audited together (1: one at a time)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--tls-cert", type=Path, help="PEM certificate: serve HTTPS (TLS 1.3 minimum)")
    p.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    p.add_argument("--self-signed-cert", type=Path, metavar="DIR",
                   help="create (if absent) and use DIR/cert.pem + DIR/key.pem (demo only)")
    p.add_argument("--audit", choices=["on", "off"], default="on",
                   help="'off' exists only for the benchmark's unaudited baseline")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes sharing the port and the state directory (default: %(default)s)")
    p.add_argument("--dealt-fd", type=int, help=argparse.SUPPRESS)  # a worker of --workers N: its channel
    p.add_argument("--log-level", default="info")
    return p


def _reference_auroc(args: argparse.Namespace, bundle) -> float | None:
    if args.reference_auroc is not None:
        return args.reference_auroc
    run_id = bundle.run_id
    if args.model_dir is not None or not run_id:
        return None
    try:
        from mlflow import MlflowClient  # heavy (MLflow): imported only when the registry is asked

        from clinops.lineage import tracking_uri  # loads the model stack (see _build_app)

        uri = tracking_uri(args.project_root)
        metrics = MlflowClient(tracking_uri=uri, registry_uri=uri).get_run(run_id).data.metrics
    except Exception as exc:  # the registry is optional for this lookup only
        log.warning("could not read run %s metrics: %s", run_id, exc)
        return None
    value = metrics.get(args.reference_metric)
    if value is None:
        log.warning("run %s has no metric %r: live degradation check off", run_id, args.reference_metric)
    return value


def _build_app(args: argparse.Namespace):
    # deferred on purpose: the model stack (xgboost, shap, FastAPI app) is imported by the
    # processes that serve, never by a --workers supervisor or the helper sub-commands
    from clinops.modeling import ModelBundle
    from serving.app import create_app

    if args.model_dir is not None:
        bundle = ModelBundle.load(args.model_dir)
    else:
        from clinops.lineage import load_registered_bundle  # the model stack, as above

        name, _, alias = args.registered.partition("@")
        bundle = load_registered_bundle(name, alias or "champion", project_root=args.project_root)
    app = create_app(bundle, state_dir=args.state_dir, tokens_path=args.tokens, consent_seed_path=args.consent,
                     audit_enabled=args.audit == "on", reference_auroc=_reference_auroc(args, bundle),
                     min_outcomes=args.min_outcomes, scoring_batch=args.scoring_batch)
    log.info("serving model %s (pid %d)", bundle.run_id, os.getpid())
    # What is loaded now (MLflow, pandas, scikit-learn, the model, the app) lives as long as the
    # process: keep it out of the cyclic garbage collector. Its full passes over those objects
    # paused a worker for ~150-190 ms under load (clinops/docs/serving.md, "The request path").
    gc.collect()
    gc.freeze()
    return app


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is only reachable from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _credentials_problem(args: argparse.Namespace) -> str | None:
    """Why these credential and transport options must not start a server, or None.

    The demo tokens and consent seed are published: they serve only a loopback address and
    only when asked for with ``--demo``. Outside loopback, plain HTTP needs ``--insecure-http``.
    """
    if args.demo:
        if not is_loopback(args.host):
            return (f"--demo: the demo tokens and consent seed are public; they serve only a loopback address, "
                    f"not {args.host}")
        args.tokens = args.tokens or _HERE / "config" / "tokens.example.yaml"
        args.consent = args.consent or _HERE / "config" / "consent.example.yaml"
    if args.tokens is None or args.consent is None:
        return ("--tokens and --consent: required (your token file and consent source); "
                "--demo uses the published demo ones on a loopback address")
    if not is_loopback(args.host) and args.tls_cert is None and args.self_signed_cert is None \
            and not args.insecure_http:
        return (f"--host {args.host}: not a loopback address, so TLS is required (--tls-cert/--tls-key or "
                "--self-signed-cert); --insecure-http serves plain HTTP anyway")
    return None


def _own_state_directory(state_dir: Path) -> int | str:
    """Hold ``state_dir/server.lock`` for the life of this process: a second server on the
    same state directory is refused (it would wipe the first one's metrics and race on its
    stores). Returns the lock's file descriptor, or why the directory is not available."""
    private_directory(state_dir)
    lock = state_dir / "server.lock"
    try:
        fd = acquire_lock(lock)
    except LockHeld:
        with open(lock, "rb") as holding:
            holder = holding.read(32).decode(errors="replace").strip() or "unknown"
        return (f"--state-dir {state_dir}: in use by another server (pid {holder}); stop it first or give "
                "this one its own state directory")
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd  # never closed: the lock goes with the process (workers do not inherit it)


def _serve(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    # every file and directory the server creates is its owner's only (state, metrics, keys),
    # whatever umask the caller had; the package also sets these modes explicitly
    os.umask(0o077)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if (args.tls_cert is None) != (args.tls_key is None):
        print("--tls-cert and --tls-key: give both or neither", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("--workers: must be at least 1", file=sys.stderr)
        return 2
    if args.scoring_batch < 1:
        print("--scoring-batch: must be at least 1", file=sys.stderr)
        return 2
    problem = _credentials_problem(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if args.self_signed_cert is not None:
        args.tls_cert, args.tls_key = args.self_signed_cert / "cert.pem", args.self_signed_cert / "key.pem"
        if not args.tls_cert.exists():
            write_self_signed_certificate(args.tls_cert, args.tls_key)
    tls = args.tls_cert is not None
    options = dict(host=args.host, port=args.port, log_level=args.log_level.lower(), access_log=False,
                   ssl_certfile=str(args.tls_cert) if tls else None, ssl_keyfile=str(args.tls_key) if tls else None,
                   ssl_context_factory=tls13_context_factory if tls else None)
    log.info("serving on %s://%s:%d with %d worker(s)", "https" if tls else "http", args.host, args.port, args.workers)
    if args.dealt_fd is None:  # the server itself (a supervisor, or one process): it owns the state directory
        owner = _own_state_directory(args.state_dir)
        if isinstance(owner, str):
            print(owner, file=sys.stderr)
            return 2
    if args.workers == 1:
        app = _build_app(args)
        if args.dealt_fd is None:
            uvicorn.run(app, **options)
            return 0
        # a worker of a --workers N server: it serves the connections the supervisor deals it
        channel = socket.socket(fileno=args.dealt_fd)
        DealtServer(uvicorn.Config(app, **options), channel).run()
        return 0
    return _supervise(args, argv)


def _supervise(args: argparse.Namespace, argv: list[str]) -> int:
    """Run ``args.workers`` worker processes on one port and one state directory until stopped.

    The supervisor listens and deals each connection to the worker with the fewest open
    connections (:class:`serving.dealer.ConnectionDealer`). The workers share their state
    through ``--state-dir`` (governance file, SQLite stores, audit trail); their metrics are
    summed through a Prometheus multiprocess directory in it. A worker that exits while the
    server runs is restarted after a back-off (:class:`RestartPolicy`) while the others keep
    serving; too many restarts in a window stop the server.
    """
    listener = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((args.host, args.port))
    except OSError as exc:
        print(f"--host/--port: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    listener.listen(2048)
    metrics_dir = args.state_dir / "prometheus-multiproc"
    if metrics_dir.exists():
        shutil.rmtree(metrics_dir)  # counters of earlier runs are not this run's
    metrics_dir.mkdir(parents=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir.resolve())}

    def spawn() -> tuple[subprocess.Popen, socket.socket]:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        worker_argv = [*argv, "--workers", "1", "--dealt-fd", str(theirs.fileno())]
        process = subprocess.Popen([sys.executable, "-m", "serving", *worker_argv], env=env,
                                   pass_fds=[theirs.fileno()])
        theirs.close()
        return process, mine

    workers, channels = [], []
    for _ in range(args.workers):
        process, channel = spawn()
        workers.append(process)
        channels.append(channel)
    dealer = ConnectionDealer(listener, channels)
    restarts = RestartPolicy()
    due: dict[int, float] = {}  # worker index -> when its replacement may start
    stopping = False

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for w in workers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0

    def running() -> bool:
        nonlocal code
        now = time.monotonic()
        for i, w in enumerate(workers):
            if stopping or w.poll() is None or i in due:
                continue
            # a worker that exits while the server runs has crashed (even with status 0): the
            # others keep serving, and it is replaced after a back-off, within a limit
            dealer.alive[i] = False
            delay = restarts.next_delay(now)
            if delay is None:
                log.error("worker %d exited with %d; %d restarts within %.0f s already: stopping the server",
                          w.pid, w.returncode, restarts.max_restarts, restarts.window_seconds)
                code = w.returncode or 1
                stop(signal.SIGTERM, None)
                return False
            log.error("worker %d exited with %d: restarting it in %.1f s (the others keep serving)",
                      w.pid, w.returncode, delay)
            due[i] = now + delay
        for i, when in list(due.items()):
            if stopping:
                break
            if now >= when:
                del due[i]
                workers[i], channel = spawn()
                dealer.replace(i, channel)
                log.info("worker %d started in place of a crashed one", workers[i].pid)
        return not stopping and any(w.poll() is None for w in workers)

    try:
        dealer.serve(running)
    finally:
        dealer.close()  # no new connections; the workers finish the ones they hold
        for w in workers:
            w.wait()
    return code


class RestartPolicy:
    """When to restart a crashed worker: exponential back-off, and a limit per window.

    Parameters
    ----------
    first_delay, max_delay : float
        Seconds before the first restart, doubling with each restart still in the window, up
        to ``max_delay``.
    max_restarts : int
        Restarts allowed within ``window_seconds``; one more crash stops the server (a worker
        that crashes on every start must not loop forever).
    window_seconds : float
    """

    def __init__(self, first_delay: float = 0.5, max_delay: float = 8.0, max_restarts: int = 5,
                 window_seconds: float = 300.0):
        self.first_delay, self.max_delay = float(first_delay), float(max_delay)
        self.max_restarts, self.window_seconds = int(max_restarts), float(window_seconds)
        self._times: list[float] = []

    def next_delay(self, now: float) -> float | None:
        """Seconds to wait before restarting a worker that crashed at ``now``; None: give up."""
        self._times = [t for t in self._times if t > now - self.window_seconds]
        if len(self._times) >= self.max_restarts:
            return None
        delay = min(self.max_delay, self.first_delay * 2 ** len(self._times))
        self._times.append(now)
        return delay


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["hash-token"]:
        token = sys.stdin.readline().strip()
        print(f'    sha256: "{hash_token(token)}"')
        return 0
    if argv[:1] == ["make-cert"]:
        if len(argv) != 2:
            print("usage: python -m serving make-cert DIR", file=sys.stderr)
            return 2
        directory = Path(argv[1])
        write_self_signed_certificate(directory / "cert.pem", directory / "key.pem")
        print(f"wrote {directory / 'cert.pem'} and {directory / 'key.pem'}")
        return 0
    return _serve(argv)


if __name__ == "__main__":
    sys.exit(main())
