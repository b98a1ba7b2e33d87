"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion proofs and consistency proofs.

The hashing is exactly the one Certificate Transparency uses, so any RFC 6962 verifier
(e.g. ``github.com/transparency-dev/merkle``) agrees with these roots and proofs:

- leaf hash  ``SHA-256(0x00 || data)``
- node hash  ``SHA-256(0x01 || left || right)``
- the tree over ``n`` leaves splits at ``k``, the largest power of two smaller than ``n``
- the empty tree hashes to ``SHA-256(b"")``

:class:`MerkleTree` keeps every complete, aligned subtree (about ``2 n`` hashes of 32 bytes)
so a root, an inclusion proof or a consistency proof for any earlier tree size costs
``O(log^2 n)`` hash look-ups instead of rehashing the log.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

__all__ = [
    "EMPTY_ROOT",
    "MerkleTree",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash ``SHA-256(0x00 || data)`` (32 bytes)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash ``SHA-256(0x01 || left || right)`` (32 bytes)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_leaf(leaf: bytes) -> None:
    if len(leaf) != HASH_SIZE:
        raise ValueError(f"leaf hash must be {HASH_SIZE} bytes, got {len(leaf)}")


class MerkleTree:
    """An append-only RFC 6962 Merkle tree over leaf hashes.

    Parameters
    ----------
    leaf_hashes : iterable of bytes, optional
        Initial leaf hashes (each 32 bytes, already ``leaf_hash``-ed).

    Notes
    -----
    ``_levels[k]`` concatenates the hashes of the complete subtrees of ``2**k`` leaves that
    start at multiples of ``2**k``; every subtree the RFC 6962 recursion asks for is either
    one of those or splits into them, so nothing is ever rehashed.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        leaves = list(leaf_hashes)
        for h in leaves:
            _check_leaf(h)
        self.extend_hashes(b"".join(leaves))

    def __len__(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash (32 bytes) at the end of the tree."""
        _check_leaf(leaf)
        self.extend_hashes(leaf)

    def extend_hashes(self, leaves: bytes) -> None:
        """Append leaf hashes given as one concatenation of 32-byte hashes."""
        if len(leaves) % HASH_SIZE:
            raise ValueError(f"leaf hashes must be a multiple of {HASH_SIZE} bytes, got {len(leaves)}")
        # Level by level rather than leaf by leaf: each level's newly completed pairs are hashed
        # in one pass (the same nodes as repeated append(), a few times faster for large batches;
        # verify builds the whole tree here).
        levels = self._levels
        levels[0] += leaves
        level, sha256, pair_size = 0, hashlib.sha256, 2 * HASH_SIZE
        while True:
            buf = levels[level]
            if level + 1 == len(levels):
                if len(buf) < pair_size:
                    return
                levels.append(bytearray())
            parents = levels[level + 1]
            done = 2 * len(parents)                   # bytes of this level already paired (32 per node, 64 per pair)
            end = len(buf) - len(buf) % pair_size     # only complete pairs
            if end <= done:
                return
            parents += b"".join([sha256(NODE_PREFIX + buf[i:i + pair_size]).digest()
                                 for i in range(done, end, pair_size)])
            level += 1

    def truncate(self, size: int) -> None:
        """Drop every leaf from index ``size`` on (used when a torn tail is recovered)."""
        if not 0 <= size <= len(self):
            raise ValueError(f"size must be in [0, {len(self)}], got {size}")
        for level, buf in enumerate(self._levels):
            del buf[(size >> level) * HASH_SIZE:]

    def leaf(self, index: int) -> bytes:
        """Leaf hash at ``index`` (32 bytes)."""
        if not 0 <= index < len(self):
            raise IndexError(f"leaf index {index} outside tree of size {len(self)}")
        return bytes(self._levels[0][index * HASH_SIZE:(index + 1) * HASH_SIZE])

    def _check_size(self, size: int | None) -> int:
        n = len(self) if size is None else size
        if not 0 <= n <= len(self):
            raise ValueError(f"tree size {n} outside [0, {len(self)}]")
        return n

    def _subtree(self, lo: int, hi: int) -> bytes:
        """MTH of leaves ``[lo, hi)``; ``hi - lo >= 1``."""
        n = hi - lo
        if n & (n - 1) == 0:
            level = n.bit_length() - 1
            i = lo >> level
            # The RFC recursion only ever asks for aligned power-of-two ranges.
            assert i << level == lo, "unaligned subtree"
            return bytes(self._levels[level][i * HASH_SIZE:(i + 1) * HASH_SIZE])
        k = _split(n)
        return node_hash(self._subtree(lo, lo + k), self._subtree(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        """Merkle tree hash of the first ``size`` leaves (default: all), 32 bytes."""
        n = self._check_size(size)
        return EMPTY_ROOT if n == 0 else self._subtree(0, n)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Audit path (RFC 9162 2.1.3.1) of leaf ``index`` in the tree of ``size`` leaves."""
        n = self._check_size(size)
        if not 0 <= index < n:
            raise ValueError(f"leaf index {index} outside tree of size {n}")

        def path(m: int, lo: int, hi: int) -> list[bytes]:
            if hi - lo == 1:
                return []
            k = _split(hi - lo)
            if m < k:
                return path(m, lo, lo + k) + [self._subtree(lo + k, hi)]
            return path(m - k, lo + k, hi) + [self._subtree(lo, lo + k)]

        return path(index, 0, n)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Consistency proof (RFC 9162 2.1.4.1) between tree sizes ``old_size <= new_size``."""
        n = self._check_size(new_size)
        if not 0 <= old_size <= n:
            raise ValueError(f"old size {old_size} outside [0, {n}]")
        if old_size in (0, n):
            return []

        def subproof(m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
            if m == hi - lo:
                return [] if complete else [self._subtree(lo, hi)]
            k = _split(hi - lo)
            if m <= k:
                return subproof(m, lo, lo + k, complete) + [self._subtree(lo + k, hi)]
            return subproof(m - k, lo + k, hi, False) + [self._subtree(lo, lo + k)]

        return subproof(old_size, 0, n, True)


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """Root implied by an inclusion proof (RFC 9162 2.1.3.2); raises ``ValueError`` if malformed.

    Parameters
    ----------
    index : int
        Leaf index, ``0 <= index < size``.
    size : int
        Tree size the proof is for.
    leaf : bytes
        The leaf hash (32 bytes), i.e. ``leaf_hash(record_bytes)``.
    proof : sequence of bytes
        The audit path, each 32 bytes.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} outside tree of size {size}")
    if len(leaf) != HASH_SIZE or any(len(p) != HASH_SIZE for p in proof):
        raise ValueError(f"every hash must be {HASH_SIZE} bytes")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ValueError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("inclusion proof is shorter than the tree is deep")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """True when ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree of ``size`` with ``root``."""
    try:
        return root_from_inclusion_proof(index, size, leaf, proof) == root
    except ValueError:
        return False


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """True when ``proof`` shows the tree ``(old_size, old_root)`` is a prefix of ``(new_size, new_root)``.

    Implements RFC 9162 2.1.4.2; equal sizes need an empty proof and equal roots.

    Raises
    ------
    ValueError
        ``old_size`` is 0: like the transparency-dev reference verifier, a consistency proof from
        the empty tree is refused, since it would accept any ``new_root`` (callers that start
        from nothing, such as a witness seeing a log for the first time, handle that case themselves).
    """
    if old_size == 0:
        raise ValueError("old_size: a consistency proof from tree size 0 proves nothing; start from a non-empty tree")
    if any(len(p) != HASH_SIZE for p in proof) or not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
