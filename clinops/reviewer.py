"""The reviewer's entry page (``reports/index.html``) and a model card per registered model.

Both are static HTML generated from what the run wrote (no number is typed here): the paper
comparison, the reproduction check, the model bundles, the executed notebooks and the report
tables. They open from disk (relative links only, no script, no external resource).

* ``index.html``: every number of the paper the compendium reproduces, with this run's value,
  the notebook and cell that produced it (a link into the executed HTML), whether it holds by
  construction of the synthetic data, and its reproduction status; every table with its status;
  every figure; the commit and the data hashes.
* ``model_cards/<task>.html``: intended use, data and label, cohort flow, metrics with CIs,
  calibration, per-group results, conformal coverage, settings, lineage, known limits, and the
  TRIPOD+AI checklist mapped to where the compendium answers each item.
"""
from __future__ import annotations

import argparse
import html
import io
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from clinops.config import load_params
from clinops.modeling import ModelBundle
from clinops.pipeline import label_note, task_config
from clinops.pipeline.preflight import run_slots
from clinops.report import paper_values
from clinops.reproduction import committed_text, compare_frames

#: Which notebook and which call produced the values each stage records (build/<run>/comparison/).
STAGE_SOURCES = {
    "features": ("02_features", "run_features"),
    "model_primary": ("03_model_selection", "run_model_selection"),
    "fairness_primary": ("04_fairness", "run_fairness"),
    "drift_primary": ("05_drift", "run_drift"),
    "readmission_cohort": ("06_readmission", "run_readmission_data"),
    "model_readmission": ("06_readmission", 'run_model_selection(P, task="readmission")'),
    "fairness_readmission": ("06_readmission", 'run_fairness(P, task="readmission")'),
}

