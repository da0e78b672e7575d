"""Tile operations as serial host C++ for one point of a stage: the native emitter's per-op
table (`RULES`).

A stage's point loop (`fractal.backends.native.source`) runs a point's ops in order; each
rule turns one op into nested `for` loops over its elements, the innermost axis innermost,
so that the host compiler vectorises the contiguous ones.  Addresses and values come from the
shared emitter (`fractal.backends.codegen`), so the native and CUDA backends compute alike.

* `Elementwise`, `Copy`, `Convert`: one statement per element; loads broadcast NumPy's way.
  An op that writes an element it reads as another (`overwrites_its_input`) stages its values
  first.
* `Reduce`, `SegmentReduce`: accumulators in the destination's compute type (float32 sums in
  double: never less exact than NumPy's pairwise sum), NaN-propagating max and min as NumPy's;
  a reduction along the innermost axis in `LANES` lanes, one across it a row at a time, so
  that both vectorise.
* `Gather`, `Scatter`: the index read once per row; one past the end is padding (zeros read,
  nothing written), beyond that the op records its status code (`ft_fail`) and the run stops
  after the stage (the interpreter's error, raised by the executable).  A source or index
  that overlaps the destination is copied aside first (NumPy reads it all before writing).
* `Gemm`: `fractal.backends.native.gemm` (a point's product by the register-blocked kernel;
  a stage's products folded and run on BLAS there).

For example `h[l + 1, 0:4] = tanh(g[l, 0:4])` (float32: `vecmath.h`'s tanh)::

    // h[l + 1, 0:4] = tanh(g[l, 0:4])
    for (long long ft_c0 = 0; ft_c0 < 4; ++ft_c0) {
      b_h[ft_c0 + 4*v_l + 4] = ft_tanhf(b_g[ft_c0 + 4*v_l]);
    }

Every emitted name starts with `ft_`, `v_` (tile-IR variables) or `b_` (buffers).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from fractal.lower.tile_affine import aff
from fractal.lower.tile_expr import BOOL_OPS, Binary, Const, Load, Unary, Where, expr_loads
from fractal.lower.tile_ir import Convert, Copy, Elementwise, Gather, Gemm, Reduce, Scatter, SegmentReduce

from ..codegen import Emitted, cast, emit_expr, store
from ..codegen.dialect import COMPUTE, KIND
from ..codegen.ops import GENERIC
from ..codegen.regions import aligned, coords, decode, overwrites_its_input
from .gemm import gemm_loops
from .scope import NATIVE, Scope, loops

STACK_ELEMENTS = 4096   # a staged op's values kept on the stack up to this many
LANES = 8               # accumulators of a reduction along the innermost axis


def _stored(op, sc: Scope, shape, evars, value: str) -> list[str]:
    """`dst = value` at every element; staged through a scratch array when the op overwrites
    an element it reads as another."""
    dst = op.writes[0]
    if not overwrites_its_input(op, op.reads):
        return sc.shared_loop(math.prod(shape)) + loops(shape, evars, [f"{sc.ref(dst, evars)} = {value};"])
    count, ctype = math.prod(shape), sc.ctype(dst)
    flat = " + ".join(f"{v}*{math.prod(shape[k + 1:])}" for k, v in enumerate(evars)) or "0"
    return ["{", _scratch("ft_stage", ctype, count),
            *("  " + x for x in loops(shape, evars, [f"ft_stage[{flat}] = {value};"])),
            *("  " + x for x in loops(shape, evars, [f"{sc.ref(dst, evars)} = ft_stage[{flat}];"])), "}"]


def _scratch(name: str, ctype: str, count: int) -> str:
    """A point's scratch array: on the stack when small (most are a row), else on the heap."""
    if count <= STACK_ELEMENTS:
        return f"  {ctype} {name}[{max(count, 1)}];"
    return f"  std::unique_ptr<{ctype}[]> {name}_owner(new {ctype}[{count}]); {ctype}* {name} = {name}_owner.get();"


def _squares(e, sc: Scope):
    """`e` with every `pow(x, 2)` as `x * x` (the exponent a literal, or one element of a const
    buffer of x's dtype: a variance's square): libm's pow is a scalar call, which keeps the loop
    from vectorising, and `x * x` is the correctly rounded square pow gives."""
    if isinstance(e, Unary):
        return replace(e, x=_squares(e.x, sc))
    if isinstance(e, Where):
        return replace(e, cond=_squares(e.cond, sc), a=_squares(e.a, sc), b=_squares(e.b, sc))
    if not isinstance(e, Binary):
        return e
    e = replace(e, a=_squares(e.a, sc), b=_squares(e.b, sc))
    return Binary("mul", e.a, e.a) if e.op == "pow" and _exponent(e.b, e.a, sc) == 2.0 else e


