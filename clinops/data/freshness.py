"""May a generated data directory be reused? The one check, for the pipeline and the benchmarks.

A synthetic directory is current when its ``SYNTHETIC.json`` records the code hash of this
generator (``generator_code_sha256``, :func:`clinops.data.synthetic.generator_code_sha256`): a
generator edit must reach the data (issue 15). A parquet copy is current when its
``clinops_convert.json`` names exactly the SHA-256s of the source files it is read in place of
(``source_sha256``). Each check returns None when the directory may be reused, else why not, in
words that name the file and the field.

The data step (:func:`clinops.pipeline.context.ensure_data`) regenerates or reconverts on any
reason; ``benchmarks/bench_engines.py`` does the same for its default directories and refuses a
stale directory it was pointed at (read only).

Examples
--------
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> synthetic_staleness(folder).endswith("SYNTHETIC.json: absent (no generated data)")
True
>>> _ = (folder / "SYNTHETIC.json").write_text('{"generator_code_sha256": "' + "0" * 64 + '"}')
>>> "generator_code_sha256 000000000000... is not this generator's code" in synthetic_staleness(folder)
True
>>> parquet_staleness(folder, {"hosp/patients.csv.gz": "ab"}).endswith("clinops_convert.json: absent (no complete copy)")
True
"""
from __future__ import annotations

import json
from pathlib import Path

from clinops.data import synthetic

__all__ = ["converted_from", "generated_by", "parquet_staleness", "synthetic_staleness"]


def generated_by(src: str | Path) -> str | None:
    """The generator code hash a synthetic directory records (None: absent or unrecorded)."""
    try:
        return json.loads((Path(src) / "SYNTHETIC.json").read_text()).get("generator_code_sha256")
    except (FileNotFoundError, ValueError):
        return None


def converted_from(queries: str | Path) -> dict[str, str] | None:
    """The source SHA-256s a parquet copy was made from (None: no complete copy)."""
    try:
        return json.loads((Path(queries) / "clinops_convert.json").read_text()).get("source_sha256")
    except (FileNotFoundError, ValueError):
        return None


def synthetic_staleness(src: str | Path) -> str | None:
    """None when ``src`` holds data written by this generator's code, else why it does not."""
    manifest = Path(src) / "SYNTHETIC.json"
    made_by = generated_by(src)
    if made_by is None:
        return (f"{manifest}: absent (no generated data)" if not manifest.is_file()
                else f"{manifest}: records no generator_code_sha256 (not valid JSON, or written before it was recorded)")
    current = synthetic.generator_code_sha256()
    if made_by != current:
        return (f"{manifest}: generator_code_sha256 {made_by[:12]}... is not this generator's code "
                f"({current[:12]}...): written by another version of clinops/data/synthetic.py or synth/")
    return None


def parquet_staleness(queries: str | Path, source_sha256: dict[str, str]) -> str | None:
    """None when the parquet copy ``queries`` was made from exactly these source files, else why not.

    ``source_sha256``: the source directory's :meth:`clinops.data.mimic.MimicDatabase.file_sha256`.
    """
    record = Path(queries) / "clinops_convert.json"
    recorded = converted_from(queries)
    if recorded is None:
        return (f"{record}: absent (no complete copy)" if not record.is_file()
                else f"{record}: records no source_sha256 (not valid JSON, or not written by clinops convert)")
    if recorded != source_sha256:
        differ = sorted(set(recorded) ^ set(source_sha256)
                        | {k for k in set(recorded) & set(source_sha256) if recorded[k] != source_sha256[k]})
        return (f"{record}: source_sha256 differs from the source files in {len(differ)} file(s)"
                + (f" (e.g. {differ[0]})" if differ else "") + ": a copy of other data")
    return None
