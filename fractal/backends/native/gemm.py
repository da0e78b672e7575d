"""Products in host C++: a point's product run with the stage's other ops (`gemm_loops`), or
the stage's points folded into fewer, bigger products (`folded_part`).

A gemm region is a strided 2-d view: element (e0, e1) of `a[...]` sits at `base + s0*e0 +
s1*e1` (`strided`), `base` an index over the stage's variables.  `op(a)` is m x k, `op(b)`
k x n, `c` m x n.

* **A point's product** (`gemm_loops`): float32/float64/int products by the register-blocked
  kernel of `kernels.h` (`ft_small_gemm`); other types one float64 dot product per element.
* **Folded** (`folded_part`): a stage dim folds into the rows where B does not read it and A's
  and C's rows stack along it, into the columns where A does not read it and B's and C's
  columns stack along it; what is left is one product per remaining point: a BLAS call
  (`fractal.backends.native.blas`, through the generated `ft_gemm_f32`/`ft_gemm_f64`) when it
  is big, outside any parallel loop so that BLAS owns the cores while it runs, else the
  kernel, the remaining points shared among threads.  The dims fold in the order that stacks
  the most points (innermost first where that is as good); a dim read inside a floor or a mod
  never folds.  So `gemm(x[m19, 0:128, 0:64],
  w[0:64, 0:512])` over `m19 in 0:128` is one 16384 x 64 @ 64 x 512 call, and attention's
  scores `gemm(q[i, 0:1, 0:16], k[j, 0:16, 0:1])` over (i, j) one q @ k^T.

    // st[m19, 0:128, 0:512] = gemm(x[m19, 0:128, 0:64], w[0:64, 0:512])   (m19 folded)
    ft_gemm_f32(false, false, 16384, 512, 64, 1.0f, b_x + (0), 64, b_w + (0), 512, 0.0f, b_st + (0), 512);
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from fractal.lower.tile_affine import aff
from fractal.lower.tile_ir import Gemm, Region, Stage

from ..codegen import index_expr
from ..codegen.address import point_offset
from ..codegen.dialect import COMPUTE
from ..codegen.regions import overwrites_its_input
from .scope import NATIVE, Scope

BLAS_MIN_WORK = 1 << 15        # multiply-adds of one call below which loops beat a BLAS call
BLAS_DTYPES = {"float32": "ft_gemm_f32", "float64": "ft_gemm_f64"}
_VECTOR = {"float32", "float64", "int32", "int64"}


@dataclass(frozen=True)
class Strided:
    """A 2-d region as `base + s0*e0 + s1*e1` (`base` an index over the stage variables)."""

    base: object
    s0: int
    s1: int


def strided(region: Region, sc: Scope) -> Strided:
    total = point_offset(region, sc.buffers[region.buffer], ("ft_e0", "ft_e1"))
    strides = dict(total.terms)
    s0, s1 = strides.get("ft_e0", 0), strides.get("ft_e1", 0)
    return Strided(total - s0 * aff("ft_e0") - s1 * aff("ft_e1"), s0, s1)


def _sizes(op: Gemm) -> tuple[int, int, int]:
    m, k = op.a.shape[::-1] if op.trans_a else op.a.shape
    return m, k, op.c.shape[1]


def gemm_loops(op: Gemm, sc: Scope) -> list[str]:
    """One point's product as loops (module docstring)."""
    m, k, n = _sizes(op)
    (base_a, ra, ca), (base_b, rb, cb), (base_c, c_s0, c_s1) = _oriented(op, sc)
    pa, pb, pc = (f"(b_{r.buffer} + ({index_expr(base, sc.names)}))"
                  for r, base in ((op.a, base_a), (op.b, base_b), (op.c, base_c)))
    types = {sc.dtype(r) for r in (op.a, op.b, op.c)}
    staged = overwrites_its_input(op, (op.a, op.b))
    ctype = sc.ctype(op.c)
    out = ["{", f"  const auto* ft_A = {pa};", f"  const auto* ft_B = {pb};"]
    if staged:   # (c overlaps a or b: computed aside, then stored)
        out.append(f"  std::unique_ptr<{ctype}[]> ft_Cs(new {ctype}[{max(m * n, 1)}]);")
        out.append(f"  auto* ft_C0 = {pc};")
        out.append("  auto* ft_C = ft_Cs.get();")
        rc, cc = n, 1
    else:
        out.append(f"  auto* ft_C = {pc};")
        rc, cc = c_s0, c_s1
    A, B, C = (f"ft_A[ft_i*{ra} + ft_p*{ca}]", f"ft_B[ft_p*{rb} + ft_j*{cb}]", f"ft_C[ft_i*{rc} + ft_j*{cc}]")
    if len(types) == 1 and types <= _VECTOR and not staged:   # (register-blocked: kernels.h)
        out.append(f"  ft_small_gemm<{ctype}>({m}, {n}, {k}, ft_A, {ra}, {ca}, ft_B, {rb}, {cb}, ft_C, {rc}, {cc}, "
                   f"{str(op.accumulate).lower()});")
    elif len(types) == 1 and types <= _VECTOR:
        init = f"ft_C0[ft_i*{c_s0} + ft_j*{c_s1}]" if staged and op.accumulate else (C if op.accumulate else "0")
        out += [f"  for (long long ft_i = 0; ft_i < {m}; ++ft_i) {{",
                f"    for (long long ft_j = 0; ft_j < {n}; ++ft_j) {C} = {init};",
                f"    for (long long ft_p = 0; ft_p < {k}; ++ft_p) {{",
                f"      const {ctype} ft_a = {A};",
                f"      for (long long ft_j = 0; ft_j < {n}; ++ft_j) {C} += ft_a * {B};",
                "    }", "  }"]
    else:   # (mixed or half types: one float64 dot product per element, stored as c's type)
        conv = lambda r, text: NATIVE.to_compute(sc.dtype(r), text)
        src = f"ft_C0[ft_i*{c_s0} + ft_j*{c_s1}]" if staged else C
        init = f"(double) {conv(op.c, src)}" if op.accumulate else "0.0"
        out += [f"  for (long long ft_i = 0; ft_i < {m}; ++ft_i) for (long long ft_j = 0; ft_j < {n}; ++ft_j) {{",
                f"    double ft_s = {init};",
                f"    for (long long ft_p = 0; ft_p < {k}; ++ft_p) "
                f"ft_s += (double) {conv(op.a, A)} * (double) {conv(op.b, B)};",
                f"    {C} = {NATIVE.from_compute(sc.dtype(op.c), f'({NATIVE.ctype[COMPUTE[sc.dtype(op.c)]]}) ft_s')};",
                "  }"]
    if staged:
        out.append(f"  for (long long ft_i = 0; ft_i < {m}; ++ft_i) for (long long ft_j = 0; ft_j < {n}; ++ft_j) "
                   f"ft_C0[ft_i*{c_s0} + ft_j*{c_s1}] = ft_C[ft_i*{n} + ft_j];")
    return out + ["}"]


