"""Products in host C++: a point's small product as loops the compiler vectorises
(`gemm_loops`), a stage's big ones as BLAS calls (`blas_part`).

A gemm region is a strided 2-d view: element (e0, e1) of `a[...]` sits at `base + s0*e0 +
s1*e1` (`strided`), `base` an index over the stage's variables.  `op(a)` is m x k, `op(b)`
k x n, `c` m x n.

* **Loops** (`gemm_loops`): `c[i, j] (+)= sum_p a[i, p] * b[p, j]` in the order i, p, j, so
  the innermost loop runs along a row of `b` and `c` (contiguous in a row-major buffer) and
  vectorises; an operand type other than float32/float64/ints accumulates per element in
  float64 (dot products).
* **BLAS** (`blas_part`): a real BLAS (`fractal.backends.native.blas`) through the generated
  `ft_gemm_f32`/`ft_gemm_f64`, outside any parallel loop so that BLAS owns the cores while it
  runs.  Where the stage's innermost dim stacks A's and C's rows (its coefficient in their
  offsets is `m` rows, and B does not depend on it: a weight every point shares) its points
  fold into one call of `m * points` rows, as `gemm(x[m19, 0:128, 0:64], w[0:64, 0:512])` over
  `m19 in 0:128` becomes one 16384 x 64 @ 64 x 512 call.

    // st[m19, 0:128, 0:512] = gemm(x[m19, 0:128, 0:64], w[0:64, 0:512])   (m19 folded)
    ft_gemm_f32(false, false, 128*(128 - 0), 512, 64, b_x + 8192*0, 64, b_w, 512, 0.0f, b_st + 65536*0, 512);
"""

from __future__ import annotations

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
    rows: int
    cols: int

    def unit(self) -> tuple[bool, int] | None:
        """(transposed, leading dimension) as BLAS stores it row-major, or None where neither
        axis is contiguous."""
        if self.s1 == 1 or self.cols == 1:
            return False, self.s0 if self.rows > 1 else self.cols
        if self.s0 == 1 or self.rows == 1:
            return True, self.s1 if self.cols > 1 else self.rows
        return None


def strided(region: Region, sc: Scope) -> Strided:
    total = point_offset(region, sc.buffers[region.buffer], ("ft_e0", "ft_e1"))
    strides = dict(total.terms)
    s0, s1 = strides.get("ft_e0", 0), strides.get("ft_e1", 0)
    return Strided(total - s0 * aff("ft_e0") - s1 * aff("ft_e1"), s0, s1, *region.shape)


def _sizes(op: Gemm) -> tuple[int, int, int]:
    m, k = op.a.shape[::-1] if op.trans_a else op.a.shape
    return m, k, op.c.shape[1]


def gemm_loops(op: Gemm, sc: Scope) -> list[str]:
    """One point's product as loops (module docstring)."""
    m, k, n = _sizes(op)
    a, b, c = (strided(r, sc) for r in (op.a, op.b, op.c))
    ra, ca = (a.s1, a.s0) if op.trans_a else (a.s0, a.s1)
    rb, cb = (b.s1, b.s0) if op.trans_b else (b.s0, b.s1)
    names = sc.names
    pa, pb, pc = (f"(b_{r.buffer} + ({index_expr(s.base, names)}))" for r, s in ((op.a, a), (op.b, b), (op.c, c)))
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
        rc, cc = c.s0, c.s1
    A, B, C = (f"ft_A[ft_i*{ra} + ft_p*{ca}]", f"ft_B[ft_p*{rb} + ft_j*{cb}]", f"ft_C[ft_i*{rc} + ft_j*{cc}]")
    if len(types) == 1 and types <= _VECTOR and not staged:   # (register-blocked: kernels.h)
        out.append(f"  ft_small_gemm<{ctype}>({m}, {n}, {k}, ft_A, {ra}, {ca}, ft_B, {rb}, {cb}, ft_C, {rc}, {cc}, "
                   f"{str(op.accumulate).lower()});")
    elif len(types) == 1 and types <= _VECTOR:
        init = f"ft_C0[ft_i*{c.s0} + ft_j*{c.s1}]" if staged and op.accumulate else (C if op.accumulate else "0")
        out += [f"  for (long long ft_i = 0; ft_i < {m}; ++ft_i) {{",
                f"    for (long long ft_j = 0; ft_j < {n}; ++ft_j) {C} = {init};",
                f"    for (long long ft_p = 0; ft_p < {k}; ++ft_p) {{",
                f"      const {ctype} ft_a = {A};",
                f"      for (long long ft_j = 0; ft_j < {n}; ++ft_j) {C} += ft_a * {B};",
                "    }", "  }"]
    else:   # (mixed or half types: one float64 dot product per element, stored as c's type)
        conv = lambda r, text: NATIVE.to_compute(sc.dtype(r), text)
        src = f"ft_C0[ft_i*{c.s0} + ft_j*{c.s1}]" if staged else C
        init = f"(double) {conv(op.c, src)}" if op.accumulate else "0.0"
        out += [f"  for (long long ft_i = 0; ft_i < {m}; ++ft_i) for (long long ft_j = 0; ft_j < {n}; ++ft_j) {{",
                f"    double ft_s = {init};",
                f"    for (long long ft_p = 0; ft_p < {k}; ++ft_p) "
                f"ft_s += (double) {conv(op.a, A)} * (double) {conv(op.b, B)};",
                f"    {C} = {NATIVE.from_compute(sc.dtype(op.c), f'({NATIVE.ctype[COMPUTE[sc.dtype(op.c)]]}) ft_s')};",
                "  }"]
    if staged:
        out.append(f"  for (long long ft_i = 0; ft_i < {m}; ++ft_i) for (long long ft_j = 0; ft_j < {n}; ++ft_j) "
                   f"ft_C0[ft_i*{c.s0} + ft_j*{c.s1}] = ft_C[ft_i*{n} + ft_j];")
    return out + ["}"]