def _exponent(b, base, sc: Scope) -> float | None:
    if isinstance(b, Const):
        return float(b.value)
    loaded = {sc.buffers[r.buffer].dtype for r in expr_loads(base)}
    if not isinstance(b, Load) or len(loaded) != 1 or _has_bool(base):
        return None
    buf = sc.buffers[b.region.buffer]
    if buf.role != "const" or buf.data is None or {buf.dtype} != loaded \
            or any(a.terms for a in b.region.start) or math.prod(b.region.shape) != 1:
        return None
    return float(np.asarray(buf.data.value)[tuple(a.const for a in b.region.start)].reshape(-1)[0])


def _has_bool(e) -> bool:
    """Whether `e` computes a comparison or a logical op anywhere (its dtype is not its loads')."""
    if isinstance(e, (Load, Const)):
        return False
    if isinstance(e, Unary):
        return e.op in BOOL_OPS or _has_bool(e.x)
    if isinstance(e, Where):
        return True
    return e.op in BOOL_OPS or _has_bool(e.a) or _has_bool(e.b)


def _elementwise(op: Elementwise, sc: Scope) -> list[str]:
    shape = op.dst.shape
    evars = coords("ft_c", len(shape))
    dtypes = {n: b.dtype for n, b in sc.buffers.items()}
    value = store(emit_expr(_squares(op.expr, sc), sc.dtype(op.dst), dtypes, lambda r: sc.ref(r, aligned(r, shape, evars)), NATIVE),
                  sc.dtype(op.dst), NATIVE)
    sc.helper(*value.helpers)
    return _stored(op, sc, shape, evars, value.text)


def _convert(op: Convert, sc: Scope) -> list[str]:
    shape = op.dst.shape
    evars = coords("ft_c", len(shape))
    value = cast(sc.ref(op.src, aligned(op.src, shape, evars)), sc.dtype(op.src), sc.dtype(op.dst), NATIVE)
    sc.helper(*value.helpers)
    return _stored(op, sc, shape, evars, value.text)


def _copy(op: Copy, sc: Scope) -> list[str]:
    """`dst = reshape(transpose(src, perm), dst.shape)`: nested loops over dst where the
    transposed shape is dst's; else the trailing axes both shapes share run as nested loops
    (a row of a reshape, contiguous on both sides) and the axes before them as one flat row
    number decoded into each side's coordinates once a row."""
    src, dst = op.src, op.dst
    perm = op.perm or tuple(range(len(src.shape)))
    moved = tuple(src.shape[p] for p in perm)
    value = lambda svars: store(Emitted(NATIVE.to_compute(sc.dtype(src), sc.ref(src, svars)), sc.dtype(src)),
                                sc.dtype(dst), NATIVE).text

    def source_vars(tvars):
        svars = [None] * len(perm)
        for k, p in enumerate(perm):
            svars[p] = tvars[k]
        return tuple(svars)
    evars = coords("ft_c", len(dst.shape))
    if moved == tuple(dst.shape):
        return _stored(op, sc, dst.shape, evars, value(source_vars(evars)))
    shared = 0   # trailing axes of equal sizes
    while shared < min(len(moved), len(dst.shape)) and moved[-1 - shared] == dst.shape[-1 - shared]:
        shared += 1
    lead_d, lead_t = len(dst.shape) - shared, len(moved) - shared
    tvars = coords("ft_t", lead_t) + evars[lead_d:]
    inner = dst.shape[lead_d:]
    width = math.prod(inner)
    flat = " + ".join([f"ft_r*{width}"] + [f"{v}*{math.prod(inner[i + 1:])}" for i, v in enumerate(evars[lead_d:])])
    staged = overwrites_its_input(op, op.reads)
    ctype = sc.ctype(dst)
    write = (lambda text: f"ft_stage[{flat}] = {text};") if staged else (lambda text: f"{sc.ref(dst, evars)} = {text};")
    rows = [f"for (long long ft_r = 0; ft_r < {math.prod(dst.shape[:lead_d])}; ++ft_r) {{",
            *("  " + x for x in decode("ft_r", dst.shape[:lead_d], "ft_c") + decode("ft_r", moved[:lead_t], "ft_t")),
            *("  " + x for x in loops(inner, evars[lead_d:], [write(value(source_vars(tvars)))])), "}"]
    if not staged:
        return rows
    back = [f"for (long long ft_r = 0; ft_r < {math.prod(dst.shape[:lead_d])}; ++ft_r) {{",
            *("  " + x for x in decode("ft_r", dst.shape[:lead_d], "ft_c")),
            *("  " + x for x in loops(inner, evars[lead_d:], [f"{sc.ref(dst, evars)} = ft_stage[{flat}];"])), "}"]
    return ["{", _scratch("ft_stage", ctype, math.prod(dst.shape)), *("  " + x for x in rows + back), "}"]


