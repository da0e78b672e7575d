"""Tile operations as block-level CUDA C++: the emitter's per-op table (`RULES`).

Inside a stage's kernel (`fractal.backends.cuda.kernel`) one thread block runs one point of
the stage, or a chunk of it (`Block.chunks` blocks share a point whose stage holds one big
op).  Each rule turns one tile op into statements over the block's threads: the op's elements
(or output tiles, or reduced rows) are dealt out to the threads `ft_t0, ft_t0 + ft_tn, ...`
(`ft_t0`: this thread's rank among the point's threads, `ft_tn`: their number), and a flat
element number is decoded into one coordinate per axis (`ft_c0, ft_c1, ...`) with constant
divisors.  Addresses come
from the shared emitter (`fractal.backends.codegen`), values through its element-wise rules,
so CUDA and a host C++ backend compute alike.

* `Elementwise`, `Copy`, `Convert`: one element per thread and step; loads broadcast NumPy's way.
* `Gemm`: tiles through shared memory, on tensor cores where the operands allow (`block_gemm`).
* `Reduce`, `SegmentReduce`: one warp per output element, its lanes striding over the
  reduced elements, combined with `__shfl_xor_sync` butterflies (the NaN-propagating
  maximum and minimum of NumPy).
* `Gather`, `Scatter`: the index read per element; an index one past the end is padding
  (zeros read, nothing written); beyond that the op records its number in `ft_status`
  (`atomicMax`), which the runtime turns into the interpreter's error.  Where the source or
  index overlaps the destination, every value is read (held in registers or the block's
  scratch) before a `__syncthreads` and the writes.

For example, `h[l + 1, 0:4] = tanh(g[l, 0:4])` in a 64-thread block::

    // h[l + 1, 0:4] = tanh(g[l, 0:4])
    for (int ft_e = ft_t0; ft_e < 4; ft_e += ft_tn) {
      const long long ft_c0 = ft_e;
      b_h[ft_c0 + 4*v_l + 4] = tanhf(b_g[ft_c0 + 4*v_l]);
    }

Every name the emitter declares starts with `ft_` (tile-IR variables become `v_<name>`,
buffers `b_<name>`), so no generated name can shadow or rename a program's own.
"""

from __future__ import annotations

import math

import numpy as np

from fractal.lower.tile_affine import aff
from fractal.lower.tile_ir import Convert, Copy, Elementwise, Gather, Gemm, Reduce, Scatter, SegmentReduce

from ..codegen import CUDA, cast, emit_expr, store
from ..codegen.dialect import COMPUTE, KIND
from ..codegen.ops import GENERIC
from ..codegen.regions import aligned, coords, decode, overwrites_its_input
from .block import MAX_REGISTER_STAGING, SCRATCH, WARP, Block, deal, value_of_text
from .block_gemm import gemm_rule


