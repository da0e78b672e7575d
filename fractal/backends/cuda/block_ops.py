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
* `Gemm`: output tiles of `tm x tn` staged through shared memory `tk` columns at a time (both
  operands, the A tile transposed and padded by one column against bank conflicts), each
  thread accumulating `ceil(tm*tn / threads)` outputs in registers; a `__syncthreads` before a
  tile is overwritten and after it is filled.
* `Reduce`, `SegmentReduce`: one warp per output element, its lanes striding over the
  reduced elements, combined with `__shfl_xor_sync` butterflies (the NaN-propagating
  maximum and minimum of NumPy).
* `Gather`, `Scatter`: the index read per element; an index one past the end is padding
  (zeros read, nothing written); beyond that the op records its number in `ft_status`
  (`atomicMax`), which the runtime turns into the interpreter's error.

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
from dataclasses import dataclass, field

import numpy as np

from fractal.lang.errors import UnsupportedError
from fractal.lower.hardware import GpuArch
from fractal.lower.tile_affine import aff
from fractal.lower.tile_ir import (Buffer, Convert, Copy, Elementwise, Gather, Gemm, Reduce, Region, Scatter,
                                   SegmentReduce)

from ..codegen import CUDA, Emitted, cast, emit_expr, offset, store
from ..codegen.dialect import COMPUTE, KIND
from ..codegen.ops import GENERIC
from .mma import DEVICE_CODE as MMA_CODE
from .mma import MMAS

WARP = 32
MAX_REGISTER_STAGING = 8  # values per thread an op that overwrites what it reads holds back


@dataclass
class Block:
    """What the rules need of the kernel: buffers, C++ names, threads, helpers collected."""

    buffers: dict[str, Buffer]
    names: dict[str, str]            # tile-IR variable -> C++ name
    threads: int
    chunks: int = 1
    helpers: list[str] = field(default_factory=list)
    shared: dict[str, str] = field(default_factory=dict)   # shared array name -> declaration
    status: list[tuple[str, str]] = field(default_factory=list)  # per code - 1: (op kind, index buffer)
    gpu: GpuArch | None = None       # the tensor-core shapes it has (None: SIMT GEMMs only)
    fold: tuple[str, str, str] | None = None  # a GEMM's rows span the points of this dim: (var, lo, n)
    tf32: bool = False               # float32 GEMMs may run on tensor cores in TF32 (the user's choice)

    def ref(self, region: Region, evars) -> str:
        return f"b_{region.buffer}[{offset(region, self.buffers[region.buffer], evars, self.names)}]"

    def dtype(self, region: Region) -> str:
        return self.buffers[region.buffer].dtype.name

    def helper(self, *texts: str) -> None:
        self.helpers.extend(texts)


def _decode(var: str, flat: str, shape, prefix: str) -> list[str]:
    """Lines declaring `prefix0, prefix1, ...` (row-major coordinates of `flat` in `shape`)."""
    lines, inner = [], 1
    for k in reversed(range(len(shape))):
        n = shape[k]
        if n == 1:
            lines.append(f"const long long {prefix}{k} = 0;")
            continue
        text = flat if inner == 1 else f"{flat} / {inner}"
        if k > 0:
            text = f"({text}) % {n}" if inner != 1 else f"{flat} % {n}"
        lines.append(f"const long long {prefix}{k} = {text};")
        inner *= n
    return lines[::-1]


def _loop(count: int, body: list[str], var: str = "ft_e") -> list[str]:
    return [f"for (int {var} = ft_t0; {var} < {count}; {var} += ft_tn) {{", *("  " + x for x in body), "}"]