# --- reductions ----------------------------------------------------------------------------------

def accumulator(dtype: str, combiner: str) -> str:
    """The compute dtype a reduction into `dtype` accumulates in."""
    compute = COMPUTE[dtype]
    return "float64" if compute == "float32" and combiner == "add" else compute


def identity(dtype: str, combiner: str) -> str:
    """C++ text of the combiner's identity in compute dtype `dtype` (an empty run's value)."""
    kind, ctype = KIND[dtype], NATIVE.ctype[dtype]
    if combiner == "add":
        return "false" if kind == "b" else f"{ctype}(0)"
    if kind == "b":
        return "false" if combiner == "max" else "true"
    if kind == "i":
        return f"std::numeric_limits<{ctype}>::{'lowest' if combiner == 'max' else 'max'}()"
    return ("-" if combiner == "max" else "") + NATIVE.infinity[dtype]


def combine(acc: str, x: str, dtype: str, combiner: str, sc: Scope) -> str:
    """The statement folding `x` into `acc` (both of compute dtype `dtype`)."""
    if combiner == "add":
        return f"{acc} = {acc} || {x};" if KIND[dtype] == "b" else f"{acc} += {x};"
    fn = "fl_maximum" if combiner == "max" else "fl_minimum"
    sc.helper(GENERIC[fn].replace("{inline}", NATIVE.inline))
    return f"{acc} = {fn}({acc}, {x});"


def _reduce(op: Reduce, sc: Scope) -> list[str]:
    """Two forms, both vectorisable without reassociating one accumulator: a reduction along
    the innermost axis keeps `LANES` accumulators (element e into lane e mod LANES, combined
    pairwise at the end); one that keeps the innermost axis accumulates a row of the trailing
    kept axes at a time."""
    src, dst = op.src, op.dst
    shape, axes = src.shape, sorted(op.axes)
    svars = coords("ft_c", len(shape))
    keepdims = len(dst.shape) == len(shape)
    acc_t = accumulator(sc.dtype(dst), op.combiner)
    ctype, ident = NATIVE.ctype[acc_t], identity(acc_t, op.combiner)

    def value(vars_):
        x = cast(sc.ref(src, vars_), sc.dtype(src), acc_t, NATIVE)
        sc.helper(*x.helpers)
        return x.text

    def stored(text, vars_):
        dvars = tuple(aff(0) if k in axes else v for k, v in enumerate(vars_)) if keepdims \
            else tuple(v for k, v in enumerate(vars_) if k not in axes)
        return f"{sc.ref(dst, dvars)} = {store(Emitted(text, acc_t), sc.dtype(dst), NATIVE).text};"

    last = len(shape) - 1
    if not axes:   # (nothing reduced: each element converted)
        return loops(shape, svars, [stored(value(svars), svars)])
    if axes[-1] == last:   # along the innermost axis: lanes
        n, outer = shape[last], axes[:-1]
        lanes = [f"ft_lane[{q}]" for q in range(LANES)]
        inner = [f"long long {svars[last]} = 0;",
                 f"for (; {svars[last]} + {LANES} <= {n}; {svars[last]} += {LANES}) {{",
                 # (the lanes are independent: said, so that GCC vectorises the loop before
                 # unrolling it, which left a NaN-propagating max as scalar branches)
                 "  #pragma omp simd",
                 f"  for (int ft_q = 0; ft_q < {LANES}; ++ft_q) {{",
                 f"    const long long ft_e = {svars[last]} + ft_q;",
                 "    " + combine("ft_lane[ft_q]", value(tuple(svars[:-1]) + ("ft_e",)), acc_t, op.combiner, sc),
                 "  }", "}",
                 f"for (; {svars[last]} < {n}; ++{svars[last]}) "
                 + combine("ft_lane[0]", value(svars), acc_t, op.combiner, sc)]
        while len(lanes) > 1:   # (pairwise)
            lanes = [f"({a}) + ({b})" if op.combiner == "add" and KIND[acc_t] != "b" else
                     _combined(a, b, acc_t, op.combiner, sc) for a, b in zip(lanes[::2], lanes[1::2])]
        body = [f"{ctype} ft_lane[{LANES}];", f"for (int ft_q = 0; ft_q < {LANES}; ++ft_q) ft_lane[ft_q] = {ident};",
                *loops([shape[a] for a in outer], [svars[a] for a in outer], ["{", *("  " + x for x in inner), "}"]),
                stored(lanes[0], svars)]
        kept = [k for k in range(len(shape)) if k not in axes]
        return loops([shape[k] for k in kept], [svars[k] for k in kept], body)
    # the innermost axis kept: a row of the kept axes after the last reduced one at a time
    trailing = list(range(axes[-1] + 1, len(shape)))
    before = [k for k in range(axes[-1]) if k not in axes]
    width = math.prod(shape[k] for k in trailing)
    row = " + ".join(f"{svars[k]}*{math.prod(shape[j] for j in trailing[i + 1:])}" for i, k in enumerate(trailing))
    body = [_scratch("ft_row", ctype, width),
            f"for (long long ft_t = 0; ft_t < {width}; ++ft_t) ft_row[ft_t] = {ident};",
            *loops([shape[a] for a in axes] + [shape[k] for k in trailing], [svars[a] for a in axes] +
                   [svars[k] for k in trailing], [combine(f"ft_row[{row}]", value(svars), acc_t, op.combiner, sc)]),
            *loops([shape[k] for k in trailing], [svars[k] for k in trailing], [stored(f"ft_row[{row}]", svars)])]
    return loops([shape[k] for k in before], [svars[k] for k in before], ["{", *("  " + x for x in body), "}"])


