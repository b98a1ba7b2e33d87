"""HTTPS with TLS 1.3 as the floor (paper, Layer 1: "TLS 1.3 or equivalent" in transit)."""
from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import sys

import httpx
import pytest
from cryptography import x509

from serving.testing import REPO_ROOT, ServerThread, build_demo_bundle, demo_app, demo_token, free_port
from serving.tls import write_self_signed_certificate


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    write_self_signed_certificate(cert, key, hostname="localhost", valid_days=2)
    return cert, key


@pytest.fixture(scope="module")
def https_server(tmp_path_factory, certificate):
    bundle = build_demo_bundle(tmp_path_factory.mktemp("bundle"), n=600, seed=3)
    cert, key = certificate
    with ServerThread(demo_app(bundle, tmp_path_factory.mktemp("state")), ssl_certfile=str(cert),
                      ssl_keyfile=str(key)) as server:
        yield server


def test_certificate_files(certificate):
    cert, key = certificate
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def _handshake(port: int, cafile, maximum: ssl.TLSVersion | None = None) -> str:
    context = ssl.create_default_context(cafile=str(cafile))
    if maximum is not None:
        context.maximum_version = maximum
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            return tls.version()


def test_https_negotiates_tls13_and_refuses_tls12(https_server, certificate):
    cert, _ = certificate
    assert _handshake(https_server.port, cert) == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        _handshake(https_server.port, cert, maximum=ssl.TLSVersion.TLSv1_2)
    with httpx.Client(base_url=f"https://localhost:{https_server.port}", verify=ssl.create_default_context(cafile=str(cert))) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        assert client.get("/v1/governance", headers=demo_token("clinician")).status_code == 200


def test_cli_make_cert_and_hash_token(tmp_path):
    out = subprocess.run([sys.executable, "-m", "serving", "make-cert", str(tmp_path / "c")], capture_output=True,
                         text=True, cwd=REPO_ROOT, check=True)
    assert (tmp_path / "c" / "cert.pem").exists() and "wrote" in out.stdout
    out = subprocess.run([sys.executable, "-m", "serving", "hash-token"], input="test\n", capture_output=True,
                         text=True, cwd=REPO_ROOT, check=True)
    assert out.stdout.strip() == 'sha256: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"'


def test_cli_serves_a_bundle_over_https(tmp_path, certificate):
    """`python -m serving` as `make serve` runs it: a subprocess on a bundle directory, HTTPS."""
    bundle = build_demo_bundle(tmp_path / "bundle", n=600, seed=3)
    cert, key = certificate
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "serving", "--model-dir", str(bundle), "--state-dir", str(tmp_path / "state"),
         "--host", "127.0.0.1", "--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key),
         "--demo", "--log-level", "warning"], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        context = ssl.create_default_context(cafile=str(cert))
        for _ in range(200):
            try:
                r = httpx.get(f"https://localhost:{port}/healthz", verify=context, timeout=2)
                break
            except httpx.TransportError:
                if process.poll() is not None:
                    pytest.fail(f"server exited: {process.stdout.read()}")
                import time

                time.sleep(0.1)
        else:
            pytest.fail("server did not answer within 20 s")
        assert r.json()["model_version"] == "demo-run"
    finally:
        process.terminate()
        process.wait(timeout=20)
