"""The data step never reuses stale data: a generator edit regenerates, new sources reconvert.

The workflow reruns the data rule when the package code changes; these tests show that the rule
then rebuilds exactly what the change made stale (issue 15: a fixed definition must reach the data).
"""
from __future__ import annotations

import json

import pytest

from clinops import pipeline
from clinops.config import load_params
from clinops.data import synthetic

from tests.fixtures.params import tiny_params


@pytest.fixture(scope="module")
def P(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fresh")
    path = tiny_params(folder, name="fresh", data={"source": "synthetic", "parquet": True,
                                                    "synthetic": {"scale": 0.005, "seed": 7,
                                                                  "out_dir": str(folder / "synthetic")}})
    P = load_params(path, root=folder)
    pipeline.ensure_data(P)
    return P


def _mtimes(folder):
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*.*") if p.is_file()}


def test_generated_data_records_the_generator_code(P):
    manifest = json.loads((P.mimic_dir / "SYNTHETIC.json").read_text())
    assert manifest["generator_code_sha256"] == synthetic.generator_code_sha256()
    assert len(manifest["generator_code_sha256"]) == 64


def test_an_unchanged_generator_reuses_the_data_and_its_parquet_copy(P):
    queries = pipeline.context.query_dir(P)
    before, before_q = _mtimes(P.mimic_dir), _mtimes(queries)
    pipeline.ensure_data(P)
    assert _mtimes(P.mimic_dir) == before and _mtimes(queries) == before_q


def test_data_of_another_generator_version_is_regenerated_and_reconverted(P):
    manifest_path = P.mimic_dir / "SYNTHETIC.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["generator_code_sha256"] = "0" * 64      # as written by an older generator
    manifest_path.write_text(json.dumps(manifest))
    stale_copy = pipeline.context.query_dir(P) / "clinops_convert.json"
    pipeline.ensure_data(P)
    assert json.loads(manifest_path.read_text())["generator_code_sha256"] == synthetic.generator_code_sha256()
    # the regenerated files are byte-identical (same scale, seed and code), so the copy still matches
    assert json.loads(stale_copy.read_text())["source_sha256"] == json.loads(
        (P.build_dir / "stamps" / "data.json").read_text())["sha256"]


def test_a_parquet_copy_of_other_sources_is_converted_again(P):
    convert_file = pipeline.context.query_dir(P) / "clinops_convert.json"
    record = json.loads(convert_file.read_text())
    first = sorted(record["source_sha256"])[0]
    record["source_sha256"][first] = "f" * 64          # a copy made from another version of one file
    convert_file.write_text(json.dumps(record))
    pipeline.ensure_data(P)
    hashes = json.loads((P.build_dir / "stamps" / "data.json").read_text())["sha256"]
    assert json.loads(convert_file.read_text())["source_sha256"] == hashes
