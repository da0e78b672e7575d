"""Home layouts: where each tile-IR buffer lives on the mesh between the stages that use it.

A buffer's home cuts it into a grid of blocks (`factors` blocks along each axis, as equal as
the sizes allow, leading axes first, no more blocks than PEs, none much under 512 bytes) and
gives flat block b to the PE of rank `first + b * stride` (mod P) in the mesh's Z order
(`pe_order`), each PE holding one block in a local buffer `h_<name>` of the block's shape.

* Z order keeps consecutive blocks (consecutive rows of a matrix) in compact squares of PEs,
  so a plan that gives a slice of rows to a square of PEs (`plan_gemm`) finds them nearby.
* A buffer with fewer blocks than PEs is strided (`stride = P // blocks`) over the whole mesh,
  so that the many PEs reading a small weight do not all queue at one corner.
* `first` rotates from buffer to buffer so that small buffers do not pile onto the same PEs;
  a buffer whose blocks fill the mesh evenly starts at rank 0, so that two such buffers cut
  alike hold block b on the same PE (an element-wise stage between them moves nothing).

A box of the buffer meets a block in a box, so moving a region between its home and a PE is
a few messages of boxes (`pieces`).

    home = Home.spread("x", (540, 1, 80), rows=4, cols=4, itemsize=4)
    home.factors, home.block      # (16, 1, 1), (34, 1, 80): 16 blocks of 34 rows (the last 30)
    home.owner((2, 0, 0))         # (1, 0): rank 2 in Z order
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

Box = tuple[tuple[int, int], ...]   # per axis [lo, hi)
MIN_BLOCK_BYTES = 512               # smaller blocks only multiply the messages that move a buffer


@dataclass(frozen=True)
class Home:
    name: str                  # the tile buffer
    local: str                 # its local buffer on the owning PEs
    shape: tuple[int, ...]
    factors: tuple[int, ...]
    block: tuple[int, ...]
    first: int
    cols: int                  # of the mesh (PE id -> (row, col))
    pes: int

    @classmethod
    def spread(cls, name: str, shape, rows: int, cols: int, first: int = 0, itemsize: int = 4,
               min_block_bytes: int = MIN_BLOCK_BYTES) -> "Home":
        shape = tuple(int(d) for d in shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * itemsize
        left, factors = max(1, min(rows * cols, nbytes // min_block_bytes)), []
        for d in shape:
            f = max(1, min(d, left))
            factors.append(f)
            left //= f
        block = tuple(-(-d // f) if d else 0 for d, f in zip(shape, factors))
        factors = tuple(-(-d // b) if b else 1 for d, b in zip(shape, block))   # blocks actually used
        if int(np.prod(factors, dtype=np.int64)) % (rows * cols) == 0:
            first = 0   # fills the mesh evenly: aligned with every buffer cut alike
        return cls(name, f"h_{name}", shape, factors, block, first % (rows * cols), cols, rows * cols)

    @property
    def blocks(self) -> int:
        return int(np.prod(self.factors, dtype=np.int64))

    def owner(self, index: tuple[int, ...]) -> tuple[int, int]:
        b = int(np.ravel_multi_index(index, self.factors)) if index else 0
        q = int(self.pe_of(np.int64(b)))
        return q // self.cols, q % self.cols

    def pe_of(self, flat):
        """The PE id (row-major) holding each flat block index."""
        stride = max(1, self.pes // max(self.blocks, 1))   # few blocks: spread over the mesh
        return pe_order(self.pes // self.cols, self.cols)[(self.first + flat * stride) % self.pes]

    def block_box(self, index: tuple[int, ...]) -> Box:
        return tuple((i * b, min((i + 1) * b, d)) for i, b, d in zip(index, self.block, self.shape))

    def owner_ids(self) -> np.ndarray:
        """Every block's PE id (row-major), blocks in flat order (read-only)."""
        return _owner_ids(self)

    def owners(self) -> list[tuple[tuple[int, int], Box]]:
        """Every block's PE and box."""
        return _owners(self)

    def pieces(self, box: Box) -> list[tuple[tuple[int, int], Box, Box]]:
        """The blocks a box meets: (owner PE, the part of the box in that block, the block's box)."""
        return _pieces(self, tuple((int(lo), int(hi)) for lo, hi in box))

    def pieces_many(self, lo: np.ndarray, hi: np.ndarray):
        """`pieces` of many boxes at once, boxes `[lo[i], hi[i])` (n, ndim): arrays over all the
        pieces, box by box in `pieces`' order: (which box, owner PE id, part lo, part hi, block lo)."""
        lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
        n, d = lo.shape
        block, shape = np.array(self.block, np.int64).reshape(d), np.array(self.shape, np.int64).reshape(d)
        first, last = lo // np.maximum(block, 1), (hi - 1) // np.maximum(block, 1)
        counts = np.where((hi > lo).all(1, keepdims=True), last - first + 1, 0)
        total = counts.prod(1) if d else np.ones(n, np.int64)
        box = np.repeat(np.arange(n), total)
        k = np.arange(len(box)) - np.repeat(np.cumsum(total) - total, total)
        index, part_lo, part_hi = (np.empty((len(box), d), np.int64) for _ in range(3))
        for axis in reversed(range(d)):   # mixed radix, the last axis fastest (itertools.product's order)
            if (counts[:, axis] <= 1).all():   # every box in one block along this axis: worked out per box
                at = first[:, axis] * block[axis]
                index[:, axis] = np.repeat(first[:, axis], total)
                part_lo[:, axis] = np.repeat(np.maximum(lo[:, axis], at), total)
                part_hi[:, axis] = np.repeat(np.minimum(hi[:, axis], np.minimum(at + block[axis], shape[axis])), total)
                continue
            k, digit = np.divmod(k, np.repeat(counts[:, axis], total))
            index[:, axis] = np.repeat(first[:, axis], total) + digit
            at = index[:, axis] * block[axis]
            part_lo[:, axis] = np.maximum(np.repeat(lo[:, axis], total), at)
            part_hi[:, axis] = np.minimum(np.repeat(hi[:, axis], total), np.minimum(at + block[axis], shape[axis]))
        block_lo = index * block
        flat = np.ravel_multi_index(tuple(index.T), self.factors) if d else np.zeros(len(box), np.int64)
        return box, self.pe_of(flat), part_lo, part_hi, block_lo

    def _pieces(self, box: Box) -> list[tuple[tuple[int, int], Box, Box]]:
        if any(hi <= lo for lo, hi in box):
            return []
        ranges = [range(lo // b, (hi - 1) // b + 1) for (lo, hi), b in zip(box, self.block)]
        out = []
        for ix in itertools.product(*ranges):
            blk = self.block_box(ix)
            part = tuple((max(lo, blo), min(hi, bhi)) for (lo, hi), (blo, bhi) in zip(box, blk))
            out.append((self.owner(ix), part, blk))
        return out


@lru_cache(maxsize=64)
def pe_order(rows: int, cols: int) -> np.ndarray:
    """The mesh's PE ids (row-major) in Z order (Morton order of (row, col), the points outside
    the mesh skipped): consecutive ranks lie close together, and every aligned square of 2^k x
    2^k PEs is a run of consecutive ranks."""
    r, c = np.divmod(np.arange(rows * cols, dtype=np.int64), cols)
    key = np.zeros_like(r)
    for bit in range(max(rows, cols).bit_length()):
        key |= ((c >> bit) & 1) << (2 * bit) | ((r >> bit) & 1) << (2 * bit + 1)
    order = np.argsort(key, kind="stable")
    order.setflags(write=False)
    return order


@lru_cache(maxsize=64)
def pe_rank(rows: int, cols: int) -> np.ndarray:
    """Each PE id's (row-major) rank in Z order (`pe_order`'s inverse)."""
    rank = np.argsort(pe_order(rows, cols))
    rank.setflags(write=False)
    return rank


@lru_cache(maxsize=1 << 12)
def _owner_ids(home: Home) -> np.ndarray:
    ids = np.asarray(home.pe_of(np.arange(home.blocks, dtype=np.int64)), np.int64)
    ids.setflags(write=False)
    return ids


@lru_cache(maxsize=1 << 12)
def _owners(home: Home) -> list:
    return [(home.owner(ix), home.block_box(ix)) for ix in itertools.product(*(range(f) for f in home.factors))]


@lru_cache(maxsize=1 << 16)
def _pieces(home: Home, box: Box):
    return home._pieces(box)   # (plans ask for the same boxes again and again: a shared operand)
