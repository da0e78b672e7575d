"""A tile-IR stage as one CUDA kernel, named after the stage.

The grid covers the stage's points: block `p` decodes into one value per dim (the innermost
fastest) from the box the host computes at launch (`ft_lo<k>`, `ft_n<k>`, one pair per dim)
and, where the space is a polygon (a dim's bounds read earlier dims), returns unless the point
lies inside it.  A block's threads run the point's tile ops in order (`block_ops.RULES`), a
`__syncthreads()` between two ops (the second may read what the first wrote, element by
element in another thread).  A stage of a single op over many elements is cut into `chunks`
blocks per point, each taking every `chunks`-th share of the op's elements, tiles or rows.
Loop variables the stage reads arrive as `long long v_<var>`, buffers as `b_<name>` pointers
(`const` where the stage only reads them), and `ft_status` records a gather or scatter
index out of range.  The threads per block and the GEMM tiles follow from the op sizes and
the target's GPU record, by construction (no search): the same program, sizes and target give
the same source on any machine.

    // stage cell(l in 0:2) device
    extern "C" __global__ void __launch_bounds__(32) cell(const float* __restrict__ b_g, float* __restrict__ b_h, long long ft_lo0, long long ft_n0, int* ft_status) {
      long long ft_p = blockIdx.x;
      const int ft_chunks = 1;
      const int ft_chunk = 0;
      const long long v_l = ft_lo0 + ft_p;
      const long long ft_t0 = ft_chunk * 32 + threadIdx.x, ft_tn = ft_chunks * 32;
      // h[l + 1, 0:4] = tanh(g[l, 0:4])
      for (int ft_e = ft_t0; ft_e < 4; ft_e += ft_tn) {
        const long long ft_c0 = ft_e;
        b_h[ft_c0 + 4*v_l + 4] = tanhf(b_g[ft_c0 + 4*v_l]);
      }
    }

A stage whose GEMM shares its weight across the points of its innermost dim folds those
points into the GEMM's rows (`folds`): the kernel's blocks then tile (rows x points, columns)
and the stage runs as one kernel per op (`stage_parts`).
"""

from __future__ import annotations

import dataclasses
import keyword
import math
import re
from dataclasses import dataclass

from fractal.lang.errors import ResourceError
from fractal.lower.hardware import GpuArch
from fractal.lower.tile_ir import Buffer, Gemm, Reduce, SegmentReduce, Stage
from fractal.lower.tile_printer import header

from ..codegen import CUDA, index_expr
from ..codegen.regions import overwrites_its_input
from .block import SCRATCH, WARP, Block
from .block_gemm import FOLDED_ROWS, MMA_STEP, gemm_tile, tensor_core
from .block_ops import RULES

MAX_THREADS = 256
MAX_CHUNKS = 4096
_IDENT = re.compile(r"[A-Za-z_]\w*")
_RESERVED = {"main", "min", "max", "exp", "log", "sin", "cos", "tanh", "sqrt", "abs", "pow", "floor", "signbit",
             "int", "float", "double", "long", "short", "char", "bool", "void", "auto", "this", "new", "delete"}


