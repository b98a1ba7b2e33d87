"""Parameter files: load, merge ``extends``, validate against the schema, resolve paths.

A parameter file is YAML (see ``params/default.yaml``, which documents every key). A file may
``extends:`` another one and override only what differs (``params/quick.yaml`` does). The merged
result is validated against ``clinops/params_schema.yaml``: an unknown key, a wrong type or a value
out of range stops the run with a message naming the key and the rule, before any work starts.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).with_name("params_schema.yaml")


class ParamsError(ValueError):
    """A parameter file is malformed; the message names the file, the key and the rule."""


def project_root(start: Path | None = None) -> Path:
    """The repository root: the nearest folder upwards holding ``pyproject.toml`` and ``params/``.

    Notebooks run with their own folder as working directory (nbval, papermill), so every path
    in a parameter file is resolved against this root, never against the current directory.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "params").is_dir():
            return folder
    pkg_root = Path(__file__).resolve().parent.parent
    if (pkg_root / "params").is_dir():
        return pkg_root
    raise ParamsError(f"cannot find the project root (a folder with pyproject.toml and params/) above {here}")


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path, chain: tuple[Path, ...] = (), files: list[Path] | None = None) -> dict:
    if files is not None:
        files.append(path)
    if path in chain:
        raise ParamsError(f"{path}: 'extends' forms a cycle: {' -> '.join(map(str, chain + (path,)))}")
    if not path.is_file():
        raise ParamsError(f"parameter file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: the top level must be a mapping of keys to values")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ParamsError(f"{path}: 'extends' must be a file name (string)")
    return deep_merge(_read_yaml((path.parent / parent).resolve(), chain + (path,), files), data)


#: Keys that were removed because they said the same thing as another key (settings are resolved
#: once, clinops.settings): where the value lives now.
MOVED_KEYS = {
    "threshold": "the operating threshold is modeling.threshold (one key for every table and the server)",
    "auroc_gap": "the AUROC gap is pairwise_gap_limits.auroc of the fairness policy file "
                 "(per task under its tasks:), or fairness.policy_overrides.pairwise_gap_limits",
    "min_group_size": "min_group_size is a rule of the fairness policy file, or fairness.policy_overrides.min_group_size",
}


def _format_error(path: Path, err: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        keys = ", ".join(f"{where}.{k}" if where != "(top level)" else k for k in extra)
        moved = [MOVED_KEYS[k] for k in extra if where.endswith("fairness") and k in MOVED_KEYS]
        if moved:
            return f"{path}: {keys}: no longer a parameter: {'; '.join(moved)}"
        return f"{path}: unknown key {keys} (allowed here: {', '.join(allowed)})"
    if err.validator == "required":
        return f"{path}: {where}: {err.message}"
    return f"{path}: {where}: {err.message} (rule: {err.validator} {json.dumps(err.validator_value, default=str)})"


@dataclass(frozen=True)
class Params:
    """A validated parameter file. ``raw`` is the merged mapping; paths are absolute."""

    path: Path
    raw: dict = field(repr=False)
    root: Path
    #: The file and every file it ``extends``, in reading order (the workflow's inputs).
    files: tuple[Path, ...] = ()

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    @property
    def name(self) -> str:
        return self.raw["name"]

    @property
    def seed(self) -> int:
        return int(self.raw["seed"])

    @property
    def source(self) -> str:
        return self.raw["data"]["source"]

    @property
    def engine(self) -> str:
        """What runs the SQL: ``duckdb`` (default), ``spark`` (``data.engine``) or ``postgres`` (the source)."""
        return "postgres" if self.source == "postgres" else self.raw["data"].get("engine", "duckdb")

    @property
    def is_synthetic(self) -> bool:
        return self.source == "synthetic"

    def resolve(self, value: str | Path) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.root / p)

    @property
    def reports_dir(self) -> Path:
        explicit = self.raw.get("reports_dir")
        if explicit:
            return self.resolve(explicit)
        return self.root / "reports" if self.name == "default" else self.root / "reports" / self.name

    @property
    def build_dir(self) -> Path:
        explicit = self.raw.get("build_dir")
        return self.resolve(explicit) if explicit else self.root / "build" / self.name

    @property
    def mimic_dir(self) -> Path:
        """The MIMIC-IV directory the SQL runs on (the generated one for synthetic data)."""
        data = self.raw["data"]
        if self.source == "synthetic":
            synth = data.get("synthetic", {})
            out = synth.get("out_dir") or f"data/synthetic/scale{synth.get('scale', 1.0):g}-seed{synth.get('seed', self.seed)}"
            return self.resolve(out)
        if self.source == "mimic-iv":
            return self.resolve(data["mimic_dir"])
        raise ParamsError(f"{self.path}: data.source is {self.source!r}: there is no MIMIC-IV directory")

    @property
    def data_label(self) -> str:
        """How reports name the data: tables computed on synthetic data say so."""
        return {"synthetic": "synthetic MIMIC-IV (generated, not real patients)",
                "mimic-iv": "MIMIC-IV v2.2",
                "table": "user-provided cohort table",
                "postgres": ("synthetic MIMIC-IV in PostgreSQL (generated, not real patients)"
                             if (self.raw["data"].get("postgres") or {}).get("loaded_from") == "synthetic"
                             else "MIMIC-IV v2.2 in PostgreSQL")}[self.source]

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()