def _combined(a: str, b: str, dtype: str, combiner: str, sc: Scope) -> str:
    """The value `a` combined with `b` (an expression, for the lanes' final tree)."""
    if combiner == "add":
        return f"({a}) || ({b})"
    fn = "fl_maximum" if combiner == "max" else "fl_minimum"
    sc.helper(GENERIC[fn].replace("{inline}", NATIVE.inline))
    return f"{fn}({a}, {b})"


def _segment_reduce(op: SegmentReduce, sc: Scope) -> list[str]:
    """Per segment, a row of accumulators (one per element of the trailing axes) takes the
    segment's source rows in order: each element sums its rows in the order it would alone,
    and the row's loop runs along contiguous elements (vectorised; over the rows, one element
    at a time, graphsage's neighbour sums read 64 rows 256 bytes apart per element)."""
    src, dst = op.src, op.dst
    rows, rest = dst.shape[0], dst.shape[1:]
    rvars = coords("ft_c", len(dst.shape))
    width = math.prod(rest)
    flat = " + ".join(f"{v}*{math.prod(rest[k + 1:])}" for k, v in enumerate(rvars[1:])) or "0"
    acc_t = accumulator(sc.dtype(dst), op.combiner)
    x = cast(sc.ref(src, ("ft_s",) + rvars[1:]), sc.dtype(src), acc_t, NATIVE)
    sc.helper(*x.helpers)
    out = store(Emitted(f"ft_row[{flat}]", acc_t), sc.dtype(dst), NATIVE)
    seg = lambda at: f"(long long) {sc.ref(op.segments, (at,))}"
    body = [f"const long long ft_lo = {seg('ft_c0')}, ft_hi = {seg(aff('ft_c0') + 1)};",
            _scratch("ft_row", NATIVE.ctype[acc_t], width),
            f"for (long long ft_t = 0; ft_t < {width}; ++ft_t) ft_row[ft_t] = {identity(acc_t, op.combiner)};",
            "for (long long ft_s = ft_lo; ft_s < ft_hi; ++ft_s) {",
            *("  " + x for x in loops(rest, rvars[1:], [combine(f"ft_row[{flat}]", x.text, acc_t, op.combiner, sc)])),
            "}",
            *loops(rest, rvars[1:], [f"{sc.ref(dst, rvars)} = {out.text};"])]
    return [*sc.shared_loop(math.prod(src.shape)), f"for (long long ft_c0 = 0; ft_c0 < {rows}; ++ft_c0) {{",
            *("  " + x for x in body), "}"]


# --- rows through an index -----------------------------------------------------------------------

