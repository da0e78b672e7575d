"""GEMM tiles as block-level CUDA C++ (the `Gemm` rule of `block_ops.RULES`).

SIMT (float32, float64, integers): output tiles of `tm x tn` staged through shared memory `tk`
columns at a time (the A tile transposed and padded by one column against bank conflicts),
each thread accumulating `ceil(tm*tn / threads)` outputs in registers, a `__syncthreads`
before a tile is overwritten and after it is filled; where the reduction takes several steps
and the operands need no conversion, the tiles stream in by `cp.async`, double-buffered (the
copy of step k + 1 overlaps the products of step k).  Tensor cores (half precision, and TF32
where the user allows it): 16 x 8 `mma.sync` fragments dealt out to the warps
(`fractal.backends.cuda.mma`).  Where the block folds a dim's points into the rows
(`Block.fold`: a batch sharing one weight), row `r` of the tile is point `r / m`'s row `r % m`.
Tile shapes follow from the sizes and the threads, by construction (`gemm_tile`).
"""

from __future__ import annotations

from dataclasses import dataclass

from fractal.lang.errors import UnsupportedError
from fractal.lower.hardware import GpuArch
from fractal.lower.tile_ir import Gemm

from ..codegen import CUDA, cast, store
from ..codegen.dialect import COMPUTE
from ..codegen.regions import overwrites_its_input
from .block import WARP, Block, value_of_text
from .mma import DEVICE_CODE as MMA_CODE
from .mma import MMAS

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


def _one_tile_if_overlapping(op: Gemm, blk: Block, t: GemmTile, m: int, n: int) -> None:
    """One output tile reads all its operands (its last barrier) before any thread writes; with
    more, a tile could read what an earlier one wrote: refused where the output overlaps an operand."""
    if overwrites_its_input(op, (op.a, op.b)) and (blk.chunks > 1 or blk.fold or -(-m // t.tm) * -(-n // t.tn) > 1):
        raise UnsupportedError(f"the CUDA emitter cannot yet run `{op}`: its output overlaps an operand "
                               f"and spans several tiles")


def gemm_rule(op: Gemm, blk: Block) -> list[str]:
    (m, n), k = op.c.shape, (op.a.shape[0] if op.trans_a else op.a.shape[1])
    kind = tensor_core(op, {b: buf.dtype.name for b, buf in blk.buffers.items()}, blk.gpu, blk.tf32)
    if kind is not None:
        return _gemm_mma(op, blk, kind, m, n, k)
    compute = COMPUTE[blk.dtype(op.c)]  # (never bool: verify wants c wider than bool operands)
    t, T = gemm_tile(_tile_rows(blk, m), n, k, blk.threads), CUDA.ctype[compute]
    _one_tile_if_overlapping(op, blk, t, m, n)
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
    value = store(value_of_text(total, compute), blk.dtype(op.c), CUDA).text
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
    _one_tile_if_overlapping(op, blk, t, m, n)
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
    zero = store(value_of_text("0.0f", "float32"), half, CUDA).text
    out = blk.ref(op.c, ("ft_gm", "ft_gn"))
    total = (f"{cast(out, blk.dtype(op.c), 'float32', CUDA).text} + ft_acc[ft_f][ft_i]" if op.accumulate
             else "ft_acc[ft_f][ft_i]")
    value = store(value_of_text(total, "float32"), blk.dtype(op.c), CUDA).text
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