def _oriented(op: Gemm, sc: Scope):
    """A, B and C as (base, row stride, column stride) of op(a) (m x k), op(b) (k x n) and c."""
    a, b, c = (strided(r, sc) for r in (op.a, op.b, op.c))
    ra, ca = (a.s1, a.s0) if op.trans_a else (a.s0, a.s1)
    rb, cb = (b.s1, b.s0) if op.trans_b else (b.s0, b.s1)
    return [a.base, ra, ca], [b.base, rb, cb], [c.base, c.s0, c.s1]


def folded_part(op: Gemm, stage: Stage, sc: Scope, point_loops) -> list[str] | None:
    """The op over every point of `stage` as fewer, bigger products (module docstring), or None
    where no dim folds (the op then runs point by point).  A dim folds into the rows when B does
    not read it and A's and C's rows stack along it (m rows a point apart), into the columns when
    A does not read it and B's and C's columns stack along it (a point's product with one row or
    column stacks at any stride: attention's scores, one dot product a point).  Each product left
    is a BLAS call when it is big and BLAS can take its strides (the points left, if any, one
    after the other, each call split among the threads: `_split_call`), else the
    register-blocked kernel, the points left shared among threads.  `point_loops(dims, parallel, work)` opens loops over `dims` and
    returns (lines, closers)."""
    dtype = sc.dtype(op.c)
    if {sc.dtype(op.a), sc.dtype(op.b)} != {dtype} or dtype not in _VECTOR \
            or op.c.buffer in (op.a.buffer, op.b.buffer):
        return None
    m, k, n = _sizes(op)
    # (the dims in the order that folds the most points: innermost first, their points closest
    # in memory, unless another order stacks more; a dilated RNN's input projection reads its
    # rows in another order than it writes them, and innermost first folded 2 rows a call)
    orders = [tuple(reversed(stage.dims))]
    if len(stage.dims) <= 4:
        orders += [o for o in itertools.permutations(stage.dims) if o != orders[0]]
    best = None
    for order in orders:
        found = _fold(order, m, n, _oriented(op, sc), sc, _bounding(stage))
        if best is None or found[0] > best[0]:
            best = found
    _, rows, cols, folded, (A, B, C) = best
    rest = [d for d in stage.dims if d not in folded]
    if not folded and m * n * k < BLAS_MIN_WORK:
        return None   # (small products point by point: loops fused with the stage's other ops)
    first = {d.var: d.start for d in folded}
    at = lambda base: index_expr(base.substitute(first) if first else base, sc.names)
    pa, pb, pc = (f"b_{r.buffer} + ({at(x[0])})" for r, x in ((op.a, A), (op.b, B), (op.c, C)))
    work = rows * cols * k if isinstance(rows, int) and isinstance(cols, int) else None
    sized = "" if work is not None else f"if (({rows}) > 0 && ({cols}) > 0) "
    blas = _blas_call(op, sc, dtype, k, A, B, C) if work is None or work >= BLAS_MIN_WORK else None
    if blas is None and not folded:
        return None
    if blas is None:
        call = [sized + f"ft_small_gemm<{NATIVE.ctype[dtype]}>({rows}, {cols}, {k}, {pa}, {A[1]}, {A[2]}, {pb}, "
                f"{B[1]}, {B[2]}, {pc}, {C[1]}, {C[2]}, {str(op.accumulate).lower()});"]
        opened, closers = point_loops(rest, True, work or BLAS_MIN_WORK)
    else:
        call = _split_call(blas, rows, cols, k, A, B, C, pa, pb, pc)
        opened, closers = point_loops(rest, False, 0)
    return [*opened, *("  " * len(closers) + line for line in call), *closers]


