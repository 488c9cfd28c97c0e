"""An append-only Merkle tree with O(log n) memory (RFC 6962 shape, SHA-256).

Leaf hash ``SHA-256(0x00 || leaf)``, node hash ``SHA-256(0x01 || left || right)``; the
tree over ``n`` leaves splits at the largest power of two below ``n``, as in RFC 6962, so
the root of a dataset does not depend on how it was batched while reading.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

_BLOCK_HEIGHT = 12  # leaves are folded in perfect blocks of 4096 before joining the stack


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleAccumulator:
    """Feed leaves in order with :meth:`extend`; :meth:`root` gives the tree's root."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (height, hash), heights decreasing
        self._pending: list[bytes] = []
        self.count = 0

    def extend(self, leaves: Iterable[bytes]) -> None:
        sha = hashlib.sha256
        self._pending.extend(sha(b"\x00" + leaf).digest() for leaf in leaves)
        block = 1 << _BLOCK_HEIGHT
        while len(self._pending) >= block:
            level, self._pending = self._pending[:block], self._pending[block:]
            self.count += block
            while len(level) > 1:
                level = [
                    sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)
                ]
            self._push(_BLOCK_HEIGHT, level[0])

    def _push(self, height: int, digest: bytes) -> None:
        while self._stack and self._stack[-1][0] == height:
            _, left = self._stack.pop()
            digest = node_hash(left, digest)
            height += 1
        self._stack.append((height, digest))

    def root(self) -> bytes:
        """The root over every leaf so far (SHA-256 of the empty string for no leaf)."""
        stack = list(self._stack)
        for pending in self._pending:  # single leaves: heights below the blocks
            height, digest = 0, pending
            while stack and stack[-1][0] == height:
                _, left = stack.pop()
                digest = node_hash(left, digest)
                height += 1
            stack.append((height, digest))
        if not stack:
            return hashlib.sha256(b"").digest()
        digest = stack[-1][1]
        for _, left in reversed(stack[:-1]):
            digest = node_hash(left, digest)
        return digest


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    acc = MerkleAccumulator()
    acc.extend(leaves)
    return acc.root()
