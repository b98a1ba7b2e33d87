"""What each workflow step reads, as files Snakemake can compare: input fingerprints.

Snakemake decides what to rerun from files. Three kinds of input are not one file each: the
parameter file (one key matters to one step, and it ``extends`` others), the package code, and
the data source (a directory of MIMIC-IV files, or a hospital's table). For each, the Snakefile
calls :func:`write_fingerprints` while it is parsed; that writes one small JSON file per step
under ``build/<run>/inputs/``, and **rewrites a file only when its content changed**. Each rule
lists its fingerprint files as inputs beside its real files (notebook, SQL, manifest), so:

* an unchanged rerun schedules nothing (no fingerprint's modification time moves);
* editing one parameter reruns exactly the steps whose fingerprint holds it, and the steps
  downstream of them;
* a fresh clone has no ``build/``: every step runs, whatever ``reports/`` already holds.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> write_if_changed(d / "x.json", {"a": 1})
True
>>> write_if_changed(d / "x.json", {"a": 1})
False
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from clinops.config import Params
from clinops.data.hashing import default_hash_cache, sha256_file
from clinops.modeling.sensitivity.settings import sensitivity_settings
from clinops.settings import TASK_SECTIONS, resolve_task_settings, task_sections
from clinops.tasks import REGISTRY

PACKAGE_DIR = Path(__file__).resolve().parent


def write_if_changed(path: str | Path, content: Mapping[str, Any]) -> bool:
    """Write ``content`` as JSON to ``path`` unless the file already holds exactly that.

    Returns True when the file was (re)written. The write is atomic (temp file + rename), so a
    killed run never leaves half a fingerprint.
    """
    path = Path(path)
    text = json.dumps(content, indent=1, sort_keys=True, default=str) + "\n"
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return True


#: Sub-packages no workflow step imports (the audit trail serves the server; ops generates the
#: monitoring files): editing them reruns nothing.
NOT_IN_WORKFLOW = ("audit", "ops")


def code_sha256(package_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 over the package's Python files (path and bytes, sorted), not its docs or data.

    SQL files, manifests and policy files are inputs of their own steps and are not in it; nor
    are the sub-packages of :data:`NOT_IN_WORKFLOW`.
    """
    h = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts or path.relative_to(package_dir).parts[0] in NOT_IN_WORKFLOW:
            continue
        h.update(str(path.relative_to(package_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(b"params_schema.yaml\0" + (package_dir / "params_schema.yaml").read_bytes())
    return h.hexdigest()


def sql_files(kind: str) -> list[Path]:
    """The SQL files a step reads: ``cohort``, ``features`` (mortality) or ``readmission``."""
    stages = {stage: files for task in REGISTRY.values() for stage, files in task.sql_by_stage.items()}
    if kind not in stages:
        raise ValueError(f"kind: must be one of {', '.join(stages)}, got {kind!r}")
    return [PACKAGE_DIR / "sql" / n for n in stages[kind]]


def manifest_file(task: str) -> Path:
    """The feature manifest of a MIMIC-IV task (``mortality`` or ``readmission``)."""
    return PACKAGE_DIR / "manifests" / f"{task}.yaml"


def data_fingerprint(P: Params) -> dict[str, Any]:
    """The data source by content: what the data step reads or generates.

    * synthetic: the generator settings (the generator's code is in the code fingerprint);
    * mimic-iv: the SHA-256 of every file of the directory (cached on disk by path, size and
      modification time, so only new or changed files are read again);
    * table: the SHA-256 of the cohort table file.
    """
    data = P["data"]
    out: dict[str, Any] = {"source": P.source, "parquet": bool(data.get("parquet", False))}
    if P.engine == "spark":  # absent for DuckDB: its fingerprint is unchanged by the engines
        out.update(engine="spark", master=(P.get("spark") or {}).get("master", "local[*]"))
    if P.source == "synthetic":
        syn = data.get("synthetic", {}) or {}
        out.update(scale=float(syn.get("scale", 1.0)), seed=int(syn.get("seed", P.seed)), dir=str(P.mimic_dir))
    elif P.source == "postgres":
        out["dsn_env"] = (data.get("postgres") or {}).get("dsn_env", "CLINOPS_PG_DSN")
    elif P.source == "mimic-iv":
        root = P.mimic_dir
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".gz", ".csv", ".parquet"))
        out["dir"] = str(root)
        out["sha256"] = {str(p.relative_to(root)): sha256_file(p, cache=default_hash_cache()) for p in files}
    else:
        table = P.resolve(data["table"]["path"])
        out["table"] = str(table)
        out["sha256"] = hashlib.sha256(table.read_bytes()).hexdigest() if table.is_file() else "missing"
    return out


def stage_fingerprints(P: Params) -> dict[str, dict[str, Any]]:
    """The content of every step's fingerprint: exactly the settings that step reads.

    Keys: ``code``, ``data``, ``cohort``, ``features``, ``table``, ``model-<task>``,
    ``fairness-<task>``, ``drift-<task>``, ``sensitivity-<task>``, ``readmission-data``, ``report``.
    """
    c = P.get("cohort", {}) or {}
    out: dict[str, dict[str, Any]] = {
        "code": {"sha256": code_sha256()},
        "data": data_fingerprint(P),
        "cohort": {"cohort": c, "label": P.get("label")},
        "features": {**{k: c.get(k) for k in ("window_hours", "max_missing_fraction")},
                     "features": P.get("features")},
        "report": {"name": P.name, "source": P.source, "data_label": P.data_label,
                   "reports_dir": str(P.reports_dir)},
    }
    if P.source == "table":
        out["table"] = {"table": P["data"]["table"], "cv_folds": (P.get("modeling") or {}).get("cv_folds")}
    readm = P.get("readmission", {}) or {}
    tasks = ["primary"] + (["readmission"] if P.source != "table" and readm.get("enabled", True) else [])
    for task in tasks:
        rs = resolve_task_settings(P, task)
        sections = task_sections(P, task)
        d, f, m = sections["drift"], sections["fairness"], sections["modeling"]
        out[f"model-{task}"] = {"seed": P.seed, "settings": {k: v for k, v in rs.to_dict().items() if k != "sources"},
                                "modeling": m, "ece": {"bins": rs.ece_bins, "strategy": rs.ece_strategy}}
        out[f"fairness-{task}"] = {"seed": P.seed, "n_boot": f.get("n_boot"), "age_edges": list(rs.age_edges)}
        out[f"drift-{task}"] = {"seed": P.seed, "scenario": {k: v for k, v in d.items() if k != "policy"}}
        out[f"sensitivity-{task}"] = {"seed": P.seed, "sensitivity": sensitivity_settings(P),
                                      "window_hours": c.get("window_hours")}
    if "readmission" in tasks:
        out["readmission-data"] = {"readmission": {k: v for k, v in readm.items() if k not in TASK_SECTIONS},
                                   **{k: c.get(k) for k in ("train_groups", "test_groups", "split_rule",
                                                            "ambiguous_split")}}
    return out


def write_fingerprints(P: Params) -> dict[str, str]:
    """Write every step's fingerprint under ``build/<run>/inputs/`` (only those that changed).

    Returns
    -------
    dict
        Fingerprint name -> path of its file (what the Snakefile lists as inputs).
    """
    folder = P.build_dir / "inputs"
    paths = {}
    for name, content in stage_fingerprints(P).items():
        path = folder / f"{name}.json"
        write_if_changed(path, content)
        paths[name] = str(path)
    return paths


__all__ = ["write_if_changed", "code_sha256", "sql_files", "manifest_file", "data_fingerprint",
           "stage_fingerprints", "write_fingerprints"]
