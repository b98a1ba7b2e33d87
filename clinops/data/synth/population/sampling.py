"""Random-draw helpers of the generator: keyed streams, exact quotas, intercepts solved by bisection, id and time encodings."""
from __future__ import annotations

import zlib
import numpy as np


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    """Independent random stream for (seed, keys): the same keys give the same stream."""
    words = [seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF]
    words += [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def solve_intercept(lp: np.ndarray, target: float, *, allowed: np.ndarray | None = None,
                    denominator: int | None = None) -> float:
    """Intercept ``b`` with ``sum(sigmoid(b + lp[allowed])) / denominator == target``.

    ``denominator`` defaults to the number of rows of ``lp``: rows outside ``allowed`` count as
    probability 0 (e.g. a ventilation flag cannot be missing for a ventilated stay).
    """
    lp = np.asarray(lp, dtype=float)
    n = len(lp) if denominator is None else denominator
    x = lp if allowed is None else lp[allowed]
    if n == 0 or len(x) == 0:
        return 0.0
    want = target * n
    if want >= len(x):
        raise ValueError(f"target share {target} is not reachable with {len(x)} of {n} rows")
    lo, hi = -40.0, 40.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if sigmoid(mid + x).sum() < want:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def exact_assign(rng: np.random.Generator, n: int, shares: np.ndarray) -> np.ndarray:
    """Category per row with counts as close as possible to ``n * shares``, in random order."""
    shares = np.asarray(shares, dtype=float) / np.sum(shares)
    raw = n * shares
    counts = np.floor(raw).astype(int)
    counts[np.argsort(-(raw - counts))[: n - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.arange(len(shares)), counts))


def sample_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category per row of ``probs`` (rows need not be normalised)."""
    probs = np.atleast_2d(probs)
    c = np.cumsum(probs, axis=1)
    u = rng.random(len(c))[:, None] * c[:, -1:]
    return np.minimum((u > c).sum(axis=1), probs.shape[1] - 1)


def choice(rng: np.random.Generator, n: int, options: dict | tuple, probs=None) -> np.ndarray:
    """``n`` draws of indices into ``options`` with probabilities ``probs`` (normalised)."""
    p = np.asarray(probs if probs is not None else np.ones(len(options)), dtype=float)
    return rng.choice(len(p), size=n, p=p / p.sum())


def lognormal(rng: np.random.Generator, median: float | np.ndarray, sigma: float, n: int
              ) -> np.ndarray:
    return np.asarray(median) * np.exp(sigma * rng.standard_normal(n))


def to_minute(t: np.ndarray) -> np.ndarray:
    return (np.asarray(t, dtype=np.int64) // 60) * 60


def unique_ids(rng: np.random.Generator, n: int, base: int) -> np.ndarray:
    """``n`` distinct 8-digit ids ``base + [0, 10**7)`` (e.g. base 10**7 -> 1xxxxxxx)."""
    if n > 10**7:
        raise ValueError(f"cannot draw {n} distinct ids below {base + 10**7}")
    return base + rng.choice(10**7, size=n, replace=False).astype(np.int64)


def age_weighted_groups(rng: np.random.Generator, age: np.ndarray, names: tuple[str, ...],
                        groups: dict, age_pref: dict[str, float]) -> np.ndarray:
    w = np.array([groups[g].weight for g in names])
    a = np.array([age_pref.get(g, 0.0) for g in names])
    probs = w[None, :] * np.exp(a[None, :] * ((age[:, None] - 65.0) / 15.0))
    return sample_rows(rng, probs)
