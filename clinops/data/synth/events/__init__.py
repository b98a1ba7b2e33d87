"""Per-measurement tables for one chunk of patients: chartevents, labevents, inputevents,
procedureevents.

A chunk is a contiguous run of patients (in subject_id order) with their admissions and ICU
stays. :func:`make_chunk` expands the stay and admission plans of :mod:`.population` into rows
and returns one gzip member per table, so chunks can be made in any process and concatenated
in order. Every random draw comes from a stream keyed by (seed, chunk index), so the bytes do
not depend on how many processes run.

Physiology of a stay over time (hours ``tau`` since ICU intime): each latent organ state
``x`` becomes ``x(tau) = x - 0.6 * recovery(tau) * max(x, 0) + 1.5 * ramp(tau)``, where
``recovery = 1 - exp(-tau / 48)`` for patients who leave the ICU alive and
``ramp = exp(-(death - tau) / 10)`` for patients who die in it; vital signs add AR(1) noise
(hour-to-hour correlation 0.8) and measurement noise to a linear function of these states.
"""
from __future__ import annotations

from .chunks import EVENT_TABLES, make_chunk, plan_chunks
from .vocabulary import ChunkSpec, ID_SPACE, scramble

__all__ = ["ChunkSpec", "EVENT_TABLES", "ID_SPACE", "make_chunk", "plan_chunks", "scramble"]
