"""RFC 6962 Merkle hashing: published known answers, then every proof shape against a reference.

Known answers: the Certificate Transparency test vectors as published in
github.com/transparency-dev/merkle (testonly/constants.go: leaf inputs, node hashes, roots for
tree sizes 0..8; proof/verify_test.go: inclusion and consistency proofs). Those files index
inclusion leaves from 1; below they are converted to 0-based indices.
"""
from __future__ import annotations

import hashlib

import pytest

from clinops.audit.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

LEAF_INPUTS = [bytes.fromhex(h) for h in
               ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]]
LEAF_HASHES = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
]
ROOTS = [  # tree sizes 0..8
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (0-based leaf index, tree size, audit path)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (0, 1, []),
]
CONSISTENCY = [  # (old size, new size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


@pytest.fixture(scope="module")
def ct_tree() -> MerkleTree:
    return MerkleTree(leaf_hash(x) for x in LEAF_INPUTS)


def _hx(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


def test_hash_prefixes_match_rfc6962() -> None:
    assert EMPTY_ROOT.hex() == ROOTS[0]
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()


def test_leaf_hashes_and_roots_match_published_vectors(ct_tree: MerkleTree) -> None:
    assert [leaf_hash(x).hex() for x in LEAF_INPUTS] == LEAF_HASHES
    assert [ct_tree.root(n).hex() for n in range(9)] == ROOTS


@pytest.mark.parametrize("index,size,path", INCLUSION)
def test_inclusion_proofs_match_published_vectors(ct_tree: MerkleTree, index: int, size: int, path: list[str]) -> None:
    assert _hx(ct_tree.inclusion_proof(index, size)) == path
    proof = [bytes.fromhex(p) for p in path]
    leaf, root = leaf_hash(LEAF_INPUTS[index]), bytes.fromhex(ROOTS[size])
    assert verify_inclusion(index, size, leaf, proof, root)
    # The corruptions of the reference verifier's test: every one must be rejected.
    probes = [(index - 1, size, leaf, proof, root), (index + 1, size, leaf, proof, root),
              (index ^ 2, size, leaf, proof, root), (index, size * 2, leaf, proof, root),
              (index, size // 2, leaf, proof, root), (index, size, leaf_hash(b"WrongLeaf"), proof, root),
              (index, size, leaf, proof, EMPTY_ROOT), (index, size, leaf, proof, SOME_HASH),
              (index, size, leaf, proof + [root], root), (index, size, leaf, [root] + proof, root)]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        probes.append((index, size, leaf, flipped, root))
    if proof:
        probes.append((index, size, leaf, proof[:-1], root))
    if len(proof) > 1:
        probes.append((index, size, leaf, [proof[0], SOME_HASH] + proof[1:], root))
    accepted = [i for i, p in enumerate(probes) if verify_inclusion(*p)]
    assert accepted == []


@pytest.mark.parametrize("old,new,proof", CONSISTENCY)
def test_consistency_proofs_match_published_vectors(ct_tree: MerkleTree, old: int, new: int, proof: list[str]) -> None:
    assert _hx(ct_tree.consistency_proof(old, new)) == proof
    raw = [bytes.fromhex(p) for p in proof]
    r1, r2 = bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new])
    assert verify_consistency(old, new, r1, r2, raw)
    if not raw:
        return
    probes = [(old - 1, new, r1, r2, raw), (old + 1, new, r1, r2, raw), (old ^ 2, new, r1, r2, raw),
              (old, new * 2, r1, r2, raw), (old, new // 2, r1, r2, raw), (old, new, SOME_HASH, r2, raw),
              (old, new, r1, SOME_HASH, raw), (old, new, r2, r1, raw), (old, new, r1, r2, []),
              (old, new, r1, r2, raw + [r1]), (old, new, r1, r2, raw + [r2]), (old, new, r1, r2, [r1] + raw),
              (old, new, r1, r2, [r2] + raw), (old, new, r1, r2, [raw[0]] + raw), (old, new, r1, r2, raw[:-1])]
    for i in range(len(raw)):
        flipped = list(raw)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        probes.append((old, new, r1, r2, flipped))
    accepted = [i for i, p in enumerate(probes) if p[0] > 0 and verify_consistency(*p)]
    assert accepted == []


def test_trivial_consistency_cases() -> None:
    a, b = b"\x01" * 32, b"\x02" * 32
    for new_size in (0, 5):  # as transparency-dev: from size 0 is an error, never a silent "consistent"
        with pytest.raises(ValueError, match="old_size"):
            verify_consistency(0, new_size, a, b, [])
    assert not verify_consistency(1, 1, a, b, [])  # same size, different roots: a fork
    assert not verify_consistency(2, 1, a, b, [])  # shrinking
    assert not verify_consistency(1, 2, a, b, [])  # non-trivial sizes need a proof
    assert not verify_consistency(1, 1, a, a, [EMPTY_ROOT])


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1 MTH, written from the definition."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(_reference_root(leaves[:k]), _reference_root(leaves[k:]))


def test_every_proof_of_every_small_tree_verifies_and_nothing_else_does() -> None:
    leaves = [leaf_hash(bytes([i, i * 7 % 256])) for i in range(40)]
    tree = MerkleTree(leaves)
    for n in range(41):
        root = tree.root(n)
        assert root == _reference_root(leaves[:n])
        for i in range(n):
            path = tree.inclusion_proof(i, n)
            assert root_from_inclusion_proof(i, n, leaves[i], path) == root
            if n > 1:
                assert not verify_inclusion(i, n, leaves[(i + 1) % n], path, root)
        for m in range(1, n + 1):
            proof = tree.consistency_proof(m, n)
            assert verify_consistency(m, n, tree.root(m), root, proof)
            if 0 < m < n:
                assert not verify_consistency(m, n, leaf_hash(b"forged"), root, proof)


def test_truncate_and_bulk_extend_agree_with_a_fresh_tree() -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(77)]
    tree = MerkleTree(leaves)
    tree.truncate(45)
    assert len(tree) == 45 and tree.root() == _reference_root(leaves[:45])
    tree.extend_hashes(b"".join(leaves[45:]))
    assert tree.root() == _reference_root(leaves)
    with pytest.raises(ValueError, match="32 bytes"):
        tree.append(b"short")
    with pytest.raises(ValueError, match="outside"):
        tree.inclusion_proof(77, 77)


@pytest.mark.parametrize("cuts", [(0,), (1,), (5, 17), (3, 4, 64, 65, 200), (128, 129, 300)])
def test_extend_hashes_in_any_batches_builds_the_tree_append_builds(cuts: tuple[int, ...]) -> None:
    # verify builds the tree with extend_hashes (level by level); writers use append: one tree.
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(300)]
    bulk, prev = MerkleTree(), 0
    for cut in (*cuts, 300):
        bulk.extend_hashes(b"".join(leaves[prev:cut]))
        prev = cut
        one_by_one = MerkleTree(leaves[:cut])
        assert len(bulk) == cut
        assert bulk.root() == one_by_one.root() == _reference_root(leaves[:cut])
        if cut > 1:
            assert bulk.inclusion_proof(cut // 2, cut) == one_by_one.inclusion_proof(cut // 2, cut)
            assert bulk.consistency_proof(cut // 3 or 1, cut) == one_by_one.consistency_proof(cut // 3 or 1, cut)
    with pytest.raises(ValueError, match="multiple of 32"):
        bulk.extend_hashes(b"x" * 33)