def _bounding(stage: Stage) -> set[str]:
    """The stage's dims that bound others (a polygon's: a ragged batch's live rows per step):
    they never fold, so that the dims left are loops around the folded products, which may
    then read them (`rows` an index over those loops)."""
    names = {d.var for d in stage.dims}
    return {v for d in stage.dims for v in (d.start.vars() | d.stop.vars()) & names}


def _fold(order, m: int, n: int, oriented, sc: Scope, bounding: set[str] = frozenset()):
    """(points folded, rows, cols, the dims folded, (A, B, C)) folding `order`'s dims in turn
    (`folded_part`), never one of `bounding`; a dim whose size is not a constant counts 1024
    points."""
    A, B, C = oriented
    rows, cols, folded, points = m, n, [], 1
    for d in order:
        if d.var in bounding:
            continue
        ca_, cb_, cc_ = (dict(aff(x[0]).terms).get(d.var, 0) for x in (A, B, C))
        if any(not isinstance(atom, str) and d.var in atom.vars() for x in (A, B, C) for atom, _ in aff(x[0]).terms):
            continue   # (read inside a floor or a mod: its points do not stack)
        span = d.stop - d.start
        size = span.const if span.is_const else index_expr(span, sc.names)
        if cb_ == 0 and ca_ and cc_ and isinstance(rows, int) and (rows == 1 or (ca_ == rows * A[1] and cc_ == rows * C[1])):
            if rows == 1:
                A[1], C[1] = ca_, cc_
            rows = rows * size if isinstance(size, int) else f"{rows}*({size})"
        elif ca_ == 0 and cb_ and cc_ and isinstance(cols, int) and (cols == 1 or (cb_ == cols * B[2] and cc_ == cols * C[2])):
            if cols == 1:
                B[2], C[2] = cb_, cc_
            cols = cols * size if isinstance(size, int) else f"{cols}*({size})"
        else:
            continue
        folded.append(d)
        points *= size if isinstance(size, int) else 1024
    return points, rows, cols, folded, (A, B, C)


