"""The canonical text encodings every audit file shares: UTC timestamps, canonical JSON, strict base64.

Every byte the trail hashes or signs is produced by these functions, so that a record, seal or
checkpoint has exactly one valid spelling (see clinops/docs/audit.md, "File formats").

Examples
--------
>>> from datetime import datetime, timezone
>>> utc_text(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc))
'2026-01-02T03:04:05.000006Z'
>>> canonical_json({"b": 1, "a": [1.5, "x"]})
'{"a":[1.5,"x"],"b":1}'
>>> unb64(b64(b"seal"))
b'seal'
"""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Any

__all__ = ["RecordFormatError", "b64", "canonical_json", "parse_utc", "unb64", "utc_text"]


class RecordFormatError(ValueError):
    """A line of the log is not a well-formed record, seal or checkpoint."""


# -- time -----------------------------------------------------------------------------------
def utc_text(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` for an aware datetime (naive ones are rejected)."""
    if moment.tzinfo is None:
        raise ValueError("clock: timestamps must be timezone-aware (UTC), got a naive datetime")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_utc(text: str) -> datetime:
    """Inverse of :func:`utc_text`."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


# -- canonical JSON -------------------------------------------------------------------------
def canonical_json(value: Any) -> str:
    """Compact, key-sorted, ASCII-only JSON (the form hashed and searched)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Strict base64: only the canonical encoding is accepted.

    ``b64decode`` ignores the unused low bits of the last character, so several texts decode to
    the same bytes; a signature could then be altered without being detected. Re-encoding and
    comparing rules that out.
    """
    data = base64.b64decode(text.encode("ascii"), validate=True)
    if base64.b64encode(data).decode("ascii") != text:
        raise ValueError("base64: not in canonical form")
    return data