def _held_back(blk: Block, count: int, dtype: str, read: list[str], write: list[str], index: bool = False) -> list[str]:
    """An op that overwrites what it reads (NumPy reads every element before writing one), in
    two passes over its `count` elements: `read` (lines computing `ft_v_at`, and with `index`
    a long long `ft_x_at`) for every element, a `__syncthreads`, then `write` (lines using
    them).  The values are held back in registers, or where they are too many, in the block's
    global scratch (such an op runs on one block a point: `kernel._chunks`)."""
    ctype = CUDA.ctype[dtype]
    per_thread = -(-count // blk.threads)
    if per_thread <= MAX_REGISTER_STAGING:
        held = f"{ctype} ft_v[{per_thread}];" + (f" long long ft_xv[{per_thread}];" if index else "")
        at_v, at_x = "ft_v[ft_k]", "ft_xv[ft_k]"
    else:
        values = -(-count * np.dtype(dtype if dtype != "bfloat16" else "uint16").itemsize // 16) * 16
        blk.scratch = max(blk.scratch, values + (8 * count if index else 0))
        base = f"static_cast<unsigned char*>(ft_scratch) + (long long)blockIdx.x * {SCRATCH}"
        held = f"{ctype}* ft_v = reinterpret_cast<{ctype}*>({base});" + \
            (f" long long* ft_xv = reinterpret_cast<long long*>({base} + {values});" if index else "")
        at_v, at_x = "ft_v[ft_e]", "ft_xv[ft_e]"
    each = f"for (int ft_e = ft_t0, ft_k = 0; ft_e < {count}; ft_e += ft_tn, ++ft_k) {{"
    named = lambda lines: ["    " + x.replace("ft_v_at", at_v).replace("ft_x_at", at_x) for x in lines]  # noqa: E731
    return ["{ " + held, "  " + each, *named(read), "  }",
            "  __syncthreads();  // every element read before one is overwritten",
            "  " + each, *named(write), "  }", "}"]


def _pointwise(op, blk: Block, value_of, extra_decode=()) -> list[str]:
    """An op computing each dst element from loads at (broadcast) coordinates `ft_c*` (and the
    lines `extra_decode` declaring others from `ft_e`)."""
    shape, count = op.writes[0].shape, math.prod(op.writes[0].shape)
    evars = coords("ft_c", len(shape))
    value = value_of(evars)
    blk.helper(*value.helpers)
    target = blk.ref(op.writes[0], evars)
    decoded = [*decode("ft_e", shape, "ft_c"), *extra_decode]
    if not overwrites_its_input(op, op.reads):
        return deal(count, [*decoded, f"{target} = {value.text};"])
    # dst = f(dst elsewhere): every value read before one is written
    return _held_back(blk, count, value.dtype, [*decoded, f"ft_v_at = {value.text};"], [*decoded, f"{target} = ft_v_at;"])


def _elementwise(op: Elementwise, blk: Block) -> list[str]:
    dtypes = {b: buf.dtype for b, buf in blk.buffers.items()}
    shape = op.dst.shape
    want = blk.dtype(op.dst)
    load = lambda r, ev=None: blk.ref(r, aligned(r, shape, ev))  # noqa: E731
    return _pointwise(op, blk, lambda ev: store(emit_expr(op.expr, want, dtypes, lambda r: load(r, ev), CUDA),
                                                want, CUDA))


def _convert(op: Convert, blk: Block) -> list[str]:
    return _pointwise(op, blk, lambda ev: cast(blk.ref(op.src, ev), blk.dtype(op.src), blk.dtype(op.dst), CUDA))


def _copy(op: Copy, blk: Block) -> list[str]:
    src, dst = op.src, op.dst
    if not op.perm and src.shape == dst.shape:
        return _pointwise(op, blk, lambda ev: cast(blk.ref(src, ev), blk.dtype(src), blk.dtype(dst), CUDA))
    # a transpose and/or reshape: the dst element's row-major number, decoded in the
    # transposed source shape, names the source element
    perm = op.perm or tuple(range(len(src.shape)))
    tshape = tuple(src.shape[p] for p in perm)
    svars = [""] * len(perm)
    for k, p in enumerate(perm):
        svars[p] = f"ft_t{k}"
    return _pointwise(op, blk, lambda ev: cast(blk.ref(src, tuple(svars)), blk.dtype(src), blk.dtype(dst), CUDA),
                      decode("ft_e", tshape, "ft_t"))


# --- reductions: a warp per output, shuffles across its lanes ------------------------------

_INT_LIMITS = {"int32": ("(-2147483647 - 1)", "2147483647"), "int64": ("(-9223372036854775807LL - 1)",
                                                                      "9223372036854775807LL")}


def _identity(combiner: str, acc: str, dst: str) -> str:
    if combiner == "add" or (dst == "bool" and combiner == "max"):
        return f"{CUDA.ctype[acc]}(0)"
    if dst == "bool":
        return f"{CUDA.ctype[acc]}(1)"
    if KIND[acc] == "f":
        return ("-" if combiner == "max" else "") + CUDA.infinity[acc]
    return _INT_LIMITS[acc][0 if combiner == "max" else 1]


def _combine(combiner: str, a: str, b: str, blk: Block) -> str:
    if combiner == "add":
        return f"{a} + {b}"
    name = "fl_maximum" if combiner == "max" else "fl_minimum"
    blk.helper(GENERIC[name].replace("{inline}", CUDA.inline))
    return f"{name}({a}, {b})"


def _warp_reduce(blk: Block, outputs: int, head: list[str], inner: list[str], dst: str, combiner: str,
                 acc: str, dst_dtype: str) -> list[str]:
    """The shared skeleton: warps over outputs, lanes over the reduced elements, a butterfly."""
    warps = blk.threads // WARP
    T = CUDA.ctype[acc]
    value = store(value_of_text("ft_acc", acc), dst_dtype, CUDA).text
    return [
        f"for (int ft_o = ft_chunk * {warps} + threadIdx.x / {WARP}; ft_o < {outputs}; ft_o += ft_chunks * {warps}) {{",
        *("  " + x for x in head),
        f"  {T} ft_acc = {_identity(combiner, acc, dst_dtype)};",
        *("  " + x for x in inner),
        f"  for (int ft_s = {WARP // 2}; ft_s > 0; ft_s >>= 1) "
        f"ft_acc = {_combine(combiner, 'ft_acc', '__shfl_xor_sync(0xffffffffu, ft_acc, ft_s)', blk)};",
        f"  if (threadIdx.x % {WARP} == 0) {dst} = {value};",
        "}",
    ]


def _acc_dtype(dst: str) -> str:
    return "int32" if dst == "bool" else COMPUTE[dst]


def _reduce(op: Reduce, blk: Block) -> list[str]:
    shape, axes = op.src.shape, set(op.axes)
    outer = [n for a, n in enumerate(shape) if a not in axes]
    inner = [n for a, n in enumerate(shape) if a in axes]
    src_vars, o, i = [], iter(coords("ft_u", len(outer))), iter(coords("ft_w", len(inner)))
    for a in range(len(shape)):
        src_vars.append(next(i) if a in axes else next(o))
    keep = len(op.dst.shape) == len(shape)
    o = iter(coords("ft_u", len(outer)))
    dst_vars = [aff(0) if a in axes else next(o) for a in range(len(shape))] if keep else coords("ft_u", len(outer))
    dst_dtype = blk.dtype(op.dst)
    acc = _acc_dtype(dst_dtype)
    x = cast(blk.ref(op.src, tuple(src_vars)), blk.dtype(op.src), acc, CUDA).text
    loop = [f"for (int ft_i = threadIdx.x % {WARP}; ft_i < {math.prod(inner)}; ft_i += {WARP}) {{",
            *("  " + y for y in decode("ft_i", inner, "ft_w")),
            f"  ft_acc = {_combine(op.combiner, 'ft_acc', x, blk)};", "}"]
    return _warp_reduce(blk, math.prod(outer), decode("ft_o", outer, "ft_u"), loop,
                        blk.ref(op.dst, tuple(dst_vars)), op.combiner, acc, dst_dtype)


def _segment_reduce(op: SegmentReduce, blk: Block) -> list[str]:
    shape = op.dst.shape  # (rows, rest...)
    rest = coords("ft_u", len(shape))[1:]
    dst_dtype = blk.dtype(op.dst)
    acc = _acc_dtype(dst_dtype)
    x = cast(blk.ref(op.src, ("ft_i",) + rest), blk.dtype(op.src), acc, CUDA).text
    head = [*decode("ft_o", shape, "ft_u"),
            f"const long long ft_lo = {blk.ref(op.segments, ('ft_u0',))}, "
            f"ft_hi = {blk.ref(op.segments, (aff('ft_u0') + 1,))};"]
    loop = [f"for (long long ft_i = ft_lo + threadIdx.x % {WARP}; ft_i < ft_hi; ft_i += {WARP}) "
            f"ft_acc = {_combine(op.combiner, 'ft_acc', x, blk)};"]
    return _warp_reduce(blk, math.prod(shape), head, loop, blk.ref(op.dst, coords("ft_u", len(shape))),
                        op.combiner, acc, dst_dtype)


# --- gather and scatter through index buffers ----------------------------------------------

def _status(blk: Block, op) -> int:
    blk.status.append((type(op).__name__.lower(), op.index.buffer))
    return len(blk.status)


def _gather(op: Gather, blk: Block) -> list[str]:
    axis, q, size = op.axis, len(op.index.shape), op.src.shape[op.axis]
    evars = coords("ft_c", len(op.dst.shape))
    src_vars = evars[:axis] + ("ft_x",) + evars[axis + q:]
    dst_dtype = blk.dtype(op.dst)
    value = cast(blk.ref(op.src, src_vars), blk.dtype(op.src), dst_dtype, CUDA).text
    zero = store(value_of_text("0", "int32"), dst_dtype, CUDA).text
    code, target, count = _status(blk, op), blk.ref(op.dst, evars), math.prod(op.dst.shape)
    read = [*decode("ft_e", op.dst.shape, "ft_c"),
            f"long long ft_x = {blk.ref(op.index, evars[axis:axis + q])};",
            f"if (ft_x < -{size} || ft_x >= {size}) {{  // one past the end: padding, zeros",
            f"  if (ft_x != {size}) atomicMax(&ft_status[0], {code});"]
    if not overwrites_its_input(op, op.reads):
        return deal(count, [*read, f"  {target} = {zero};", "} else {",
                            f"  if (ft_x < 0) ft_x += {size};", f"  {target} = {value};", "}"])
    # dst overlaps its source or index: every value read before one element is written
    return _held_back(blk, count, dst_dtype,
                      [*read, f"  ft_v_at = {zero};", "} else {", f"  if (ft_x < 0) ft_x += {size};",
                       f"  ft_v_at = {value};", "}"],
                      [*decode("ft_e", op.dst.shape, "ft_c"), f"{target} = ft_v_at;"])


def _scatter(op: Scatter, blk: Block) -> list[str]:
    axis, q, size = op.axis, len(op.index.shape), op.dst.shape[op.axis]
    svars = coords("ft_c", len(op.src.shape))
    dst_vars = svars[:axis] + ("ft_x",) + svars[axis + q:]
    value = cast(blk.ref(op.src, svars), blk.dtype(op.src), blk.dtype(op.dst), CUDA).text
    code, count = _status(blk, op), math.prod(op.src.shape)
    index = [*decode("ft_e", op.src.shape, "ft_c"),
             f"long long ft_x = {blk.ref(op.index, svars[axis:axis + q])};",
             f"if (ft_x < -{size} || ft_x > {size}) atomicMax(&ft_status[0], {code});"]
    if not overwrites_its_input(op, op.reads):
        return deal(count, [*index,
                            f"else if (ft_x != {size}) {{  // one past the end: padding, nothing written",
                            f"  if (ft_x < 0) ft_x += {size};",
                            f"  {blk.ref(op.dst, dst_vars)} = {value};",
                            "}"])
    # dst overlaps what it reads (its source or its index): every value and index read before
    # one element is written
    return _held_back(blk, count, blk.dtype(op.dst),
                      [*index, f"if (ft_x < -{size} || ft_x >= {size}) ft_x_at = -1;  // (nothing written)",
                       f"else {{ if (ft_x < 0) ft_x += {size}; ft_x_at = ft_x; ft_v_at = {value}; }}"],
                      [*decode("ft_e", op.src.shape, "ft_c"), "const long long ft_x = ft_x_at;",
                       f"if (ft_x >= 0) {blk.ref(op.dst, dst_vars)} = ft_v_at;"], index=True)


# tile op -> rule(op, block) -> lines of C++
RULES = {Elementwise: _elementwise, Copy: _copy, Convert: _convert, Gemm: gemm_rule, Reduce: _reduce,
         SegmentReduce: _segment_reduce, Gather: _gather, Scatter: _scatter}