def _split_call(blas, rows, cols, k: int, A, B, C, pa, pb, pc) -> list[str]:
    """A BLAS call shared among the run's threads, each calling BLAS (held to one thread:
    `executable.one_blas_thread`) on its own rows of C, or its own columns where C is wider
    than tall (each thread then packs only its share of B, the bigger operand: an RNN step's
    64 rows by a 256 x 1024 weight) or has fewer rows than threads: OpenMP's threads and
    BLAS's never compete for the cores."""
    return ["{",
            f"  const long long ft_m = {rows}, ft_n = {cols};",
            f"  #pragma omp parallel num_threads(ft_threads) if(ft_m * ft_n * {k}LL >= {2 * BLAS_MIN_WORK})",
            "  {",
            "    const long long ft_nt = omp_get_num_threads(), ft_t = omp_get_thread_num();",
            "    if ((ft_m >= 4 * ft_nt && ft_m >= ft_n) || ft_n < 4 * ft_nt) {   // (rows)",
            "      const long long ft_0 = ft_m * ft_t / ft_nt, ft_1 = ft_m * (ft_t + 1) / ft_nt;",
            f"      if (ft_1 > ft_0 && ft_n > 0) {blas('ft_1 - ft_0', 'ft_n', f'{pa} + ft_0*{A[1]}', pb, f'{pc} + ft_0*{C[1]}')}",
            "    } else {   // (columns)",
            "      const long long ft_0 = ft_n * ft_t / ft_nt, ft_1 = ft_n * (ft_t + 1) / ft_nt;",
            f"      if (ft_1 > ft_0 && ft_m > 0) {blas('ft_m', 'ft_1 - ft_0', pa, f'{pb} + ft_0*{B[2]}', f'{pc} + ft_0*{C[2]}')}",
            "    }", "  }", "}"]


def _blas_call(op: Gemm, sc: Scope, dtype: str, k: int, A, B, C):
    """`call(rows, cols, a, b, c)`, the BLAS call of a folded product's block (C++ texts), or
    None where BLAS cannot take it (no BLAS, its dtype, a matrix with no contiguous axis, C not
    row-major)."""
    if not sc.blas or dtype not in BLAS_DTYPES or C[2] != 1:
        return None
    layouts = []
    for _, r, c in (A, B):
        if c == 1:
            layouts.append(("false", r))
        elif r == 1:
            layouts.append(("true", c))
        else:
            return None
    (ta, lda), (tb, ldb) = layouts
    one, zero = ("1.0f", "0.0f") if dtype == "float32" else ("1.0", "0.0")
    return lambda rows, cols, a, b, c: (f"{BLAS_DTYPES[dtype]}({ta}, {tb}, {rows}, {cols}, {k}, {one}, {a}, {lda}, "
                                        f"{b}, {ldb}, {one if op.accumulate else zero}, {c}, {C[1]});")
