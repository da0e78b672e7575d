"""Plans of a stage that is one matrix product: compute-shift (Cannon), broadcast (SUMMA) and
stationary (replicated right operand), the cheapest that fits chosen by the cost model.

A stage qualifies when it is a box whose body is a single `gemm` with unit strides and whose
right operand is the same at every point (a weight the points share): then its points'
products stack into one `(M' x K) @ (K x N)` with `M' = points x m` (`Product`).  On an
`s x s` square of PEs (s the largest that divides M', K and N and fits the mesh):

* **cannon** (T10's compute-shift, WaferLLM's MeshGEMM): PE (i, j) starts with A's tile
  (i, i+j) and B's tile (i+j, j) (the skew), then `s` times computes `C(i, j) += A @ B` and
  shifts A one place along its row ring and B along its column ring.  Rings are embedded
  interleaved (every neighbour at most two hops away) or wrapped.  Memory: three tiles and a
  receive buffer per rotating operand; traffic: neighbour-only.
* **summa** (the broadcast plan): PE (i, j) holds A's and B's blocks (i, j); at step t the
  PEs of column t multicast their A block along their rows and those of row t their B block
  along their columns, and every PE accumulates the product of the two panels.
* **stationary** (the replicated plan): every PE of a rectangle holds all of B (each home
  block of B broadcast to the rectangle) and a band of M'/P rows of A and C, and computes once
  with no exchange: fastest when B is small, but it costs B on every PE (T10's "replicate"),
  so it is out when B does not fit.  A weight loaded onto every PE with the program
  (`replicas`) is read where it lies: no broadcast at all.

A plan on a square of `s x s` PEs also runs on several squares side by side (`groups`), each
on its own slice of M': smaller squares with bigger tiles spend fewer steps per product.  Each
plan fetches its tiles from the operands' homes (`home.Home`) first and writes C's tiles back
last (cannon and summa by the same loop, `_Squares`: they differ only in which PE holds C's
tile (i, j) and which K tiles of A and B it starts with).  Which plan a stage gets is
`gemm_choice`'s to say.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fractal.backends.pointwise import region_starts, stage_point_values
from fractal.lower.tile_ir import Gemm, Region, Stage

from .mesh_ir import Alloc, Compute, Free, Multicast, Pes, Shift, Superstep, sends
from .operand import Operand, gemm_operands, messages, moves
from .home import pe_order, pe_rank
from .routes import ring_order


@dataclass
class Product:
    """A stage as one product C' = A' @ B' (module docstring)."""

    a: Operand
    b: Operand
    c: Operand
    M: int
    K: int
    N: int
    accumulate: bool


def product_of(stage: Stage, env: dict) -> Product | None:
    """The stage as one stacked product, or None when it is not one (module docstring)."""
    if len(stage.body) != 1 or not isinstance(stage.body[0], Gemm) or not stage.rectangular:
        return None
    op: Gemm = stage.body[0]
    names = {d.var for d in stage.dims}
    if op.b.vars() & names or any(s != 1 for r in (op.a, op.b, op.c) for s in r.stride):
        return None
    values, count = stage_point_values(stage.dims, env)
    if not count:
        return None
    a, b, c, m, k, n = gemm_operands(op, lambda r: region_starts(r, values, count), stacked_b=False)
    return Product(a, b, c, m * count, k, n, op.accumulate)


# --- the plans ---------------------------------------------------------------------------------

class _Builder:
    """Tiles, fetches and write-backs shared by the plans."""

    def __init__(self, planner, stage: Stage, prod: Product, label: str, plan: str):
        self.p, self.stage, self.prod, self.label, self.plan = planner, stage, prod, label, plan
        self.op: Gemm = stage.body[0]

    def tile(self, role: str, operand: Operand, rows: int, cols: int) -> str:
        r = operand.region
        return self.p.declare(f"{self.plan}_{self.stage.name}_{role}_{rows}x{cols}", operand.tile_shape(rows, cols),
                              self.p.buffers[r.buffer].dtype)

    def gemm(self, ta: str, tb: str, tc: str, shape_a, shape_b, shape_c, accumulate: bool) -> Gemm:
        return Gemm(Region(ta, (0, 0), shape_a), Region(tb, (0, 0), shape_b), Region(tc, (0, 0), shape_c),
                    accumulate=accumulate, trans_a=self.prod.a.transposed, trans_b=self.prod.b.transposed)


