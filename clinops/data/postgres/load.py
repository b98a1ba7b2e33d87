"""Loading a MIMIC-IV directory into PostgreSQL (mimic-code layout): v2.2 DDL, keys, indexes, streaming COPY, idempotent by content; `clinops load-postgres`."""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

try:  # the byte progress bar of load-postgres when tqdm is installed (it is, with the workflow extra)
    from tqdm import tqdm
except ImportError:  # pragma: no cover - plain progress lines instead
    tqdm = None

from clinops.data.hashing import sha256_file
from clinops.data.mimic import MODULES, MimicSchemaError, _csv_header, _table_files
from clinops.data.mimic_schema import MIMIC_IV_SCHEMA

from .connection import DSN_ENV, PostgresError, connect


#: DuckDB type of :data:`MIMIC_IV_SCHEMA` -> PostgreSQL type (mimic-code's DDL uses the same).
_PG_TYPES = {"INTEGER": "INTEGER", "SMALLINT": "SMALLINT", "BIGINT": "BIGINT", "DOUBLE": "DOUBLE PRECISION",
             "VARCHAR": "TEXT", "TIMESTAMP": "TIMESTAMP(0)", "DATE": "DATE", "BOOLEAN": "BOOLEAN"}

#: Primary keys of mimic-code's constraint.sql that hold on every v2.2 release file.
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "mimiciv_hosp.patients": ("subject_id",),
    "mimiciv_hosp.admissions": ("hadm_id",),
    "mimiciv_hosp.d_labitems": ("itemid",),
    "mimiciv_hosp.d_icd_diagnoses": ("icd_code", "icd_version"),
    "mimiciv_hosp.d_icd_procedures": ("icd_code", "icd_version"),
    "mimiciv_hosp.labevents": ("labevent_id",),
    "mimiciv_hosp.transfers": ("transfer_id",),
    "mimiciv_icu.icustays": ("stay_id",),
    "mimiciv_icu.d_items": ("itemid",),
}

# mimic-code's index.sql indexes the id columns together, itemid, and the event times.
_INDEX_GROUPS = (("subject_id", "hadm_id", "stay_id"), ("itemid",), ("charttime",),
                 ("starttime", "endtime"), ("intime", "outtime"), ("chartdate",))

_COMMENT_PREFIX = "clinops load-postgres sha256="

#: Where ``load-postgres`` records what the database was loaded from (outside the MIMIC-IV
#: schemas, so the schema check and mimic-code's layout are untouched).
PROVENANCE_TABLE = "clinops.provenance"
_PROVENANCE_DDL = (f"CREATE TABLE IF NOT EXISTS {PROVENANCE_TABLE} (source_dir TEXT NOT NULL, "
                   "loaded_at TIMESTAMPTZ NOT NULL DEFAULT now(), sha256 JSONB NOT NULL, synthetic JSONB)")
_COPY_BLOCK = 1 << 20  # 1 MiB: streaming, constant memory



def postgres_type(duckdb_type: str) -> str:
    """PostgreSQL column type for a type of :data:`MIMIC_IV_SCHEMA`.

    Examples
    --------
    >>> postgres_type("DOUBLE"), postgres_type("VARCHAR")
    ('DOUBLE PRECISION', 'TEXT')
    """
    return _PG_TYPES[duckdb_type.upper()]


def _ident(name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


def _table_comment(conn: Any, name: str) -> str | None:
    row = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (name,)).fetchone()
    return row[0] if row else None


def _ddl(name: str, header: list[str]) -> list[str]:
    types = MIMIC_IV_SCHEMA.get(name, {})
    cols = ", ".join(f"{_ident(c)} {postgres_type(types.get(c, 'VARCHAR'))}" for c in header)
    out = [f"CREATE TABLE {_ident(name)} ({cols})"]
    return out