def blas_part(op: Gemm, stage: Stage, sc: Scope, loop_vars) -> list[str] | None:
    """The op over every point of `stage` as BLAS calls (module docstring), or None where it
    is not worth one or BLAS cannot take it (its dtype, its strides, c overlapping a or b).
    `loop_vars(dims)` opens the point loops of the dims not folded and returns (lines, closers)."""
    dtype = sc.dtype(op.c)
    if not sc.blas or dtype not in BLAS_DTYPES or {sc.dtype(op.a), sc.dtype(op.b)} != {dtype} \
            or overwrites_its_input(op, (op.a, op.b)) or (op.c.buffer in (op.a.buffer, op.b.buffer)):
        return None
    m, k, n = _sizes(op)
    a, b, c = (strided(r, sc) for r in (op.a, op.b, op.c))
    ua, ub, uc = a.unit(), b.unit(), c.unit()
    if ua is None or ub is None or uc is None or uc[0]:
        return None
    trans_a, lda = ua[0] != op.trans_a, ua[1]
    trans_b, ldb = ub[0] != op.trans_b, ub[1]
    ldc = uc[1]
    dims, folded = list(stage.dims), []
    rows = m   # rows of one call so far (an int while every folded dim has a constant size)
    while dims and not trans_a and isinstance(rows, int):   # fold dims stacking A's and C's rows (docstring)
        d = dims[-1]
        ca, cb, cc = (dict(aff(x.base).terms).get(d.var, 0) for x in (a, b, c))
        if cb != 0 or (folded and not (folded[-1].start.is_const and folded[-1].stop.is_const)):
            break
        if not folded and m == 1 and ca >= k and cc >= n:
            lda, ldc = ca, cc   # (one row per point: rows at any stride)
        elif ca != rows * lda or cc != rows * ldc:
            break
        folded.append(dims.pop())
        span = d.stop - d.start
        rows = rows * span.const if span.is_const else f"{rows}*({index_expr(span, sc.names)})"
    if isinstance(rows, int) and rows * n * k < BLAS_MIN_WORK:
        return None
    names = sc.names
    first = {d.var: d.start for d in folded}
    at = lambda s: index_expr(s.base.substitute(first) if first else s.base, names)
    one, zero = ("1.0f", "0.0f") if dtype == "float32" else ("1.0", "0.0")
    call = (f"{BLAS_DTYPES[dtype]}({str(trans_a).lower()}, {str(trans_b).lower()}, {rows}, {n}, {k}, {one}, "
            f"b_{op.a.buffer} + ({at(a)}), {lda}, b_{op.b.buffer} + ({at(b)}), {ldb}, "
            f"{one if op.accumulate else zero}, b_{op.c.buffer} + ({at(c)}), {ldc});")
    opened, closers = loop_vars(dims)
    depth = len(closers)
    guard = "" if isinstance(rows, int) else f"if ({rows} > 0) "
    return [*opened, "  " * depth + guard + call, *closers]
