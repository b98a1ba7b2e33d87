"""CPU of an audit commit when two writer processes share one trail (the server's two workers).

Usage::

    .venv/bin/python benchmarks/bench_audit_writers.py [--commits 1500] [--batch 1 2 4]

Two :class:`clinops.audit.AuditTrail` objects open the same temporary trail (each holds its own
descriptor of the lock, as two processes do) and commit in turn, so every commit first catches
up with the other writer's last one: reads it and checks its seal. Each commit carries
``--batch`` prediction records shaped like the server's (17 encrypted feature values and their
contributions). Printed: process CPU (user + system) per commit and per record for each batch
size, and the two ways a writer can check the other's seal: verifying it with the public key,
or signing its message again with the shared key and comparing (``Ed25519Signer.made``).
CPU time, not wall time: the machine's other load changes it less.
"""
from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from clinops.audit import AuditTrail, Ed25519Signer

FEATURES = [f"feature_{i}" for i in range(17)]


def _event(rng: random.Random, i: int) -> dict:
    fields = {"prediction_id": "%032x" % rng.getrandbits(128), "model_version": "clinops-mortality/1",
              "dataset_sha256": "ab" * 32, "raw_score": rng.random(), "probability": rng.random(),
              "conformal_set": [0], "confidence_level": 0.9, "low_confidence": False, "out_of_distribution": False,
              "ood_features": [], "imputed": ["feature_3"], "governance_state": "active", "escalation_reasons": [],
              "requester": "bench-clinician", "role": "clinician", "purpose": "direct_care"}
    payload = {"features": {n: rng.random() * 100 for n in FEATURES},
               "contributions": {**{n: rng.random() - 0.5 for n in FEATURES}, "bias": -2.1}}
    return {"kind": "prediction", "fields": fields, "subject": str(30000001 + i % 4), "payload": payload}


def two_writers(commits: int, batch: int, seed: int) -> float:
    """Process CPU seconds per commit, two writers alternating ``commits`` commits in all."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        a = AuditTrail.open(Path(tmp) / "audit")
        b = AuditTrail.open(Path(tmp) / "audit")
        try:
            for k in range(100):  # warm-up: pseudonyms, data keys, caches
                (a if k % 2 == 0 else b).append_many([_event(rng, k) for _ in range(batch)])
            batches = [[_event(rng, k) for _ in range(batch)] for k in range(commits)]
            started = time.process_time()
            for k, events in enumerate(batches):
                (a if k % 2 == 0 else b).append_many(events)
            return (time.process_time() - started) / commits
        finally:
            a.close()
            b.close()


def seal_checks(n: int = 2000) -> tuple[float, float]:
    """Seconds per seal check: public-key verification, and signing again to compare."""
    signer = Ed25519Signer.generate()
    message = b"clinops-audit-v1 seal\n" + bytes(120)
    signature = signer.sign(message)
    started = time.perf_counter()
    for _ in range(n):
        signer.public_key.verify(signature, message)
    verify = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for _ in range(n):
        signer.made(signature, message)
    return verify, (time.perf_counter() - started) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=1500)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print("| records per commit | CPU ms per commit | CPU ms per record |")
    print("|---:|---:|---:|")
    for batch in args.batch:
        per_commit = two_writers(args.commits, batch, args.seed)
        print(f"| {batch} | {per_commit * 1000:.3f} | {per_commit * 1000 / batch:.3f} |")
    verify, remake = seal_checks()
    print(f"\nchecking another writer's seal: verify {verify * 1e6:.0f} us, sign again and compare {remake * 1e6:.0f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
