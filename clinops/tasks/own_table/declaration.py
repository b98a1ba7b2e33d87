"""The own cohort's feature manifest, from ``data.table.features`` of the parameter file.

The declared features are checked by the one set of manifest rules,
:class:`clinops.features.FeatureManifest` (names, kinds, ranges, categories); only the rules
of the task table itself (reserved column names, one declaration per column) are added here.
Every problem is reported at once as a :class:`~clinops.tasks.own_table.rules.CohortTableError`.

Examples
--------
>>> d = manifest_from_features([{"name": "lactate", "kind": "numeric", "plausible_range": [0, 30]},
...                             {"name": "unit", "kind": "categorical", "categories": ["micu", 2.0]}],
...                            name="mine", description="example")
>>> [f["name"] for f in d["features"]], d["features"][1]["categories"], d["features"][0]["unit"]
(['lactate', 'unit'], ['micu', '2'], 'as recorded')
>>> manifest_from_features([{"name": "label", "kind": "binary"}], name="m", description="d")
Traceback (most recent call last):
...
clinops.tasks.own_table.rules.CohortTableError: label: the names ['id', 'label', 'split', 'sensitive_sex', 'sensitive_age'] and 'group_*' are reserved for the task table: rename the column
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from clinops.features import FeatureManifest, ManifestError
from clinops.tasks.own_table.rules import RESERVED, category_text, raise_all, table_section

if TYPE_CHECKING:  # pragma: no cover
    from clinops.config import Params

#: The manifest's unit where the parameter file gives none, by feature kind.
DEFAULT_UNITS = {"numeric": "as recorded", "binary": "1 = yes, 0 = no", "categorical": "category"}


def _spec(f: Mapping) -> dict[str, Any]:
    """A declared feature as a manifest entry, defaults filled in (values checked by the manifest)."""
    fname, kind = f.get("name"), f.get("kind")
    spec: dict[str, Any] = {"name": fname, "kind": kind, "unit": str(f.get("unit") or DEFAULT_UNITS.get(kind, "")),
                            "aggregate": "as provided in the cohort table",
                            "source": {"method": "cohort_table", "column": fname},
                            "plausible_range": None,
                            "justification": (f.get("justification") or "").strip() or "not given in the parameter file"}
    rng = f.get("plausible_range")
    if rng is not None:
        try:
            spec["plausible_range"] = [float(x) for x in rng]
        except (TypeError, ValueError):
            spec["plausible_range"] = rng  # the manifest names what is wrong with it
    cats = f.get("categories")
    if cats:
        spec["categories"] = [category_text(c) for c in cats]
    elif kind == "categorical" or cats is not None:
        spec["categories"] = cats
    return spec


def manifest_from_features(features: Sequence[Mapping], *, name: str, description: str) -> dict:
    """The FeatureManifest dict of a declared feature list, with the defaults filled in.

    Raises
    ------
    CohortTableError
        Every problem at once: a reserved or repeated name, or a feature that breaks a rule of
        :class:`clinops.features.FeatureManifest` (the message names the feature and the key).
    """
    problems: list[tuple[str, str]] = []
    out = []
    seen: set[str] = set()
    for i, f in enumerate(features):
        fname = f.get("name")
        where = fname if isinstance(fname, str) and fname else f"data.table.features[{i}]"
        if fname in RESERVED or (isinstance(fname, str) and fname.startswith("group_")):
            problems.append((fname, f"the names {list(RESERVED)} and 'group_*' are reserved for the task "
                                    "table: rename the column"))
        if fname in seen:
            problems.append((fname, "declared twice in data.table.features"))
        seen.add(fname)
        spec = _spec(f)
        try:  # the one set of manifest rules
            FeatureManifest.from_dict({"name": name, "features": [spec]})
        except ManifestError as exc:
            problems.append((where, f"data.table.features[{i}]: {exc}"))
            continue
        out.append(spec)
    raise_all(problems)
    return {"name": name, "version": 1, "description": description, "features": out}


def manifest_dict(P: "Params") -> dict:
    """The feature manifest of a cohort table run, from ``data.table.features``.

    Defaults where the parameter file gives none: unit 'as recorded' (numeric), '1 = yes,
    0 = no' (binary), 'category' (categorical); aggregate 'as provided in the cohort table';
    justification 'not given in the parameter file'; no plausible range.

    Parameters
    ----------
    P : Params with ``data.source: table``.

    Returns
    -------
    dict
        ``{'name', 'version', 'description', 'features': [...]}`` as
        :meth:`clinops.features.FeatureManifest.from_dict` takes it; ``name`` is the run name.

    Raises
    ------
    CohortTableError
        A feature name that is not lower snake case or is reserved, a categorical feature
        without categories, a range on a non-numeric feature.
    """
    t = table_section(P)
    return manifest_from_features(
        t["features"], name=P.name,
        description=f"Features of the user-provided cohort table {Path(t['path']).name} "
                    f"(outcome column {t['outcome_column']!r}), declared in {P.path.name}.")