def _evars(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{k}" for k in range(n))


def _aligned(region: Region, dst_shape, evars) -> tuple:
    """Element variables of a load broadcast (NumPy's rules, aligned right) to `dst_shape`."""
    shape, lead = region.shape, len(dst_shape) - len(region.shape)
    return tuple(aff(0) if n == 1 and dst_shape[lead + k] != 1 else evars[lead + k] for k, n in enumerate(shape))


def _overwrites_its_input(op, reads) -> bool:
    """Whether an op may write an element of its destination that it reads as another one (a
    read of exactly the destination region is the element itself, read first)."""
    dst = op.writes[0]
    return any(r.buffer == dst.buffer and r != dst and not _disjoint(r, dst) for r in reads)


def _disjoint(a: Region, b: Region) -> bool:
    """Whether two regions of one buffer share no element at any point: on some axis their
    starts are a constant apart and their index ranges do not meet (a state's next row)."""
    for start_a, start_b, size_a, size_b, stride_a, stride_b in zip(a.start, b.start, a.size, b.size,
                                                                   a.stride, b.stride):
        gap = start_a - start_b
        if gap.terms:
            continue
        span_a = 1 if size_a is None else (size_a - 1) * stride_a + 1
        span_b = 1 if size_b is None else (size_b - 1) * stride_b + 1
        if gap.const >= span_b or -gap.const >= span_a or (size_a == 0 or size_b == 0):
            return True
    return False


def _pointwise(op, blk: Block, value_of, extra_decode=()) -> list[str]:
    """An op computing each dst element from loads at (broadcast) element variables `e*`
    (and the lines `extra_decode` declaring others from `ft_e`)."""
    shape, count = op.writes[0].shape, math.prod(op.writes[0].shape)
    evars = _evars("ft_c", len(shape))
    value = value_of(evars)
    blk.helper(*value.helpers)
    target = blk.ref(op.writes[0], evars)
    decode = [*_decode("ft_c", "ft_e", shape, "ft_c"), *extra_decode]
    if not _overwrites_its_input(op, op.reads):
        return _loop(count, [*decode, f"{target} = {value.text};"])
    # dst = f(dst elsewhere): NumPy reads every element before writing one; so does the block
    per_thread = -(-count // (blk.threads * blk.chunks))
    if per_thread > MAX_REGISTER_STAGING or blk.chunks > 1:
        raise UnsupportedError(f"the CUDA emitter cannot yet run `{op}`: it overwrites elements it reads, "
                               f"{count} of them (at most {blk.threads * MAX_REGISTER_STAGING})")
    decode = ["    " + x for x in decode]
    each = f"for (int ft_e = ft_t0, ft_k = 0; ft_e < {count}; ft_e += ft_tn, ++ft_k) {{"
    return [f"{{ {CUDA.ctype[value.dtype]} ft_v[{per_thread}];",
            "  " + each, *decode, f"    ft_v[ft_k] = {value.text};", "  }",
            "  __syncthreads();  // every element read before one is overwritten",
            "  " + each, *decode, f"    {target} = ft_v[ft_k];", "  }", "}"]


def _elementwise(op: Elementwise, blk: Block) -> list[str]:
    dtypes = {b: buf.dtype for b, buf in blk.buffers.items()}
    shape = op.dst.shape
    want = blk.dtype(op.dst)
    load = lambda r, ev=None: blk.ref(r, _aligned(r, shape, ev))  # noqa: E731
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
                      _decode("ft_t", "ft_e", tshape, "ft_t"))


# --- GEMM: shared-memory tiles, register accumulators ------------------------------------

@dataclass(frozen=True)
class GemmTile:
    """An output tile `tm x tn` and the `tk` columns of A (rows of B) staged per step."""

    tm: int
    tn: int
    tk: int


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def gemm_tile(m: int, n: int, k: int, threads: int, mma: bool = False, mma_k: int = 16) -> GemmTile:
    """Roller-style, by construction: a tile no larger than the matrix (rounded up to powers
    of two), at most 32 rows, and columns enough that the block's threads each own at most 8
    outputs (a tall-skinny recurrent step gets a wide tile); 16 reduction columns at a time.
    On tensor cores (`mma`): up to 64 x 64 in whole 16 x 8 fragments, 16 columns a step."""
    if mma:
        return GemmTile(min(64, -(-m // 16) * 16), min(64, -(-n // 8) * 8), mma_k)
    tm = min(32, _pow2(m))
    tn = min(_pow2(n), max(32, threads * 8 // tm), 128)
    return GemmTile(tm, tn, min(16, _pow2(k)))


def gemm_shared_bytes(tile: GemmTile, compute: str) -> int:
    return tile.tk * (tile.tm + 1 + tile.tn + 1) * np.dtype(compute).itemsize


FOLDED_ROWS = 64  # the rows a folded GEMM's tiles are chosen for (its points are only known at launch)


def _tile_rows(blk: Block, m: int) -> int:
    return m if blk.fold is None else m * FOLDED_ROWS


def _rows(blk: Block, m: int) -> tuple[str, str]:
    """(C++ count of a GEMM's rows, the line naming row `ft_gr`'s point and its row `ft_gm`):
    `m`, or where the block folds a dim's points into the rows, `m` per point."""
    if blk.fold is None:
        return str(m), "const long long ft_gm = ft_gr;"
    var, lo, count = blk.fold
    return f"{m} * {count}", f"const long long {blk.names[var]} = {lo} + ft_gr / {m}, ft_gm = ft_gr % {m};"


# operand dtype -> (mma.sync kind, the GPU record's name for its shapes, K of one step)
TENSOR_CORE = {"float16": ("f16", "float16", 16), "bfloat16": ("bf16", "bfloat16", 16),
               "float32": ("tf32", "tf32", 8)}


MMA_STEP = {"f16": (16, "m16n8k16"), "bf16": (16, "m16n8k16"), "tf32": (8, "m16n8k8")}  # K a step, shape


def tensor_core(op: Gemm, dtypes, gpu: GpuArch | None, tf32: bool = False) -> str | None:
    """The mma.sync kind ("f16", "bf16", "tf32") a GEMM runs on: half-precision operands where the
    GPU has the shape, float32 ones only where the user allows TF32."""
    a, b = dtypes[op.a.buffer], dtypes[op.b.buffer]
    if gpu is None or a != b or a not in TENSOR_CORE or (a == "float32" and not tf32):
        return None
    kind, shapes, _ = TENSOR_CORE[a]
    return kind if gpu.mma(shapes) else None


def _gemm(op: Gemm, blk: Block) -> list[str]:
    (m, n), k = op.c.shape, (op.a.shape[0] if op.trans_a else op.a.shape[1])
    kind = tensor_core(op, {b: buf.dtype.name for b, buf in blk.buffers.items()}, blk.gpu, blk.tf32)
    if kind is not None:
        return _gemm_mma(op, blk, kind, m, n, k)
    compute = COMPUTE[blk.dtype(op.c)]
    if compute == "bool":
        raise UnsupportedError(f"the CUDA emitter has no GEMM of booleans (`{op}`)")
    t, T = gemm_tile(_tile_rows(blk, m), n, k, blk.threads), CUDA.ctype[compute]
    # one output tile reads all its operands (the last barrier) before any thread writes; with
    # more, a tile could read what an earlier one wrote
    if _overwrites_its_input(op, (op.a, op.b)) and (blk.chunks > 1 or blk.fold or -(-m // t.tm) * -(-n // t.tn) > 1):
        raise UnsupportedError(f"the CUDA emitter cannot yet run `{op}`: its output overlaps an operand "
                               f"and spans several tiles")
    # operands already in the compute type stream in by cp.async, double-buffered, where the
    # reduction takes more than one step (the copy of step k + 1 overlaps the products of step k)
    streamed = k > t.tk and blk.dtype(op.a) == compute == blk.dtype(op.b) and compute in ("float32", "float64")
    stages = 2 if streamed else 1
    sa, sb = (f"ft_as{'2' if streamed else ''}_{compute}", f"ft_bs{'2' if streamed else ''}_{compute}")
    for name, rows, cols in ((sa, stages * t.tk, t.tm + 1), (sb, stages * t.tk, t.tn + 1)):
        old = blk.shared.get(name, (T, 0, 0))
        blk.shared[name] = (T, max(old[1], rows), max(old[2], cols))
    per, tiles_n = -(-t.tm * t.tn // blk.threads), -(-n // t.tn)
    rows, point = _rows(blk, m)
    tiles = f"({rows} + {t.tm - 1}) / {t.tm} * {tiles_n}"
    a_at = ("ft_gk", "ft_gm") if op.trans_a else ("ft_gm", "ft_gk")
    b_at = ("ft_gn", "ft_gk") if op.trans_b else ("ft_gk", "ft_gn")
    out = blk.ref(op.c, ("ft_gm", "ft_gn"))
    total = f"{cast(out, blk.dtype(op.c), compute, CUDA).text} + ft_acc[ft_r]" if op.accumulate else "ft_acc[ft_r]"
    value = store(_as(total, compute), blk.dtype(op.c), CUDA).text
    th = blk.threads
    a_fill = (f"for (int ft_i = threadIdx.x; ft_i < {t.tm * t.tk}; ft_i += {th}) {{",
              f"  const long long ft_gr = ft_row0 + ft_i / {t.tk}, ft_gk = {{k0}} + ft_i % {t.tk};",
              f"  {{to}} = ft_gr < {rows} && ft_gk < {k}", "{a}", "}")
    b_fill = (f"for (int ft_i = threadIdx.x; ft_i < {t.tk * t.tn}; ft_i += {th}) {{",
              f"  const long long ft_gk = {{k0}} + ft_i / {t.tn}, ft_gn = ft_col0 + ft_i % {t.tn};",
              f"  {{to}} = ft_gk < {k} && ft_gn < {n}", "{b}", "}")
    products = [
        f"for (int ft_r = 0; ft_r < {per}; ++ft_r) {{",
        f"  const int ft_o = threadIdx.x + ft_r * {th};",
        f"  if (ft_o < {t.tm * t.tn}) {{",
        "#pragma unroll",
        f"    for (int ft_k = 0; ft_k < {t.tk}; ++ft_k) "
        f"ft_acc[ft_r] += {sa}[{{s}}ft_k][ft_o / {t.tn}] * {sb}[{{s}}ft_k][ft_o % {t.tn}];",
        "  }",
        "}"]
    if streamed:
        blk.helper("#include <cuda_pipeline.h>")
        a_ref, b_ref = blk.ref(op.a, a_at), blk.ref(op.b, b_at)

        def fill(lines, k0, stage, shared, ref, src, at):
            head, first, cond, _, close = lines
            dst = f"&{shared}[{stage} * {t.tk} + {at}]"
            return [head, first.replace("{k0}", k0),
                    f"  const bool ft_in = {cond.split(' = ', 1)[1]};",
                    "  if (ft_in) {", *(["    " + point] if ref is a_ref else []),
                    f"    __pipeline_memcpy_async({dst}, &{ref}, sizeof({T}));",
                    f"  }} else __pipeline_memcpy_async({dst}, b_{src}, sizeof({T}), sizeof({T}));  // zeros",
                    close]

        def step(k0, stage):
            return (fill(a_fill, k0, stage, sa, a_ref, op.a.buffer, f"ft_i % {t.tk}][ft_i / {t.tk}")
                    + fill(b_fill, k0, stage, sb, b_ref, op.b.buffer, f"ft_i / {t.tn}][ft_i % {t.tn}"))
        loop = [*step("0", "0"), "__pipeline_commit();",
                f"for (int ft_k0 = 0; ft_k0 < {k}; ft_k0 += {t.tk}) {{",
                f"  const int ft_s = ft_k0 / {t.tk} % 2;",
                f"  if (ft_k0 + {t.tk} < {k}) {{",
                *("    " + x for x in step(f"ft_k0 + {t.tk}", "(ft_s ^ 1)")),
                "  }",
                "  __pipeline_commit();",
                "  __pipeline_wait_prior(1);  // this step's copies have landed (the next step's may not)",
                "  __syncthreads();  // ... in every thread's part of the tiles",
                *("  " + x.replace("{s}", f"ft_s * {t.tk} + ") for x in products),
                "  __syncthreads();  // the tiles are read before the step after next refills them",
                "}"]
    else:
        a = cast(blk.ref(op.a, a_at), blk.dtype(op.a), compute, CUDA).text
        b = cast(blk.ref(op.b, b_at), blk.dtype(op.b), compute, CUDA).text
        loop = [f"for (int ft_k0 = 0; ft_k0 < {k}; ft_k0 += {t.tk}) {{",
                "  __syncthreads();  // the last step's tiles are read",
                *("  " + x for x in (a_fill[0], a_fill[1].replace("{k0}", "ft_k0"), "  " + point,
                                     a_fill[2].replace("{to}", f"{sa}[ft_i % {t.tk}][ft_i / {t.tk}]")
                                     + f" ? {a} : {T}(0);", a_fill[4])),
                *("  " + x for x in (b_fill[0], b_fill[1].replace("{k0}", "ft_k0"),
                                     b_fill[2].replace("{to}", f"{sb}[ft_i / {t.tn}][ft_i % {t.tn}]")
                                     + f" ? {b} : {T}(0);", b_fill[4])),
                "  __syncthreads();  // the tiles are filled",
                *("  " + x.replace("{s}", "") for x in products),
                "}"]
    return [
        f"for (long long ft_tile = ft_chunk; ft_tile < {tiles}; ft_tile += ft_chunks) {{",
        f"  const long long ft_row0 = ft_tile / {tiles_n} * {t.tm};",
        f"  const int ft_col0 = ft_tile % {tiles_n} * {t.tn};",
        f"  {T} ft_acc[{per}];",
        f"  for (int ft_r = 0; ft_r < {per}; ++ft_r) ft_acc[ft_r] = {T}(0);",
        *("  " + x for x in loop),
        f"  for (int ft_r = 0; ft_r < {per}; ++ft_r) {{",
        f"    const int ft_o = threadIdx.x + ft_r * {th};",
        f"    const long long ft_gr = ft_row0 + ft_o / {t.tn}, ft_gn = ft_col0 + ft_o % {t.tn};",
        f"    if (ft_o < {t.tm * t.tn} && ft_gr < {rows} && ft_gn < {n}) {{",
        f"      {point}",
        f"      {out} = {value};",
        "    }",
        "  }",
        "}",
    ]


def _gemm_mma(op: Gemm, blk: Block, kind: str, m: int, n: int, k: int) -> list[str]:
    """A GEMM on tensor cores: output tiles of 16 x 8 fragments dealt out to the warps, both
    operand tiles staged in shared memory a step of K at a time (16 for half precision, 8 for
    TF32; rows padded by 8 elements against bank conflicts), fp32 accumulators in registers
    (`fractal.backends.cuda.mma`; TF32 operands are rounded as the loaders fill the fragments)."""
    step, shape = MMA_STEP[kind]
    t = gemm_tile(_tile_rows(blk, m), n, k, blk.threads, mma=True, mma_k=step)
    if _overwrites_its_input(op, (op.a, op.b)) and (blk.chunks > 1 or blk.fold or -(-m // t.tm) * -(-n // t.tn) > 1):
        raise UnsupportedError(f"the CUDA emitter cannot yet run `{op}`: its output overlaps an operand "
                               f"and spans several tiles")
    half = blk.dtype(op.a)
    T = CUDA.ctype[half]
    sa, sb = f"ft_mma_a_{half}", f"ft_mma_b_{half}"
    for name, rows, cols in ((sa, t.tm, t.tk + 8), (sb, t.tk, t.tn + 8)):
        old = blk.shared.get(name, (T, 0, 0))
        blk.shared[name] = (T, max(old[1], rows), max(old[2], cols))
    lda, ldb = blk.shared[sa][2], blk.shared[sb][2]
    blk.helper(MMA_CODE.strip())
    warps, frags_n = blk.threads // WARP, t.tn // 8
    frags = t.tm // 16 * frags_n
    per, tiles_n = -(-frags // warps), -(-n // t.tn)
    rows, point = _rows(blk, m)
    tiles = f"({rows} + {t.tm - 1}) / {t.tm} * {tiles_n}"
    a_at = ("ft_gk", "ft_gm") if op.trans_a else ("ft_gm", "ft_gk")
    b_at = ("ft_gn", "ft_gk") if op.trans_b else ("ft_gk", "ft_gn")
    zero = store(_as("0.0f", "float32"), half, CUDA).text
    out = blk.ref(op.c, ("ft_gm", "ft_gn"))
    total = (f"{cast(out, blk.dtype(op.c), 'float32', CUDA).text} + ft_acc[ft_f][ft_i]" if op.accumulate
             else "ft_acc[ft_f][ft_i]")
    value = store(_as(total, "float32"), blk.dtype(op.c), CUDA).text
    th, helper = blk.threads, MMAS[kind].helper
    load_a, load_b = (("ft_load_a_m16n8k8_tf32", "ft_load_b_m16n8k8_tf32_row") if kind == "tf32" else
                      ("ft_load_a_m16n8k16", "ft_load_b_m16n8k16_row"))
    return [
        f"for (long long ft_tile = ft_chunk; ft_tile < {tiles}; ft_tile += ft_chunks) {{  // tensor cores: mma.sync {shape}",
        f"  const long long ft_row0 = ft_tile / {tiles_n} * {t.tm};",
        f"  const int ft_col0 = ft_tile % {tiles_n} * {t.tn};",
        f"  const int ft_warp = threadIdx.x / {WARP}, ft_lane = threadIdx.x % {WARP};",
        f"  float ft_acc[{per}][4];",
        f"  for (int ft_f = 0; ft_f < {per}; ++ft_f) for (int ft_i = 0; ft_i < 4; ++ft_i) ft_acc[ft_f][ft_i] = 0.0f;",
        f"  for (int ft_k0 = 0; ft_k0 < {k}; ft_k0 += {step}) {{",
        "    __syncthreads();  // the last step's tiles are read",
        f"    for (int ft_j = threadIdx.x; ft_j < {t.tm * step}; ft_j += {th}) {{",
        f"      const long long ft_gr = ft_row0 + ft_j / {step}, ft_gk = ft_k0 + ft_j % {step};",
        f"      {point}",
        f"      {sa}[ft_j / {step}][ft_j % {step}] = ft_gr < {rows} && ft_gk < {k} ? {blk.ref(op.a, a_at)} : {zero};",
        "    }",
        f"    for (int ft_j = threadIdx.x; ft_j < {step * t.tn}; ft_j += {th}) {{",
        f"      const long long ft_gk = ft_k0 + ft_j / {t.tn}, ft_gn = ft_col0 + ft_j % {t.tn};",
        f"      {sb}[ft_j / {t.tn}][ft_j % {t.tn}] = ft_gk < {k} && ft_gn < {n} ? {blk.ref(op.b, b_at)} : {zero};",
        "    }",
        "    __syncthreads();  // the tiles are filled",
        f"    for (int ft_f = 0; ft_f < {per}; ++ft_f) {{",
        f"      const int ft_frag = ft_warp + ft_f * {warps};  // (the same in every lane of a warp)",
        f"      if (ft_frag < {frags}) {{",
        "        unsigned ft_a[4], ft_b[2];",
        f"        {load_a}(ft_a, &{sa}[ft_frag / {frags_n} * 16][0], {lda}, ft_lane);",
        f"        {load_b}(ft_b, &{sb}[0][ft_frag % {frags_n} * 8], {ldb}, ft_lane);",
        f"        {helper}(ft_acc[ft_f], ft_a, ft_b, ft_acc[ft_f]);",
        "      }",
        "    }",
        "  }",
        f"  for (int ft_f = 0; ft_f < {per}; ++ft_f) {{",
        f"    const int ft_frag = ft_warp + ft_f * {warps};",
        f"    if (ft_frag < {frags}) for (int ft_i = 0; ft_i < 4; ++ft_i) {{",
        "      const ft_rc ft_at = ft_frag_c_m16n8(ft_lane, ft_i);",
        f"      const long long ft_gr = ft_row0 + ft_frag / {frags_n} * 16 + ft_at.row, "
        f"ft_gn = ft_col0 + ft_frag % {frags_n} * 8 + ft_at.col;",
        f"      if (ft_gr < {rows} && ft_gn < {n}) {{",
        f"        {point}",
        f"        {out} = {value};",
        "      }",
        "    }",
        "  }",
        "}",
    ]


def _as(text: str, dtype: str) -> Emitted:
    return Emitted(text, dtype)


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
    value = store(_as("ft_acc", acc), dst_dtype, CUDA).text
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
    src_vars, o, i = [], iter(_evars("ft_u", len(outer))), iter(_evars("ft_w", len(inner)))
    for a in range(len(shape)):
        src_vars.append(next(i) if a in axes else next(o))
    keep = len(op.dst.shape) == len(shape)
    o = iter(_evars("ft_u", len(outer)))
    dst_vars = [aff(0) if a in axes else next(o) for a in range(len(shape))] if keep else _evars("ft_u", len(outer))
    dst_dtype = blk.dtype(op.dst)
    acc = _acc_dtype(dst_dtype)
    x = cast(blk.ref(op.src, tuple(src_vars)), blk.dtype(op.src), acc, CUDA).text
    loop = [f"for (int ft_i = threadIdx.x % {WARP}; ft_i < {math.prod(inner)}; ft_i += {WARP}) {{",
            *("  " + y for y in _decode("ft_w", "ft_i", inner, "ft_w")),
            f"  ft_acc = {_combine(op.combiner, 'ft_acc', x, blk)};", "}"]
    return _warp_reduce(blk, math.prod(outer), _decode("ft_u", "ft_o", outer, "ft_u"), loop,
                        blk.ref(op.dst, tuple(dst_vars)), op.combiner, acc, dst_dtype)


def _segment_reduce(op: SegmentReduce, blk: Block) -> list[str]:
    shape = op.dst.shape  # (rows, rest...)
    rest = _evars("ft_u", len(shape))[1:]
    dst_dtype = blk.dtype(op.dst)
    acc = _acc_dtype(dst_dtype)
    x = cast(blk.ref(op.src, ("ft_i",) + rest), blk.dtype(op.src), acc, CUDA).text
    head = [*_decode("ft_u", "ft_o", shape, "ft_u"),
            f"const long long ft_lo = {blk.ref(op.segments, ('ft_u0',))}, "
            f"ft_hi = {blk.ref(op.segments, (aff('ft_u0') + 1,))};"]
    loop = [f"for (long long ft_i = ft_lo + threadIdx.x % {WARP}; ft_i < ft_hi; ft_i += {WARP}) "
            f"ft_acc = {_combine(op.combiner, 'ft_acc', x, blk)};"]
    return _warp_reduce(blk, math.prod(shape), head, loop, blk.ref(op.dst, _evars("ft_u", len(shape))),
                        op.combiner, acc, dst_dtype)


# --- gather and scatter through index buffers ----------------------------------------------

def _status(blk: Block, op) -> int:
    blk.status.append((type(op).__name__.lower(), op.index.buffer))
    return len(blk.status)


def _gather(op: Gather, blk: Block) -> list[str]:
    axis, q, size = op.axis, len(op.index.shape), op.src.shape[op.axis]
    evars = _evars("ft_c", len(op.dst.shape))
    src_vars = evars[:axis] + ("ft_x",) + evars[axis + q:]
    dst_dtype = blk.dtype(op.dst)
    value = cast(blk.ref(op.src, src_vars), blk.dtype(op.src), dst_dtype, CUDA).text
    zero = store(_as("0", "int32"), dst_dtype, CUDA).text
    code, target = _status(blk, op), blk.ref(op.dst, evars)
    return _loop(math.prod(op.dst.shape), [
        *_decode("ft_c", "ft_e", op.dst.shape, "ft_c"),
        f"long long ft_x = {blk.ref(op.index, evars[axis:axis + q])};",
        f"if (ft_x < -{size} || ft_x >= {size}) {{  // one past the end: padding, zeros",
        f"  if (ft_x != {size}) atomicMax(&ft_status[0], {code});",
        f"  {target} = {zero};",
        "} else {",
        f"  if (ft_x < 0) ft_x += {size};",
        f"  {target} = {value};",
        "}"])


def _scatter(op: Scatter, blk: Block) -> list[str]:
    axis, q, size = op.axis, len(op.index.shape), op.dst.shape[op.axis]
    svars = _evars("ft_c", len(op.src.shape))
    dst_vars = svars[:axis] + ("ft_x",) + svars[axis + q:]
    value = cast(blk.ref(op.src, svars), blk.dtype(op.src), blk.dtype(op.dst), CUDA).text
    code = _status(blk, op)
    return _loop(math.prod(op.src.shape), [
        *_decode("ft_c", "ft_e", op.src.shape, "ft_c"),
        f"long long ft_x = {blk.ref(op.index, svars[axis:axis + q])};",
        f"if (ft_x < -{size} || ft_x > {size}) atomicMax(&ft_status[0], {code});",
        f"else if (ft_x != {size}) {{  // one past the end: padding, nothing written",
        f"  if (ft_x < 0) ft_x += {size};",
        f"  {blk.ref(op.dst, dst_vars)} = {value};",
        "}"])


# tile op -> rule(op, block) -> lines of C++
RULES = {Elementwise: _elementwise, Copy: _copy, Convert: _convert, Gemm: _gemm, Reduce: _reduce,
         SegmentReduce: _segment_reduce, Gather: _gather, Scatter: _scatter}