def _key_and_indexes(name: str, header: list[str]) -> list[str]:
    table = name.split(".", 1)[1]
    out = []
    pk = PRIMARY_KEYS.get(name)
    if pk and all(c in header for c in pk):
        out.append(f"ALTER TABLE {_ident(name)} ADD CONSTRAINT {_ident(table + '_pk')} "
                   f"PRIMARY KEY ({', '.join(_ident(c) for c in pk)})")
    k = 0
    for group in _INDEX_GROUPS:
        cols = [c for c in group if c in header]
        if not cols or (pk and tuple(cols) == pk):
            continue
        k += 1
        out.append(f"CREATE INDEX {_ident(f'{table}_idx{k:02d}')} ON {_ident(name)} "
                   f"({', '.join(_ident(c) for c in cols)})")
    return out


def _bar(total: int, desc: str) -> Any:
    if tqdm is None:  # pragma: no cover - tqdm comes with the workflow extra
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, file=sys.stderr, leave=False)


def load_directory(src: str | os.PathLike, dsn: str | None = None, *,
                   progress: Callable[[str, int, int, str], None] | None = None,
                   show_bar: bool = False) -> dict[str, str]:
    """Load a MIMIC-IV csv(.gz) directory into PostgreSQL (mimic-code layout), idempotently.

    Parameters
    ----------
    src : path-like
        PhysioNet layout (``hosp/*.csv.gz``, ``icu/*.csv.gz``), e.g. ``clinops synth`` output.
    dsn : str, optional
        libpq connection string; default ``$CLINOPS_PG_DSN``.
    progress : callable(table, index, total, action), optional
        Called per table with ``action`` ``'loaded'`` or ``'unchanged'``.
    show_bar : bool
        Draw a tqdm byte progress bar per table on stderr.

    Returns
    -------
    dict[str, str]
        Qualified table -> ``'loaded'`` (created or cleanly replaced) or ``'unchanged'`` (the
        table's recorded SHA-256 equals the file's: a no-op).

    Notes
    -----
    The load ends by recording its provenance in :data:`PROVENANCE_TABLE` (one row: the
    directory, the SHA-256 of every table's file and, when the directory is ``clinops synth``
    output, its ``SYNTHETIC.json``: generator, version, scale, seed, row counts). The row is
    removed when a load starts, so an interrupted load leaves a database of unknown provenance,
    never one that claims to hold the generator's data.

    Raises
    ------
    PostgresError
        Unreachable server, or a table that cannot take its keys (names the table and the rule).
    clinops.data.mimic.MimicSchemaError
        No csv tables in ``src`` (parquet copies are not loaded: load the csv.gz originals), or
        a ``SYNTHETIC.json`` that is not valid JSON (refused before connecting).
    """
    root = Path(src).expanduser().resolve()
    if not root.is_dir():
        raise MimicSchemaError(f"MIMIC-IV directory {root} does not exist or is not a directory")
    fmt, files = _table_files(root)
    if fmt != "csv":
        raise MimicSchemaError(f"{root}: load-postgres reads csv(.gz) files (rule: point at the PhysioNet "
                               "download or `clinops synth` output, not a parquet copy)")
    synthetic = _synthetic_manifest(root)  # a broken manifest stops here, before any table is loaded
    conn = connect(dsn)
    actions: dict[str, str] = {}
    try:
        for schema in MODULES.values():
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
        _forget_provenance(conn)
        digests: dict[str, str] = {}
        for i, (name, path) in enumerate(sorted(files.items()), start=1):
            digest = digests[name] = sha256_file(path)
            if _table_comment(conn, name) == _COMMENT_PREFIX + digest:
                actions[name] = "unchanged"
            else:
                _load_table(conn, name, path, digest, show_bar=show_bar)
                actions[name] = "loaded"
            if progress is not None:
                progress(name, i, len(files), actions[name])
        _record_provenance(conn, root, digests, synthetic)
    finally:
        conn.close()
    return actions


def _forget_provenance(conn: Any) -> None:
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {PROVENANCE_TABLE.split('.')[0]}")
    conn.execute(_PROVENANCE_DDL)
    conn.execute(f"DELETE FROM {PROVENANCE_TABLE}")