#: TRIPOD+AI (Collins et al., BMJ 2024;385:e078378), items abbreviated; each mapped to where this
#: compendium answers it (a report path relative to the run's reports, or a repository file), or
#: marked not applicable / not answered with the reason.
TRIPOD_AI: list[tuple[str, str, str]] = [
    ("1", "Title: development/evaluation, population, outcome, approach", "model card title"),
    ("2", "Abstract", "not applicable: a compendium, not a manuscript"),
    ("3a", "Healthcare context and rationale", "README.md; the paper"),
    ("3b", "Target population, place in the care pathway, intended users", "model card: intended use"),
    ("3c", "Known health inequalities", "fairness/table2.md, fairness/fairness_gaps.md"),
    ("4", "Objectives (development, evaluation or both)", "model card: intended use"),
    ("5a", "Data sources and representativeness", "model card: data; synthetic/calibration.md"),
    ("5b", "Dates of accrual and follow-up", "features/split_summary.md (anchor-year groups)"),
    ("6a", "Setting, number and location of centres", "model card: data (single centre, MIMIC-IV layout)"),
    ("6b", "Eligibility criteria", "cohort/flow.md, cohort/flow_final.md"),
    ("6c", "Treatments received", "not answered: treatments are not modelled beyond the ventilation and vasopressor flags"),
    ("7", "Data preparation and quality checks", "features/manifest.md (plausible ranges, units)"),
    ("8a", "Outcome definition and time horizon", "cohort/label_ambiguity.md"),
    ("8b", "Outcome assessment (qualifications, subjectivity)", "not applicable: the outcome is a recorded death"),
    ("8c", "Blinding of outcome assessment", "not applicable: recorded outcome"),
    ("9a", "Predictors: choice, definition, timing", "features/manifest.md"),
    ("9b", "Predictor assessment (qualifications)", "not applicable: routinely recorded values"),
    ("9c", "Blinding of predictor assessment", "not applicable: routinely recorded values"),
    ("10", "Sample size", "cohort/flow_final.md (the paper's cohort; no sample-size calculation)"),
    ("11", "Missing data", "features/missingness.md; frozen training medians (model card: settings)"),
    ("12a", "How the data were used (development, evaluation)", "features/split_summary.md (temporal split)"),
    ("12b", "Handling of predictors", "features/manifest.md"),
    ("12c", "Model type, building, tuning, internal validation", "model/cv_candidates.md, model/random_search_top20.md"),
    ("12d", "Heterogeneity across clusters", "not answered: one centre"),
    ("12e", "Performance measures", "model/test_metrics.md, model/calibration.md"),
    ("12f", "Model updating", "drift/detection.md; governance/events.md (no automatic retraining)"),
    ("12g", "How predictions were calculated in evaluation", "model card: settings (calibration, conformal)"),
    ("13", "Class imbalance", "model/chosen_configuration.md (scale_pos_weight per fold)"),
    ("14", "Fairness approaches", "fairness/table2.md, fairness/alerts.md"),
    ("15", "Model output and thresholds", "model card: settings (operating threshold)"),
    ("16", "Differences between development and evaluation data", "features/split_summary.md"),
    ("17", "Ethical approval", "not applicable to synthetic data; MIMIC-IV runs fall under PhysioNet's DUA"),
    ("18a", "Funding", "not answered"),
    ("18b", "Conflicts of interest", "not answered"),
    ("18c", "Protocol", "the paper (clinical-mlops-paper); params/ files"),
    ("18d", "Registration", "not answered: not registered"),
    ("18e", "Data sharing", "synthetic generator in clinops/data/synth (regenerates the data)"),
    ("18f", "Code sharing", "this repository"),
    ("19", "Patient and public involvement", "not answered"),
    ("20a", "Flow of participants", "cohort/flow_final.md"),
    ("20b", "Participant characteristics", "features/split_summary.md"),
    ("20c", "Development vs evaluation characteristics", "features/split_summary.md, features/missingness.md"),
    ("21", "Participants and outcome events per analysis", "model/test_metrics.md, fairness/table2.md (n, events)"),
    ("22", "Full model (access)", "the MLflow registry entry (model card: lineage)"),
    ("23a", "Performance with confidence intervals", "model/test_metrics.md"),
    ("23b", "Heterogeneity of performance across groups", "fairness/table2.md"),
    ("24", "Model updating results", "drift/scenario.md, governance/events.md"),
    ("25", "Interpretation", "paper_comparison.md; model card: known limits"),
    ("26", "Limitations", "model card: known limits"),
    ("27a", "Handling of poor-quality or unavailable input", "serving: manifest range checks; features/missingness.md"),
    ("27b", "User interaction and required expertise", "clinops/docs/serving.md (roles, review queue)"),
    ("27c", "Next steps", "not answered"),
]

#: The folders a run writes under its reports folder (the default run's folder also holds the
#: folders of other runs, which its page does not show).
RUN_FOLDERS = {"cohort", "features", "model", "fairness", "drift", "governance", "readmission", "synthetic"}