class _Squares(_Builder):
    """A plan on `groups` squares of s x s PEs (`P` in all), each on its own slice of M' of
    `rows_per` rows: every PE holds an mt x kt tile of A (`ta`), a kt x nt tile of B (`tb`) and
    an mt x nt tile of C (`tc`)."""

    def __init__(self, planner, stage: Stage, prod: Product, label: str, plan: str, s: int, groups):
        super().__init__(planner, stage, prod, label, plan)
        gr, gc = groups
        self.s, self.P = s, Pes(0, gr * s, 0, gc * s)
        # squares in the homes' PE order (`home.pe_order`), so that a slice of M' and the home
        # blocks of its rows lie in the same part of the mesh
        rank = pe_rank(planner.spec.rows, planner.spec.cols)
        origins = sorted(((a * s, b * s) for a in range(gr) for b in range(gc)),
                         key=lambda o: rank[o[0] * planner.spec.cols + o[1]])
        self.squares = [(g, Pes(r, r + s, c, c + s)) for g, (r, c) in enumerate(origins)]
        self.rows_per = prod.M // len(self.squares)
        self.mt, self.kt, self.nt = mt, kt, nt = self.rows_per // s, prod.K // s, prod.N // s
        self.ta, self.tb, self.tc = (self.tile("a", prod.a, mt, kt), self.tile("b", prod.b, kt, nt),
                                     self.tile("c", prod.c, mt, nt))
        self.sa, self.sb, self.sc = prod.a.tile_shape(mt, kt), prod.b.tile_shape(kt, nt), prod.c.tile_shape(mt, nt)

    def fetch_and_back(self, place) -> tuple[tuple, tuple]:
        """`Sends` that fetch every PE's tiles from the homes (C's too when the product
        accumulates) and that write its C tile back.  `place(r0, c0, i, j)`, on arrays over the
        tiles (the square's first PE, C's tile (i, j)), says which PE holds C's tile (i, j) and
        which K tiles of A's row i and B's column j it starts with: (row, col, A's K tile, B's K tile)."""
        prod, s, mt, kt, nt = self.prod, self.s, self.mt, self.kt, self.nt
        g = np.array([g for g, _ in self.squares], np.int64)
        origin = np.array([(sq.r0, sq.c0) for _, sq in self.squares], np.int64).reshape(-1, 2)
        i, j = (np.tile(x.reshape(-1), len(g)) for x in np.meshgrid(np.arange(s), np.arange(s), indexing="ij"))
        g, r0, c0 = (np.repeat(x, s * s) for x in (g, origin[:, 0], origin[:, 1]))
        pr, pc, ka, kb = place(r0, c0, i, j)
        pes = np.stack([pr, pc], 1)
        row = g * self.rows_per + i * mt
        zero = np.zeros(len(row), np.int64)
        # (B is the same at every run of the stage, and so are its tiles' messages: built once)
        key = (self.tb, prod.b.region, prod.b.starts.tobytes(), pes.tobytes(), kb.tobytes(), j.tobytes())
        if key not in self.p.weight_moves:
            self.p.weight_moves[key] = moves(self.p, prod.b, self.tb, pes, zero, kb * kt, (kb + 1) * kt, j * nt,
                                             (j + 1) * nt, True)
        fetch = moves(self.p, prod.a, self.ta, pes, zero, row, row + mt, ka * kt, (ka + 1) * kt, True) + \
            self.p.weight_moves[key]
        if prod.accumulate:
            fetch += moves(self.p, prod.c, self.tc, pes, zero, row, row + mt, j * nt, (j + 1) * nt, True)
        return fetch, moves(self.p, prod.c, self.tc, pes, zero, row, row + mt, j * nt, (j + 1) * nt, False)


def cannon(planner, stage, prod: Product, label: str, s: int, ring: str, groups=(1, 1)) -> list[Superstep]:
    """Cannon on `groups` squares of s x s PEs, each a slice of M' (module docstring)."""
    bld = _Squares(planner, stage, prod, label, f"cannon_{ring}", s, groups)
    ta, tb, tc, sa, sb, sc, P, squares = bld.ta, bld.tb, bld.tc, bld.sa, bld.sb, bld.sc, bld.P, bld.squares
    order = np.array(ring_order(s, ring), np.int64)

    def skewed(r0, c0, i, j):   # ring positions i, j hold K tile i + j of A and B
        return r0 + order[i], c0 + order[j], (i + j) % s, (i + j) % s
    fetch, back = bld.fetch_and_back(skewed)
    steps = [Superstep(f"{label} cannon: fetch", allocs=(Alloc((ta, tb, tc), P),), transfers=fetch)]
    ra, rb = Region(ta, (0, 0), sa), Region(tb, (0, 0), sb)   # (one of each for every square's shift)
    shifts = tuple(x for _, sq in squares for x in (Shift(sq, ra, ra, "row", -1, ring, 0),
                                                       Shift(sq, rb, rb, "col", -1, ring, 1)))
    first, then = (Compute(P, (bld.gemm(ta, tb, tc, sa, sb, sc, acc),), (), stage.name)   # (the same every step)
                   for acc in (prod.accumulate, True))
    for t in range(s):
        last = t == s - 1
        steps.append(Superstep(f"{label} cannon step {t}", computes=(then if t else first,),
                               transfers=back if last else shifts, frees=(Free((ta, tb, tc), P),) if last else ()))
    return steps