def _synthetic_manifest(root: Path) -> str | None:
    """The generator's own manifest (``SYNTHETIC.json``) as it wrote it, checked; None for real data.

    The reports' "synthetic" marks come from it, so a broken one is refused before anything is
    loaded or claims to be synthetic.
    """
    manifest = root / "SYNTHETIC.json"
    synthetic = manifest.read_text() if manifest.is_file() else None
    if synthetic is not None:
        try:
            json.loads(synthetic)
        except ValueError:
            raise MimicSchemaError(f"{manifest}: not valid JSON (rule: SYNTHETIC.json is written by "
                                   "clinops synth; regenerate the directory)") from None
    return synthetic


def _record_provenance(conn: Any, root: Path, digests: dict[str, str], synthetic: str | None) -> None:
    with conn.transaction():
        conn.execute(f"DELETE FROM {PROVENANCE_TABLE}")
        conn.execute(f"INSERT INTO {PROVENANCE_TABLE} (source_dir, sha256, synthetic) "
                     "VALUES (%s, %s::jsonb, %s::jsonb)", (str(root), json.dumps(digests, sort_keys=True), synthetic))


def _load_table(conn: Any, name: str, path: Path, digest: str, *, show_bar: bool) -> None:
    import psycopg  # optional dependency, see connect()

    header = _csv_header(path)
    cols = ", ".join(_ident(c) for c in header)
    bar = _bar(path.stat().st_size, name) if show_bar else None
    try:
        with conn.transaction():
            conn.execute(f"DROP TABLE IF EXISTS {_ident(name)}")
            for stmt in _ddl(name, header):
                conn.execute(stmt)
            with conn.cursor() as cur:
                with cur.copy(f"COPY {_ident(name)} ({cols}) FROM STDIN "
                              "WITH (FORMAT csv, HEADER true, NULL '')") as copy:
                    with open(path, "rb") as raw:
                        fh = gzip.GzipFile(fileobj=raw) if path.name.endswith(".gz") else raw
                        while block := fh.read(_COPY_BLOCK):
                            copy.write(block)
                            if bar is not None:  # compressed bytes read: the file size is the total
                                bar.n = raw.tell()
                                bar.refresh()
            for stmt in _key_and_indexes(name, header):
                conn.execute(stmt)
            conn.execute(f"COMMENT ON TABLE {_ident(name)} IS {_literal(_COMMENT_PREFIX + digest)}")
            conn.execute(f"ANALYZE {_ident(name)}")
    except psycopg.Error as exc:
        raise PostgresError(f"postgres: loading {name} from {path.name} failed: "
                            f"{str(exc).strip().splitlines()[0]}") from None
    finally:
        if bar is not None:
            bar.close()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def main(argv: list[str] | None = None) -> int:
    """``clinops load-postgres DIR [--dsn DSN]``."""
    ap = argparse.ArgumentParser(prog="clinops load-postgres", description=(
        "Load a MIMIC-IV v2.2 csv(.gz) directory into PostgreSQL (schemas mimiciv_hosp, mimiciv_icu, "
        "mimic-code layout). Idempotent: a table whose source file is unchanged (SHA-256) is left as "
        "it is; a changed one is replaced in one transaction."))
    ap.add_argument("dir", help="MIMIC-IV directory with hosp/ and icu/ (csv.gz)")
    ap.add_argument("--dsn", help=f"libpq connection string (default: ${DSN_ENV})")
    args = ap.parse_args(argv)
    try:
        actions = load_directory(args.dir, args.dsn, show_bar=sys.stderr.isatty(),
                                 progress=lambda t, i, n, a: print(f"[{i}/{n}] {t}: {a}", file=sys.stderr))
    except (PostgresError, MimicSchemaError) as exc:
        print(f"clinops load-postgres: {exc}", file=sys.stderr)
        return 1
    n_loaded = sum(a == "loaded" for a in actions.values())
    print(f"{len(actions)} tables: {n_loaded} loaded, {len(actions) - n_loaded} unchanged")
    return 0
