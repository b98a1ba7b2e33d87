"""The serving demo's state and actions, composed from ``clinops`` (no HTTP here).

The app (:mod:`serving.app`) only maps HTTP to :class:`ServingRuntime`'s methods. Several
worker processes can run one runtime each on the same ``state_dir``: everything they must agree
on is kept there (see :mod:`serving.shared` and ``clinops/docs/serving.md``, "Workers").

Modules, one concern each: :mod:`.service` (:class:`ServingRuntime`, composing the others),
:mod:`.scoring`, :mod:`.audit`, :mod:`.review`, :mod:`.outcomes`, :mod:`.drift`, :mod:`.governance`,
:mod:`.erasure`, :mod:`.background`, :mod:`.errors`.
"""
from __future__ import annotations

from serving.runtime.audit import dataset_sha256
from serving.runtime.errors import AuditUnavailable, Conflict, NotFound
from serving.runtime.service import ServingRuntime, psi_reference_from_bundle

__all__ = ["AuditUnavailable", "Conflict", "NotFound", "ServingRuntime", "dataset_sha256", "psi_reference_from_bundle"]