_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em;display:block;overflow-x:auto}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#f3f3f3}.warn{background:#fff3cd;padding:0.6em;border:1px solid #e0c36c}
.ok{color:#176b2c}.bad{color:#a40000;font-weight:bold}.muted{color:#666}code{font-size:0.9em}
img{max-width:360px;border:1px solid #ddd;margin:4px}"""


def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _table(frame: pd.DataFrame, *, raw_columns: Iterable[str] = ()) -> str:
    raw = set(raw_columns)
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    rows = []
    for _, r in frame.iterrows():
        cells = "".join(f"<td>{r[c] if c in raw else _e(_fmt(r[c]))}</td>" for c in frame.columns)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if pd.isna(v):
            return ""
        return f"{int(v):,}" if v.is_integer() and abs(v) >= 100 else f"{v:.4g}"
    return "" if v is None else str(v)


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")


def git_commit(root: Path) -> str:
    """``<sha>`` or ``<sha> (with uncommitted changes)``; 'unknown' outside a git checkout."""
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return sha + (" (with uncommitted changes)" if dirty else "")


def cell_anchor(notebook: Path, call: str) -> str | None:
    """The id of the first code cell of ``notebook`` whose source contains ``call``."""
    nb = json.loads(notebook.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and call in "".join(cell["source"]):
            return cell.get("id")
    return None


def _recorded_stages(build_dir: Path) -> dict[str, str]:
    out = {}
    for path in sorted((build_dir / "comparison").glob("*.json")):
        for key in json.loads(path.read_text()):
            out[key] = path.stem
    return out


def _row_status(old: pd.DataFrame | None, new: pd.DataFrame, quantity: str) -> str:
    """Reproduction status of one row of paper_comparison.csv (``old``: the committed copy, as text)."""
    if old is None:
        return "no committed copy"
    a, b = old[old["quantity"] == quantity], new[new["quantity"] == quantity]
    if len(a) != 1 or len(b) != 1 or "this run" not in a.columns:
        return "no committed copy"
    # the number itself; a column added to the table since is not this number's reproduction
    return compare_frames(a[["this run"]].reset_index(drop=True), b[["this run"]].reset_index(drop=True))["status"]


def _status_html(status: str) -> str:
    cls = "ok" if status in ("identical", "within tolerance") else ("bad" if status in ("differs", "missing") else "muted")
    return f"<span class='{cls}'>{_e(status)}</span>"


def build_index(P) -> str:
    """The HTML of ``reports/<run>/index.html``."""
    R, root = P.reports_dir, P.root
    parts = [f"<h1>Clinical MLOps compendium: run <code>{_e(P.name)}</code></h1>"]
    if P.is_synthetic:
        parts.append("<p class='warn'><b>Data: synthetic MIMIC-IV (generated, not real patients).</b> No number here "
                     "is a clinical result. Rows marked <i>by construction</i> agree with the paper because the "
                     "generator is calibrated to them.</p>")
    else:
        parts.append(f"<p class='warn'>Data: <b>{_e(P.data_label)}</b>.</p>")
    stamp = P.build_dir / "stamps" / "data.json"
    hashes = json.loads(stamp.read_text()).get("sha256", {}) if stamp.is_file() else {}
    parts.append(f"<p>Commit: <code>{_e(git_commit(root))}</code> · parameters: <code>{_e(P.path.name)}</code> "
                 f"· data files hashed: {len(hashes)} (listed at the end).</p>")

    repro_path = R / "reproduction.csv"
    repro = pd.read_csv(repro_path, dtype=str, keep_default_na=False) if repro_path.is_file() else pd.DataFrame()
    if len(repro):
        counts = repro["status"].value_counts().to_dict()
        parts.append("<h2>Reproduction check</h2><p>" + ", ".join(f"{v} {_e(k)}" for k, v in counts.items())
                     + " (<a href='reproduction.md'>reproduction.md</a>).</p>")

    comparison = R / "paper_comparison.csv"
    if comparison.is_file():
        pc = pd.read_csv(comparison)
        committed = committed_text(root, comparison)  # read once, compared row by row below
        old = pd.read_csv(io.StringIO(committed), dtype=str, keep_default_na=False) if committed is not None else None
        new = pd.read_csv(comparison, dtype=str, keep_default_na=False)
        stages = _recorded_stages(P.build_dir)
        by_id = {v["quantity"]: v for v in paper_values()}
        rows = []
        for _, r in pc.iterrows():
            item = by_id.get(r["quantity"], {})
            stage = stages.get(item.get("id"))
            link = ""
            if stage in STAGE_SOURCES:
                nb, call = STAGE_SOURCES[stage]
                cell = cell_anchor(root / "notebooks" / f"{nb}.ipynb", call)
                link = (f"<a href='notebooks/{nb}.html#cell-id={_e(cell)}'>{nb}</a>" if cell else _e(nb))
            construction = "by construction" if str(r.get("holds by construction", "")) == "yes" else ""
            rows.append({"quantity": r["quantity"], "paper section": r["paper section"], "paper": r["paper"],
                         "this run": r["this run"], "difference": r["difference"], "produced by": link,
                         "holds": construction, "reproduction": _status_html(_row_status(old, new, r["quantity"]))})
        parts.append("<h2>The paper's numbers</h2>" + _table(pd.DataFrame(rows), raw_columns=("produced by", "reproduction")))
        parts.append("<p>Where the paper's numbers contradict each other: "
                     "<a href='paper_consistency.md'>paper_consistency.md</a>.</p>")

    if len(repro):
        t = repro[["table", "status", "n_differing", "max_abs_diff"]].copy()
        t["status"] = t["status"].map(_status_html)
        t["table"] = t["table"].map(lambda p: f"<a href='{_e(p[:-4])}.md'>{_e(p)}</a>")
        parts.append("<h2>Every table</h2>" + _table(t, raw_columns=("table", "status")))

    cards = sorted((R / "model_cards").glob("*.html"))
    if cards:
        parts.append("<h2>Model cards</h2><ul>" + "".join(
            f"<li><a href='model_cards/{c.name}'>{_e(c.stem)}</a></li>" for c in cards) + "</ul>")
    notebooks = sorted((R / "notebooks").glob("*.html"))
    parts.append("<h2>Executed notebooks</h2><ul>" + "".join(
        f"<li><a href='notebooks/{n.name}'>{_e(n.stem)}</a></li>" for n in notebooks) + "</ul>")
    figures = sorted(p.relative_to(R).as_posix() for p in R.rglob("*.png")
                     if p.relative_to(R).parts[0] in RUN_FOLDERS)
    parts.append("<h2>Figures</h2>" + "".join(
        f"<a href='{_e(f)}'><img src='{_e(f)}' alt='{_e(f)}' title='{_e(f)}'></a>" for f in figures))
    parts.append("<h2>Data hashes (SHA-256 of the files this run read)</h2>"
                 + _table(pd.DataFrame([{"file": k, "sha256": v} for k, v in sorted(hashes.items())])))
    return _page(f"clinops: {P.name}", "\n".join(parts))


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


def build_model_card(P, task: str) -> str:
    """The HTML model card of one task's registered model."""
    t = task_config(P, task)
    bundle = ModelBundle.load(t.bundle_dir)
    settings = bundle.task_settings()
    R = t.reports_dir
    lin = bundle.lineage
    name = settings.mlflow.get("registered_model", "unregistered")
    parts = [f"<h1>Model card: {_e(t.title)} (<code>{_e(name)}</code> version {_e(lin.get('registered_model_version'))})</h1>"]
    if P.is_synthetic:
        parts.append("<p class='warn'><b>Trained and evaluated on synthetic MIMIC-IV (not real patients).</b> "
                     "Not for clinical use.</p>")
    manifest = bundle.manifest
    parts.append("<h2>Intended use</h2><p>" + _e(manifest.get("description", "")) + "</p><p>Predicts "
                 f"{_e(t.title)} from the features below; the output is a calibrated probability with a conformal "
                 f"prediction set at {settings.confidence_level:.0%} and an operating threshold of "
                 f"{settings.operating_threshold}. Decision support under human review (Layer 4): escalation, "
                 "overrides and suspension are governed by the settings below; nothing retrains automatically.</p>")
    parts.append(f"<h2>Data and label</h2><p>Data: <b>{_e(P.data_label)}</b>.</p>")
    if task == "primary" and P.source != "table":
        amb = _read(R / "cohort" / "label_ambiguity.csv")
        if amb is not None:
            parts.append(f"<p>{_e(label_note(P, amb).replace('**', '').replace('`', ''))}</p>")
    for title, rel in (("Cohort flow", "cohort/flow_final.csv" if task == "primary" else "cohort/flow.csv"),
                       ("Split", "features/split_summary.csv" if P.source != "table" else "cohort/split_summary.csv"),
                       ("Metrics on the test split (bootstrap 95 % CIs)", "model/test_metrics.csv"),
                       ("Calibration", "model/calibration.csv"),
                       ("Per-group results", "fairness/table2.csv"),
                       ("Conformal coverage", "model/conformal_coverage.csv")):
        frame = _read(R / rel)
        if frame is not None:
            parts.append(f"<h2>{_e(title)}</h2>" + _table(frame) + f"<p class='muted'>Source: {_e(rel)}</p>")
    feats = pd.DataFrame([{"feature": s.get("name"), "kind": s.get("kind"), "unit": s.get("unit")}
                          for s in manifest.get("features", [])])
    parts.append("<h2>Features</h2>" + _table(feats))
    sd = settings.to_dict()
    parts.append("<h2>Settings (resolved once, stored in the bundle; the server applies these)</h2><pre>"
                 + _e(json.dumps({k: v for k, v in sd.items() if k != "sources"}, indent=1)) + "</pre>"
                 + f"<p class='muted'>From: {_e(', '.join(sd['sources']))}</p>")
    lineage = {k: lin.get(k) for k in ("run_id", "registered_model_name", "registered_model_version", "model_sha256",
                                       "git_commit", "dataset_sha256", "feature_sha256")}
    parts.append("<h2>Lineage</h2><pre>" + _e(json.dumps(lineage, indent=1, default=str)) + "</pre>")
    sbom = P.root / "reports" / "serving" / "sbom.cdx.json"
    if sbom.is_file():  # the serving runtime's software bill of materials (make sbom)
        rel = os.path.relpath(sbom, P.reports_dir / "model_cards")  # where the cards are written
        parts.append(f"<p>Serving runtime: <a href='{_e(rel)}'>CycloneDX SBOM</a> of the packages the serving "
                     "image installs (`make sbom`).</p>")
    limits = ["Temporal split: conformal coverage is guaranteed only under exchangeability, which a temporal "
              "split breaks (coverage above is what was measured).",
              "Single centre (MIMIC-IV layout); no external validation."]
    if P.is_synthetic:
        limits.insert(0, "Synthetic data: metrics describe the generator's latent risk model, not patients.")
    if task == "primary" and P.source != "table":
        limits.append("dx_chapter is the billing principal diagnosis, coded after discharge (kept as in the paper).")
    parts.append("<h2>Known limits</h2><ul>" + "".join(f"<li>{_e(x)}</li>" for x in limits) + "</ul>")
    trip = pd.DataFrame([{"item": i, "topic": topic, "where answered": where} for i, topic, where in TRIPOD_AI])
    parts.append("<h2>TRIPOD+AI checklist</h2><p class='muted'>Items abbreviated from Collins et al., BMJ "
                 "2024;385:e078378; paths are relative to this run's reports folder.</p>" + _table(trip))
    return _page(f"Model card: {name}", "\n".join(parts))


_LINK = re.compile(r"""(?:href|src)='([^'#]+)(?:#[^']*)?'""")


def broken_links(page: Path) -> list[str]:
    """Local links (href/src) of a generated page that point to no file, relative to the page."""
    text = page.read_text()
    return sorted({target for target in _LINK.findall(text)
                   if "://" not in target and not (page.parent / target).exists()})


def write_all(P) -> list[Path]:
    """Write the model cards (one per task with a bundle) and then ``index.html``."""
    out = []
    tasks = run_slots(P)
    for task in tasks:
        if (task_config(P, task).bundle_dir / "bundle.json").is_file():
            path = P.reports_dir / "model_cards" / f"{task}.html"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(build_model_card(P, task))
            out.append(path)
    index = P.reports_dir / "index.html"
    index.write_text(build_index(P))
    out.append(index)
    broken = [f"{page.name}: {link}" for page in out for link in broken_links(page)]
    if broken:
        raise FileNotFoundError(f"index.html / model cards: links to missing files: {broken}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="clinops review", description="Write index.html and the model cards.")
    ap.add_argument("params")
    args = ap.parse_args(argv)
    for path in write_all(load_params(args.params)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