def _semantic_checks(path: Path, raw: dict) -> None:
    data = raw["data"]
    if data["source"] == "mimic-iv" and not data.get("mimic_dir"):
        raise ParamsError(f"{path}: data.mimic_dir: required when data.source is 'mimic-iv' "
                          "(the PhysioNet directory holding hosp/ and icu/)")
    if data.get("engine") == "spark" and (data["source"] not in ("synthetic", "mimic-iv") or not data.get("parquet")):
        raise ParamsError(f"{path}: data.engine: spark runs over the parquet copy of MIMIC-IV files "
                          "(rule: data.source synthetic or mimic-iv with data.parquet: true)")
    if data.get("postgres") is not None and data["source"] != "postgres":
        raise ParamsError(f"{path}: data.postgres: only with data.source postgres")
    if raw.get("spark") is not None and data.get("engine") != "spark":
        raise ParamsError(f"{path}: spark: only with data.engine spark")
    if data["source"] == "table" and not data.get("table"):
        raise ParamsError(f"{path}: data.table: required when data.source is 'table'")
    table = data.get("table")
    if data["source"] == "table" and table:
        if not table.get("split_column") and not table.get("time_column"):
            raise ParamsError(f"{path}: data.table: give either split_column or time_column (+ time_cutoff)")
        if table.get("time_column") and table.get("time_cutoff") is None:
            raise ParamsError(f"{path}: data.table.time_cutoff: required with time_column")
    cohort = raw.get("cohort") or {}
    if cohort.get("split_rule") == "anchor_group" and cohort.get("ambiguous_split", "exclude") != "exclude":
        raise ParamsError(f"{path}: cohort.ambiguous_split: only with cohort.split_rule real_year (the "
                          "anchor_group rule has no ambiguous stays); leave it at exclude")
    for section in ("fairness",):
        edges = raw.get(section, {}).get("age_edges")
        if edges and list(edges) != sorted(edges):
            raise ParamsError(f"{path}: {section}.age_edges: must be increasing, got {edges}")


def load_params(path: str | Path, *, root: Path | None = None) -> Params:
    """Load, merge and validate a parameter file.

    Parameters
    ----------
    path : the YAML file; relative paths are taken from the project root when not found as given.
    root : the project root (found upwards from the current directory when omitted).

    Raises
    ------
    ParamsError : with the file, the key and the violated rule.
    """
    root = root or project_root()
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        p = root / p
    p = p.resolve()
    files: list[Path] = []
    raw = _read_yaml(p, files=files)
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise ParamsError("\n".join(_format_error(p, e) for e in errors))
    _semantic_checks(p, raw)
    return Params(path=p, raw=raw, root=root, files=tuple(files))
