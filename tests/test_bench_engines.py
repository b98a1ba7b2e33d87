"""benchmarks/bench_engines.py reuses data only when the pipeline's own check says it is current.

The check is :mod:`clinops.data.freshness` (what :func:`clinops.pipeline.context.ensure_data`
calls): a stale default directory is made again, a stale directory given on the command line is
refused with a message naming the file and the field. And the report it writes is made from its
recorded measurements (``benchmark.md`` from ``benchmark.json``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

from clinops.data import synthetic

ROOT = Path(__file__).resolve().parents[1]
SCALE, SEED = 0.005, 7


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_engines", ROOT / "benchmarks" / "bench_engines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    module = _load_bench()
    module.ROOT = tmp_path_factory.mktemp("bench-root")   # the default data directories go here
    return module


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"scale": SCALE, "seed": SEED, "data_dir": None, "parquet_dir": None, **kw})


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def made(bench):
    """The default directories, generated and converted on first use."""
    csv_dir, parquet_dir, data = bench.ensure_data(_args())
    assert {"generate_s", "convert_s"} <= set(data)
    return csv_dir, parquet_dir


def test_current_data_are_reused(bench, made):
    csv_dir, parquet_dir = made
    before, before_q = _mtimes(csv_dir), _mtimes(parquet_dir)
    _, _, data = bench.ensure_data(_args())
    assert "generate_s" not in data and "convert_s" not in data
    assert _mtimes(csv_dir) == before and _mtimes(parquet_dir) == before_q


@pytest.fixture
def restored(made):
    """The directories' records as they were before the test (each test may make them stale)."""
    csv_dir, parquet_dir = made
    saved = {p: p.read_bytes() for p in (csv_dir / "SYNTHETIC.json", parquet_dir / "clinops_convert.json")}
    yield made
    for path, data in saved.items():
        path.write_bytes(data)


def _rewrite(path: Path, change) -> None:
    """Apply ``change`` to the JSON record at ``path`` (making the directory stale)."""
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def _stale_manifest(csv_dir: Path) -> None:
    # as written by an older generator
    _rewrite(csv_dir / "SYNTHETIC.json", lambda m: m.update(generator_code_sha256="0" * 64))


def test_a_stale_data_dir_given_is_refused_naming_the_field(bench, restored):
    csv_dir, _ = restored
    _stale_manifest(csv_dir)
    with pytest.raises(SystemExit, match=r"--data-dir .*SYNTHETIC\.json: generator_code_sha256 000000000000"):
        bench.ensure_data(_args(data_dir=str(csv_dir)))


def test_a_stale_default_directory_is_regenerated(bench, restored):
    csv_dir, _ = restored
    _stale_manifest(csv_dir)
    _, _, data = bench.ensure_data(_args())
    assert "generate_s" in data
    assert json.loads((csv_dir / "SYNTHETIC.json").read_text())["generator_code_sha256"] == \
        synthetic.generator_code_sha256()


def test_data_of_another_seed_given_is_refused_naming_the_field(bench, restored):
    csv_dir, _ = restored
    with pytest.raises(SystemExit, match=r"SYNTHETIC\.json: seed 7, not --seed 8"):
        bench.ensure_data(_args(seed=8, data_dir=str(csv_dir)))


def _stale_copy(parquet_dir: Path) -> None:
    # a copy of other files: one source hash differs
    _rewrite(parquet_dir / "clinops_convert.json",
             lambda r: r["source_sha256"].update({sorted(r["source_sha256"])[0]: "f" * 64}))


def test_a_stale_parquet_dir_given_is_refused_and_a_default_one_reconverted(bench, restored):
    csv_dir, parquet_dir = restored
    _stale_copy(parquet_dir)
    with pytest.raises(SystemExit, match=r"--parquet-dir .*clinops_convert\.json: source_sha256 differs"):
        bench.ensure_data(_args(parquet_dir=str(parquet_dir)))
    _, _, data = bench.ensure_data(_args())
    assert "convert_s" in data and "generate_s" not in data
    _, _, data = bench.ensure_data(_args())
    assert "convert_s" not in data


def test_the_markdown_is_made_from_the_recorded_json(bench, tmp_path):
    recorded = json.loads((ROOT / "reports" / "engines" / "benchmark.json").read_text())
    assert bench.markdown(recorded) == (ROOT / "reports" / "engines" / "benchmark.md").read_text()
    for result in recorded.values():
        bench.write(result, tmp_path / "scale-x")
    assert json.loads((tmp_path / "scale-x" / "benchmark.json").read_text()) == recorded
    text = (tmp_path / "scale-x" / "benchmark.md").read_text()
    assert f"Made by `benchmarks/bench_engines.py --out {tmp_path / 'scale-x'}`" in text
    assert text.replace(f"--out {tmp_path / 'scale-x'}", "--write") == bench.markdown(recorded)