@dataclass(frozen=True)
class Kernel:
    """One stage's kernel: its C++ name and text, what a launch passes, and its geometry."""

    name: str
    stage: Stage
    buffers: tuple[str, ...]       # pointer parameters, in order
    loop_vars: tuple[str, ...]     # enclosing loop variables, in order
    threads: int
    chunks: int                    # blocks per point (a folded GEMM: see `fold`)
    source: str
    fold: tuple[int, int, int, int] | None = None   # (dim, rows per point, tile rows, column tiles)
    scratch: int = 0               # bytes of global scratch per block (a last `ft_scratch` parameter)

    def blocks(self, box) -> int:
        """The blocks a launch over `box` ((start, extent) per dim) runs."""
        if self.fold is None:
            return math.prod(n for _, n in box) * self.chunks
        dim, rows, tile_rows, tiles_n = self.fold
        others = math.prod(n for k, (_, n) in enumerate(box) if k != dim)
        return others * -(-rows * box[dim][1] // tile_rows) * tiles_n


def kernel_name(stage: Stage, taken: set[str]) -> str:
    """The stage's name where it is a free C++ identifier, else prefixed (and numbered) until it is."""
    name = stage.name if _IDENT.fullmatch(stage.name) else "k_" + re.sub(r"\W", "_", stage.name)
    if keyword.iskeyword(name) or name in _RESERVED or name.startswith(("ft_", "fl_", "__")):
        name = "k_" + name
    return free_name(name, taken)


def free_name(name: str, taken: set[str]) -> str:
    """`name`, numbered (`_2`, `_3`...) until no kernel of the module has it; now taken."""
    base, n = name, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def _work(op) -> int:
    """The units a block deals out to its threads for one op (elements, outputs x a warp)."""
    if isinstance(op, Gemm):
        m, n = op.c.shape
        return min(m, 32) * n
    if isinstance(op, (Reduce, SegmentReduce)):
        return math.prod(op.dst.shape) * WARP
    return math.prod(op.writes[0].shape)


def threads_for(stage: Stage) -> int:
    """Warps enough for the stage's biggest op, up to `MAX_THREADS`."""
    work = max((_work(op) for op in stage.body), default=1)
    return min(MAX_THREADS, max(WARP, 1 << max(0, work - 1).bit_length()))


def _chunks(stage: Stage, threads: int, buffers: dict[str, Buffer], gpu: GpuArch, tf32: bool = False) -> int:
    """Blocks per point: one unless a single op has more work than its threads take in 4 rounds."""
    if len(stage.body) != 1:
        return 1
    op = stage.body[0]
    if isinstance(op, Gemm):
        m, n = op.c.shape
        k = op.a.shape[0] if op.trans_a else op.a.shape[1]
        t = _tile(op, m, n, k, threads, buffers, gpu, tf32)
        return min(MAX_CHUNKS, -(-m // t.tm) * -(-n // t.tn))
    if overwrites_its_input(op, op.reads):
        return 1  # (it holds every value back before writing: one block)
    return min(MAX_CHUNKS, max(1, -(-_work(op) // (threads * 4))))


def folds(op, stage: Stage) -> bool:
    """Whether a GEMM's rows can span the points of the stage's innermost dim: one GEMM of
    `rows x points` rows against an operand B all those points share (a batch of recurrent
    steps against one weight: the weight is read once per row tile, not once per point)."""
    if not isinstance(op, Gemm) or not stage.dims or not stage.rectangular:
        return False
    var = stage.dims[-1].var
    return var not in op.b.vars() and var in op.c.vars() and not overwrites_its_input(op, (op.a, op.b))


def stage_parts(stage: Stage) -> list[Stage]:
    """The kernels a stage runs as: itself, or, where one of its ops is a GEMM that folds
    points into rows, one kernel per op (fission: points are independent, so running the ops
    one after another over all points computes what point after point does)."""
    if len(stage.body) > 1 and any(folds(op, stage) for op in stage.body):
        return [dataclasses.replace(stage, name=f"{stage.name}_{k}", body=(op,)) for k, op in enumerate(stage.body)]
    return [stage]


def _tile(op: Gemm, m: int, n: int, k: int, threads: int, buffers, gpu: GpuArch, tf32: bool):
    """The tile `block_ops` gives this GEMM (on tensor cores or not)."""
    kind = tensor_core(op, {b: buf.dtype.name for b, buf in buffers.items()}, gpu, tf32)
    return gemm_tile(m, n, k, threads, kind is not None, MMA_STEP[kind][0] if kind else 16)


def emit_kernel(stage: Stage, name: str, buffers: dict[str, Buffer], loop_vars: tuple[str, ...],
                gpu: GpuArch, status: list, tf32: bool = False) -> tuple[Kernel, list[str]]:
    """The kernel of `stage` and the helper definitions it calls; `status` collects, per
    status code, the gather or scatter that raises it (shared by a module's kernels)."""
    dims = tuple(d.var for d in stage.dims)
    names = {v: f"v_{v}" for v in dims + loop_vars}
    threads = threads_for(stage)
    fold = len(stage.body) == 1 and folds(stage.body[0], stage)
    chunks = 1 if fold else _chunks(stage, threads, buffers, gpu, tf32)
    blk = Block(buffers, names, threads, chunks, status=status, gpu=gpu, tf32=tf32,
                fold=(dims[-1], f"ft_lo{len(dims) - 1}", f"ft_n{len(dims) - 1}") if fold else None)
    body = stage_ops(stage, blk)
    check_shared(blk, gpu, f"stage {stage.name}")
    bufs = tuple(b for b in buffers if b in used_buffers(stage))
    params = buffer_params(bufs, buffers, {r.buffer for op in stage.body for r in op.writes})
    params += [f"long long v_{v}" for v in loop_vars]
    params += [f"long long ft_{x}{k}" for k in range(len(dims)) for x in ("lo", "n")]
    params.append("int* ft_status")
    if blk.scratch:
        params.append("unsigned char* ft_scratch")
    lines = [f"// {header(stage)}",
             f'extern "C" __global__ void __launch_bounds__({threads}) {name}({", ".join(params)}) {{',
             "  long long ft_p = blockIdx.x;"]
    fold_info = None
    if fold:  # the innermost dim's points are rows of the GEMM: tiles over (rows x points, columns)
        op = stage.body[0]
        (m, n), k = op.c.shape, (op.a.shape[0] if op.trans_a else op.a.shape[1])
        t = _tile(op, m * FOLDED_ROWS, n, k, threads, buffers, gpu, tf32)
        fold_info = (len(dims) - 1, m, t.tm, -(-n // t.tn))
        last = len(dims) - 1
        lines += [f"  const long long ft_chunks = ({m} * ft_n{last} + {t.tm - 1}) / {t.tm} * {fold_info[3]};",
                  "  const long long ft_chunk = ft_p % ft_chunks; ft_p /= ft_chunks;"]
    else:
        lines += [f"  const int ft_chunks = {chunks};",
                  "  const int ft_chunk = ft_p % ft_chunks; ft_p /= ft_chunks;" if chunks > 1 else
                  "  const int ft_chunk = 0;"]
    decoded = range(len(dims) - 1) if fold else range(len(dims))
    for k in reversed(decoded):
        lines.append(f"  const long long v_{dims[k]} = ft_lo{k} + ft_p" + (f" % ft_n{k}; ft_p /= ft_n{k};" if k else ";"))
    if not stage.rectangular:
        for d in stage.dims:
            if (d.start.vars() | d.stop.vars()) & set(dims):
                lines.append(f"  if (v_{d.var} < {index_expr(d.start, names)} || v_{d.var} >= "
                             f"{index_expr(d.stop, names)}) return;  // outside the polygon")
    lines.append(f"  const long long ft_t0 = ft_chunk * {threads} + threadIdx.x, ft_tn = ft_chunks * {threads};")
    lines += ["  " + x for x in shared_declarations(blk)]
    lines += ["  " + x for x in body] + ["}"]
    text = ("\n".join(lines) + "\n").replace(SCRATCH, str(blk.scratch))
    kernel = Kernel(name, stage, bufs, loop_vars, threads, chunks, text, fold_info, blk.scratch)
    return kernel, blk.helpers


def stage_ops(stage: Stage, blk: Block) -> list[str]:
    """A point's ops in order, each under its tile-IR line, a barrier between two."""
    body: list[str] = []
    for k, op in enumerate(stage.body):
        if k:
            body.append("__syncthreads();  // the ops before are done in every thread")
        body.append(f"// {op}")
        body.extend(RULES[type(op)](op, blk))
    return body


def check_shared(blk: Block, gpu: GpuArch, what: str) -> None:
    """Refuse a kernel whose tiles need more static shared memory than the GPU gives a block
    (the tiles are a few KiB: only a record of a smaller GPU than any preset meets this)."""
    shared = sum(rows * cols * _size(ctype) for ctype, rows, cols in blk.shared.values())
    if shared > gpu.static_shared_per_block:
        raise ResourceError(f"{what}: its tiles need {shared} bytes of shared memory, more than {gpu.name}'s "
                            f"{gpu.static_shared_per_block} bytes per block")


def buffer_params(bufs, buffers: dict[str, Buffer], written: set[str]) -> list[str]:
    return [f"{'' if b in written else 'const '}{CUDA.ctype[buffers[b].dtype.name]}* __restrict__ b_{b}"
            for b in bufs]


def shared_declarations(blk: Block) -> list[str]:
    return [f"__shared__ {ctype} {name}[{rows}][{cols}];" for name, (ctype, rows, cols) in blk.shared.items()]


def _size(ctype: str) -> int:
    return {"float": 4, "double": 8, "int": 4, "long long": 8, "__half": 2, "__nv_bfloat16": 2}.get(ctype, 8)


def used_buffers(stage: Stage) -> set[str]:
    return {r.buffer for op in stage.body for r in op.reads + op.writes}


def stage_vars(stage: Stage) -> set[str]:
    """Every variable the stage reads (its dims' and regions' indices), its own dims included."""
    out = set()
    for d in stage.dims:
        out |= d.start.vars() | d.stop.vars()
    for op in stage.body:
        for r in op.reads + op.writes:
            out |= r.vars()
    return out


__all__ = ["Kernel", "emit_kernel", "free_name", "kernel_name", "stage_parts", "stage_vars"]