def _staged(op, region, name: str, sc: Scope):
    """(lines copying `region` into a scratch array `name` first, a function of element
    variables giving its element) where `op` writes an element of `region` it reads as another
    (a gather or scatter whose source or index overlaps its destination: NumPy reads them all
    first); else ([], the region's own element)."""
    if not overwrites_its_input(op, (region,)):
        return [], lambda evars: sc.ref(region, evars)
    shape = region.shape
    evars = coords(f"{name}_c", len(shape))
    flat = lambda vs: " + ".join(f"{v}*{math.prod(shape[k + 1:])}" for k, v in enumerate(vs)) or "0"  # noqa: E731
    lines = [_scratch(name, sc.ctype(region), math.prod(shape)).strip(),
             *loops(shape, evars, [f"{name}[{flat(evars)}] = {sc.ref(region, evars)};"])]
    return lines, lambda vs: f"{name}[{flat(vs)}]"


def _index_read(op, sc: Scope, ivars, size: int, kind: str, index_ref=None) -> list[str]:
    """Declare `ft_i`: the op's index at `ivars`, from the end where negative; `ft_pad` where it
    is one past the end; out of range records the op's status code (and pads)."""
    code = sc.code(kind, op.index.buffer)
    return [f"long long ft_i = (long long) {(index_ref or (lambda v: sc.ref(op.index, v)))(ivars)};",
            f"const bool ft_bad = ft_i < -{size} || ft_i > {size};",
            f"if (ft_bad) ft_fail(&ft_status, {code});",
            f"const bool ft_pad = ft_bad || ft_i == {size};",
            f"if (ft_i < 0) ft_i += {size};"]


def _gather(op: Gather, sc: Scope) -> list[str]:
    src, dst, a = op.src, op.dst, op.axis
    size, ni = src.shape[a], len(op.index.shape)
    dvars = coords("ft_c", len(dst.shape))
    outer, inner = dvars[:a + ni], dvars[a + ni:]
    svars = dvars[:a] + ("ft_i",) + inner
    first, src_ref = _staged(op, src, "ft_src", sc)
    more, index_ref = _staged(op, op.index, "ft_idx", sc)
    value = store(Emitted(NATIVE.to_compute(sc.dtype(src), src_ref(svars)), sc.dtype(src)), sc.dtype(dst), NATIVE)
    zero = store(Emitted("0", "int32"), sc.dtype(dst), NATIVE)
    body = [*_index_read(op, sc, dvars[a:a + ni], size, "gather", index_ref),
            *loops(dst.shape[a + ni:], inner, [f"{sc.ref(dst, dvars)} = ft_pad ? {zero.text} : {value.text};"])]
    return ["{", *first, *more, *sc.shared_loop(math.prod(dst.shape)),
            *loops(dst.shape[:a + ni], outer, ["{", *("  " + x for x in body), "}"]), "}"]


def _scatter(op: Scatter, sc: Scope) -> list[str]:
    src, dst, a = op.src, op.dst, op.axis
    size = dst.shape[a]
    svars = coords("ft_c", len(src.shape))
    outer, inner = svars[:a + 1], svars[a + 1:]
    dvars = svars[:a] + ("ft_i",) + inner
    first, src_ref = _staged(op, src, "ft_src", sc)
    more, index_ref = _staged(op, op.index, "ft_idx", sc)
    value = store(Emitted(NATIVE.to_compute(sc.dtype(src), src_ref(svars)), sc.dtype(src)), sc.dtype(dst), NATIVE)
    body = [*_index_read(op, sc, (svars[a],), size, "scatter", index_ref),
            "if (!ft_pad) {", *("  " + x for x in loops(src.shape[a + 1:], inner, [f"{sc.ref(dst, dvars)} = {value.text};"])),
            "}"]
    return ["{", *first, *more, *loops(src.shape[:a + 1], outer, ["{", *("  " + x for x in body), "}"]), "}"]


RULES = {Elementwise: _elementwise, Convert: _convert, Copy: _copy, Reduce: _reduce,
         SegmentReduce: _segment_reduce, Gather: _gather, Scatter: _scatter, Gemm: gemm_loops}


def work(op) -> int:
    """Elements (a product: multiply-adds) one point of `op` touches: what decides whether a
    stage's points are worth sharing among threads."""
    if isinstance(op, Gemm):
        m, k = op.a.shape[::-1] if op.trans_a else op.a.shape
        return max(1, m * k * op.c.shape[1])
    return max(1, max(math.prod(r.shape) for r in op.reads + op.writes))
