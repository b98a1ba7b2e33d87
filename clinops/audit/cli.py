"""``clinops audit ...``: verify, prove, check-proof, check-receipt, show, erase, retention, rotate-key,
checkpoint, recover, witness.

Every subcommand takes ``--root DIR`` (default ``$CLINOPS_AUDIT_ROOT`` or ``./audit``). Exit
codes: 0 success, 1 the check failed or the operation was refused (message on stderr), 2 usage.

Keys that decide what is trusted come from outside the log: ``--public-key`` (or
``$CLINOPS_AUDIT_PUBLIC_KEY``) is required by ``verify`` and refused when it lies inside the log
directory; ``--witness-key`` / ``--witness-url`` (or ``$CLINOPS_AUDIT_WITNESS_KEY`` /
``$CLINOPS_AUDIT_WITNESS_URL``) make ``verify`` and ``check-proof`` require the witness's
cosignature, and make writers publish every checkpoint to the witness.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

from clinops.audit.log import AuditIntegrityError, AuditTrail
from clinops.audit.proofs import ProofError, verify_bundle, verify_receipt
from clinops.audit.records import Checkpoint, RecordFormatError
from clinops.audit.verify import verify_log
from clinops.audit.connections import object_lock_archive, openbao_keys, witness_client
from clinops.audit.devservers import stack_main
from clinops.audit.witness import DEFAULT_NAME, WitnessClient, WitnessKey
from clinops.audit.witness import main as witness_main


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", type=Path, default=Path(os.environ.get("CLINOPS_AUDIT_ROOT", "audit")),
                        help="audit trail directory (default: $CLINOPS_AUDIT_ROOT or ./audit)")
    parser = argparse.ArgumentParser(prog="clinops audit", description="The tamper-evident, erasable audit trail (clinops/docs/audit.md).")
    sub = parser.add_subparsers(dest="command", required=True)

    witness = argparse.ArgumentParser(add_help=False)
    witness.add_argument("--witness-key", type=Path, default=_env_path("CLINOPS_AUDIT_WITNESS_KEY"),
                         help="the witness's public key (PEM), pinned: checkpoints must carry its cosignature")
    witness.add_argument("--witness-name", default=os.environ.get("CLINOPS_AUDIT_WITNESS_NAME", DEFAULT_NAME),
                         help="the witness's key name (default: %(default)s)")
    witness.add_argument("--witness-url", default=os.environ.get("CLINOPS_AUDIT_WITNESS_URL"),
                         help="the witness's URL: its latest checkpoint is fetched (verify) or published to (writers)")
    witness.add_argument("--s3-endpoint", default=os.environ.get("CLINOPS_AUDIT_S3_ENDPOINT"),
                         help="S3 endpoint of the Object Lock archive (credentials from AWS_ACCESS_KEY_ID / "
                              "AWS_SECRET_ACCESS_KEY)")
    witness.add_argument("--s3-bucket", default=os.environ.get("CLINOPS_AUDIT_S3_BUCKET"),
                         help="bucket with Object Lock enabled")
    witness.add_argument("--retention-days", type=float, default=float(os.environ.get("CLINOPS_AUDIT_RETENTION_DAYS",
                                                                                     3650)),
                         help="COMPLIANCE lock period of uploaded segments and checkpoints (default %(default)s)")

    p = sub.add_parser("verify", parents=[common, witness], help="verify records, links, seals, tree and checkpoints")
    p.add_argument("--start", type=int, default=None, help="first record to verify (default 0)")
    p.add_argument("--end", type=int, default=None, help="verify records before this one (default: all)")
    p.add_argument("--public-key", type=Path, default=_env_path("CLINOPS_AUDIT_PUBLIC_KEY"),
                   help="pinned public key (PEM) obtained out of band, not from the log directory (required; "
                        "default $CLINOPS_AUDIT_PUBLIC_KEY)")
    p.add_argument("--trusted", type=Path, default=None,
                   help="a checkpoint kept outside the log (e.g. the witness's); detects rollback and forks")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser("prove", parents=[common, witness], help="inclusion proof of record N against the latest checkpoint")
    p.add_argument("seq", type=int, nargs="?", help="record number")
    p.add_argument("--consistency", type=Path, default=None, metavar="OLD_CHECKPOINT",
                   help="instead: prove the log extends this earlier checkpoint (JSON file)")
    p.add_argument("--out", type=Path, default=None, help="write the bundle here instead of stdout")

    p = sub.add_parser("check-proof", parents=[witness], help="check a proof bundle offline with the public key")
    p.add_argument("bundle", type=Path)
    p.add_argument("--public-key", type=Path, required=True, help="the log's public key (PEM)")

    p = sub.add_parser("check-receipt", help="check a signed append receipt (JSON) offline with the public key")
    p.add_argument("receipt", type=Path)
    p.add_argument("--public-key", type=Path, required=True, help="the log's public key (PEM)")

    sub.add_parser("witness", add_help=False, help="run a checkpoint witness (see `clinops audit witness --help`)")
    sub.add_parser("stack", add_help=False,
                   help="run a witness, SeaweedFS and OpenBao on loopback for the demo (see `clinops audit stack --help`)")

    p = sub.add_parser("show", parents=[common], help="reconstruct a prediction event")
    p.add_argument("prediction_id")
    p.add_argument("--no-decrypt", action="store_true", help="do not decrypt the feature payload")

    p = sub.add_parser("erase", parents=[common], help="erase a data subject (crypto-shredding)")
    p.add_argument("subject", help="the encounter id to erase")
    p.add_argument("--requester", required=True, help="who requested the erasure (logged)")
    p.add_argument("--retire-kek", action="store_true",
                   help="also rotate the key-encryption key and destroy the old one, so that a copy of the key "
                        "database taken before the erasure opens nothing")

    p = sub.add_parser("retention", parents=[common], help="shred payloads older than the retention period")
    p.add_argument("--days", type=float, required=True, help="retention period in days")
    p.add_argument("--requester", default="retention-policy")

    p = sub.add_parser("rotate-key", parents=[common], help="rotate the key-encryption key (re-wraps data keys)")
    p.add_argument("--requester", default="key-rotation")
    p.add_argument("--keep-retired", action="store_true",
                   help="keep the old KEK as retired instead of destroying it after re-wrapping")

    p = sub.add_parser("rotate-signing-key", parents=[common, witness],
                       help="hand the log over to a new Ed25519 signing key (a transition signed by the old one)")
    p.add_argument("--requester", default="key-rotation")

    p = sub.add_parser("checkpoint", parents=[common, witness], help="sign a checkpoint of the log as it is now")
    p.add_argument("--out", type=Path, default=None, help="also copy it here (e.g. a witness location)")

    sub.add_parser("recover", parents=[common, witness], help="open for writing: cut and log a torn tail")
    return parser


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _witness(args: argparse.Namespace) -> tuple[WitnessKey | None, WitnessClient | None]:
    """The pinned witness key and, with a URL, a client for it (verify can check cosignatures without one)."""
    key_path, url = getattr(args, "witness_key", None), getattr(args, "witness_url", None)
    if key_path is not None and not url:
        return WitnessKey.load(key_path, args.witness_name), None
    client = witness_client(url, key_path, getattr(args, "witness_name", DEFAULT_NAME))
    return (None, None) if client is None else (client.key, client)


def _archive(args: argparse.Namespace):
    """The Object Lock archive named by ``--s3-endpoint``/``--s3-bucket``, or None."""
    return object_lock_archive(getattr(args, "s3_endpoint", None), getattr(args, "s3_bucket", None),
                               retention_days=getattr(args, "retention_days", 3650),
                               access_key=os.environ.get("AWS_ACCESS_KEY_ID", ""),
                               secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", ""))


def _keys() -> dict:
    """The OpenBao keyring and signer when ``$CLINOPS_AUDIT_OPENBAO_URL`` is set (else the local key files)."""
    return openbao_keys(os.environ.get("CLINOPS_AUDIT_OPENBAO_URL"), os.environ.get("CLINOPS_AUDIT_OPENBAO_TOKEN"))


def _outside(root: Path, key: Path, what: str) -> Path:
    """``key`` unless it lies inside the log directory ``root`` (then anyone who can write the log can swap it)."""
    if key.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"{what}: {key} is inside the log directory {root}; pin a key obtained from outside the "
                         "log (a copy there can be replaced by whoever can write the log)")
    return key


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        print(text)
    else:
        out.write_text(text + "\n")
        print(f"wrote {out}")


def _run(args: argparse.Namespace) -> int:
    cmd = args.command
    witness_key, witness = _witness(args)
    if cmd == "verify":
        if args.public_key is None:
            print("clinops audit verify: --public-key is required: the log's signing key obtained out of band "
                  "(or $CLINOPS_AUDIT_PUBLIC_KEY)", file=sys.stderr)
            return 2
        public_key = _outside(args.root, args.public_key, "--public-key")
        trusted = Checkpoint.from_bytes(args.trusted.read_bytes()) if args.trusted else None
        if witness is not None and trusted is None:
            log_id = AuditTrail.log_id_of(args.root)
            trusted = witness.latest(log_id)
        report = verify_log(args.root, public_key=public_key, start=args.start, end=args.end, trusted=trusted,
                            witness=witness_key, archive=_archive(args))
        if args.json:
            print(json.dumps(report.__dict__, indent=2))
        else:
            print(report.summary())
            if report.ok and witness_key is None:
                print("note: without --witness-key/--witness-url, records cut off the end after the newest "
                      "checkpoint you hold cannot be detected", file=sys.stderr)
        return 0 if report.ok else 1
    if cmd == "check-proof":
        print(verify_bundle(args.bundle, args.public_key, witness=witness_key))
        return 0
    if cmd == "check-receipt":
        try:
            receipt = json.loads(args.receipt.read_text())
        except ValueError as exc:
            raise ProofError(f"receipt: not valid JSON ({exc})") from None
        print(verify_receipt(receipt, args.public_key))
        return 0
    if cmd == "show":
        with AuditTrail.open(args.root, read_only=True, **_keys()) as trail:
            print(json.dumps(trail.show(args.prediction_id, decrypt=not args.no_decrypt), indent=2))
        return 0
    if cmd == "prove":
        if args.consistency is None and args.seq is None:
            raise ValueError("prove: give a record number N, or --consistency OLD_CHECKPOINT")
        old = Checkpoint.from_bytes(args.consistency.read_bytes()) if args.consistency is not None else None
        # Read-only when a stored checkpoint suffices (an auditor needs no keys); a writer otherwise.
        for read_only in (True, False):
            with AuditTrail.open(args.root, create=False, read_only=read_only, witness=witness, **_keys()) as trail:
                latest = trail.latest_checkpoint()
                if read_only and (latest is None or (old is None and latest.size <= args.seq)):
                    continue
                bundle = trail.prove(args.seq) if old is None else trail.consistency_proof(old, latest)
                break
        _emit(json.dumps(bundle, indent=1), args.out)
        return 0
    with AuditTrail.open(args.root, create=False, witness=witness, archive=_archive(args), **_keys()) as trail:
        if cmd == "erase":
            receipt = trail.erase(args.subject, requester=args.requester, retire_kek=args.retire_kek)
            n_keys = trail.record(receipt.seq).fields["data_keys_destroyed"]
            retired = "; key-encryption key rotated and the old one destroyed" if args.retire_kek else ""
            print(f"erased: pseudonym mapping and {n_keys} data keys destroyed{retired}; logged as record {receipt.seq}")
        elif cmd == "retention":
            report = trail.retention(timedelta(days=args.days), requester=args.requester)
            print(f"retention: {report.data_keys_destroyed} data keys older than {report.cutoff} destroyed; "
                  f"logged as record {report.receipt.seq}")
        elif cmd == "rotate-key":
            receipt = trail.rotate_key(requester=args.requester, destroy_retired=not args.keep_retired)
            print(f"rotated key-encryption key; logged as record {receipt.seq}")
        elif cmd == "rotate-signing-key":
            old = trail.key_id
            receipt = trail.rotate_signing_key(requester=args.requester)
            print(f"signing key {old} handed over to {trail.key_id} (private/signing.key replaced); logged as record "
                  f"{receipt.seq}; verifiers keep pinning the genesis key in signing.pub")
        elif cmd == "checkpoint":
            cp = trail.checkpoint()
            if args.out is not None:
                args.out.write_bytes(cp.to_bytes())
            print(f"checkpoint: size {cp.size} root {cp.root} signed {cp.ts} by {cp.kid}")
        elif cmd == "recover":
            for r in trail.recoveries:
                print(f"recovered: cut {r.n_bytes} bytes ({r.n_records_dropped} unacknowledged records) from "
                      f"segment {r.segment} at byte {r.offset}; saved to {r.quarantine}")
            if not trail.recoveries:
                print("nothing to recover")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``clinops audit``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["witness"]:
        return witness_main(argv[1:])
    if argv[:1] == ["stack"]:
        return stack_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (ProofError, LookupError, ValueError, OSError, AuditIntegrityError, RecordFormatError) as exc:
        print(f"clinops audit {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