def summa(planner, stage, prod: Product, label: str, s: int, groups=(1, 1)) -> list[Superstep]:
    """SUMMA on `groups` squares of s x s PEs, each a slice of M' (module docstring)."""
    bld = _Squares(planner, stage, prod, label, "summa", s, groups)
    ta, tb, tc, sa, sb, sc, P, squares = bld.ta, bld.tb, bld.tc, bld.sa, bld.sb, bld.sc, bld.P, bld.squares
    pa, pb = bld.tile("pa", prod.a, bld.mt, bld.kt), bld.tile("pb", prod.b, bld.kt, bld.nt)

    def blocks(r0, c0, i, j):   # PE (i, j) holds A's and B's blocks (i, j)
        return r0 + i, c0 + j, j, i
    fetch, back = bld.fetch_and_back(blocks)
    ra, rpa, rb, rpb = Region(ta, (0, 0), sa), Region(pa, (0, 0), sa), Region(tb, (0, 0), sb), Region(pb, (0, 0), sb)

    def panels(t):
        return tuple(x for _, sq in squares for x in (Multicast(sq, ra, rpa, "row", t, 0), Multicast(sq, rb, rpb, "col", t, 1)))
    steps = [Superstep(f"{label} summa: fetch", allocs=(Alloc((ta, tb, tc, pa, pb), P),), transfers=fetch),
             Superstep(f"{label} summa: panels 0", transfers=panels(0))]
    for t in range(s):
        last = t == s - 1
        compute = Compute(P, (bld.gemm(pa, pb, tc, sa, sb, sc, prod.accumulate or t > 0),), (), stage.name)
        steps.append(Superstep(f"{label} summa step {t}", computes=(compute,),
                               transfers=back if last else panels(t + 1),
                               frees=(Free((ta, tb, tc, pa, pb), P),) if last else ()))
    return steps


def stationary(planner, stage, prod: Product, label: str, rect: tuple[int, int]) -> list[Superstep]:
    bld = _Builder(planner, stage, prod, label, "stationary")
    R, C = rect
    band = prod.M // (R * C)
    op: Gemm = stage.body[0]
    replica = planner.replicas.get(op.b.buffer)   # (B loaded on every PE with the program: `replicas`)
    ta, tc = bld.tile("a", prod.a, band, prod.K), bld.tile("c", prod.c, band, prod.N)
    tb = replica or bld.tile("b", prod.b, prod.K, prod.N)
    sa, sb, sc = prod.a.tile_shape(band, prod.K), prod.b.tile_shape(prod.K, prod.N), prod.c.tile_shape(band, prod.N)
    P = Pes(0, R, 0, C)
    pes = _in_order(planner, P)   # band q on the q-th PE of P in the homes' order
    q = np.arange(len(pes))
    zero, K, N = np.zeros_like(q), np.full_like(q, prod.K), np.full_like(q, prod.N)
    sent, multicast = ((), ()) if replica else _broadcast(planner, prod, tb, P)
    fetch = sent + moves(planner, prod.a, ta, pes, zero, q * band, (q + 1) * band, zero, K, True)
    if prod.accumulate:
        fetch += moves(planner, prod.c, tc, pes, zero, q * band, (q + 1) * band, zero, N, True)
    back = moves(planner, prod.c, tc, pes, zero, q * band, (q + 1) * band, zero, N, False)
    gemm = bld.gemm(ta, tb, tc, sa, sb, sc, prod.accumulate)
    if replica:   # B where it lies in the replica: the op's own region of the buffer
        gemm = replace(gemm, b=replace(op.b, buffer=replica), trans_b=op.trans_b)
    scratch = (ta, tc) if replica else (ta, tb, tc)
    return [Superstep(f"{label} stationary: fetch", allocs=(Alloc(scratch, P),), transfers=fetch + multicast),
            Superstep(f"{label} stationary", computes=(Compute(P, (gemm,), (), stage.name),), transfers=back,
                      frees=(Free(scratch, P),))]


def _broadcast(planner, prod: Product, tb: str, P: Pes) -> tuple[tuple, tuple]:
    """B to every PE of P, as (sends, multicasts): each home block outside the rectangle sends
    its part to every PE, each one inside multicasts it."""
    broadcast, rows = [], []
    _, owners, at_home, home_size, at_tile, tile_size = messages(planner, prod.b, [0], [0], [prod.K], [0], [prod.N])
    local = planner.home(prod.b.region.buffer).local
    for owner, h0, h1, t0, t1 in zip(owners.tolist(), at_home.tolist(), home_size.tolist(), at_tile.tolist(),
                                     tile_size.tolist()):
        h, t = Region(local, tuple(h0), tuple(h1)), Region(tb, tuple(t0), tuple(t1))
        if tuple(owner) in P:
            root = (owner[0] - P.r0) * (P.c1 - P.c0) + owner[1] - P.c0
            broadcast.append(Multicast(P, h, t, "all", root, 2))
        else:
            rows += [(owner, pe, (local, tuple(h0), tuple(h1)), (tb, tuple(t0), tuple(t1))) for pe in P]
    return sends(rows), tuple(broadcast)


def _in_order(planner, P: Pes) -> np.ndarray:
    """The PEs of rectangle P as (row, col) rows, in the homes' PE order (`home.pe_order`)."""
    cols = planner.spec.cols
    order = pe_order(planner.spec.rows, cols)
    r, c = np.divmod(order, cols)
    keep = (r >= P.r0) & (r < P.r1) & (c >= P.c0) & (c < P.c1)
    return np.stack([r[keep], c[keep]], 1)
