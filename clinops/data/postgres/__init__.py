"""MIMIC-IV v2.2 in PostgreSQL: ``clinops load-postgres`` (:mod:`.load`) and the database as a query
source (:mod:`.source`); the DSN and the connection in :mod:`.connection`.

The layout is mimic-code's (``buildmimic/postgres``): schemas ``mimiciv_hosp`` and
``mimiciv_icu``, one table per file, the v2.2 column types of :data:`MIMIC_IV_SCHEMA`, primary
keys on the id columns and indexes on ids, ``itemid`` and event times. A database a user built
with mimic-code's own scripts is read the same way.

Loading (:func:`load_directory`) streams every ``csv.gz`` file through ``COPY ... FROM STDIN``
(constant memory) inside one transaction per table. It is idempotent by content: each table
carries a comment with the SHA-256 of the file it was loaded from; a second run with the same
file is a no-op for that table, a changed file replaces the table cleanly (drop, create, copy,
keys, indexes, comment, commit: a failure leaves the previous table in place).

Querying (:class:`PostgresDatabase`) runs the packaged DuckDB SQL transpiled by
:mod:`clinops.data.engines` inside the server; only the result rows come back.

Provenance: every complete load records, in ``clinops.provenance``, the directory, the SHA-256
of every file and, for ``clinops synth`` output, the generator's ``SYNTHETIC.json``.
:meth:`PostgresDatabase.synthetic_manifest` returns that manifest only while every table still
carries the recorded hash; the pipeline's data step copies it into its stamp, so the paper
comparison marks what holds by construction from the data's provenance, as it does for files.

The DSN never lives in a parameter file: it comes from ``--dsn`` or the environment variable
:data:`DSN_ENV` (libpq syntax, e.g. ``host=127.0.0.1 port=5432 dbname=mimiciv user=me``).
"""
from __future__ import annotations

from .connection import DSN_ENV, PostgresError, connect, dsn_from
from .load import PRIMARY_KEYS, PROVENANCE_TABLE, load_directory, main, postgres_type
from .source import PostgresDatabase, check_loaded_from, open_postgres

__all__ = ["DSN_ENV", "PostgresDatabase", "PostgresError", "check_loaded_from", "connect", "dsn_from",
           "load_directory", "open_postgres", "postgres_type", "PRIMARY_KEYS", "PROVENANCE_TABLE", "main"]
