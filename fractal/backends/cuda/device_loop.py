"""A sequential loop run on the device: one persistent, cooperative kernel for the whole loop.

A recurrence launched from the host costs a kernel launch per stage and step (a wavefront
LSTM of 608 steps and 2 stages: 1216 launches).  Where the policy says so
(`CudaPolicy.loop_on_device`), the loop becomes one kernel (Cocktailer's and Rammer's
device-side control flow): its blocks stay resident, every thread runs the loop, each step
runs the loop's stages in order, the stage's points dealt out to the blocks
(`p = blockIdx.x, blockIdx.x + gridDim.x, ...`), and a grid-wide barrier
(`cooperative_groups::this_grid().sync()`, which needs a cooperative launch: all blocks
resident at once) separates a stage from the next.  A point runs exactly the code of its
stage's own kernel (`kernel.stage_ops`), so the two placements compute alike.  Only
loops whose body is stages with box-shaped spaces qualify (a polygon's or a nested loop's
bounds stay on the host).

    // for s in 0:7 sequential host: on the device
    extern "C" __global__ void __launch_bounds__(32) loop_s(..., int* ft_status) {
      cooperative_groups::grid_group ft_grid = cooperative_groups::this_grid();
      for (long long v_s = 0; v_s < 7; v_s += 1) {
        { // stage gates(l in max(0, s - 5):min(2, s + 1)) device
          const long long ft_lo0 = fl_max(0, v_s - 5), ft_n0 = fl_min(2, v_s + 1) - ft_lo0;
          for (long long ft_q = blockIdx.x; ft_n0 > 0 && ft_q < ft_n0; ft_q += gridDim.x) { ... }
        }
        ft_grid.sync();
        ...
"""

from __future__ import annotations

from dataclasses import dataclass

from fractal.lower.hardware import GpuArch
from fractal.lower.tile_ir import Buffer, Loop, Stage
from fractal.lower.tile_printer import header

from ..codegen import index_expr
from .block import SCRATCH, Block
from .kernel import (buffer_params, check_shared, shared_declarations, stage_ops, stage_vars, threads_for,
                     used_buffers)


@dataclass(frozen=True)
class LoopKernel:
    """A loop's persistent kernel: its name and text, what a launch passes, its block size."""

    name: str
    loop: Loop
    buffers: tuple[str, ...]
    loop_vars: tuple[str, ...]     # the loops around it
    threads: int
    source: str
    scratch: int = 0               # bytes of global scratch per block (a last `ft_scratch` parameter)


def qualifies(loop: Loop) -> bool:
    """A sequential loop whose body is stages over boxes (their bounds read loop variables only)."""
    return (loop.kind == "sequential" and bool(loop.body)
            and all(isinstance(s, Stage) and s.rectangular for s in loop.body))


def emit_loop_kernel(loop: Loop, name: str, buffers: dict[str, Buffer], outer: tuple[str, ...], gpu: GpuArch,
                     status: list, tf32: bool = False) -> tuple[LoopKernel, list[str]]:
    """The persistent kernel of `loop` (which `qualifies`) and the helpers it calls; `outer`
    are the loops around it, whose variables it takes as parameters."""
    stages = loop.body
    threads = max(threads_for(s) for s in stages)
    reads = set().union(*(stage_vars(s) for s in stages)) | loop.start.vars() | loop.stop.vars()
    outer = tuple(v for v in outer if v in reads)
    names = {v: f"v_{v}" for v in outer + (loop.var,)}
    blk = Block(buffers, names, threads, 1, status=status, gpu=gpu, tf32=tf32)
    body = []
    for s in stages:
        blk.names = {**names, **{d.var: f"v_{d.var}" for d in s.dims}}
        body += [f"{{ // {header(s)}", *("  " + x for x in _stage(s, blk, threads)), "}",
                 "ft_grid.sync();  // the stage is done in every block"]
    check_shared(blk, gpu, f"the loop over {loop.var}")
    used = set().union(*(used_buffers(s) for s in stages))
    written = {r.buffer for s in stages for op in s.body for r in op.writes}
    bufs = tuple(b for b in buffers if b in used)
    params = buffer_params(bufs, buffers, written) + [f"long long v_{v}" for v in outer] + ["int* ft_status"]
    params += ["unsigned char* ft_scratch"] if blk.scratch else []
    var = f"v_{loop.var}"
    lines = [f"// {header(loop)}: on the device",
             f'extern "C" __global__ void __launch_bounds__({threads}) {name}({", ".join(params)}) {{',
             "  cooperative_groups::grid_group ft_grid = cooperative_groups::this_grid();",
             *("  " + x for x in shared_declarations(blk)),
             f"  for (long long {var} = {index_expr(loop.start, names)}; {var} {'<' if loop.step > 0 else '>'} "
             f"{index_expr(loop.stop, names)}; {var} += {loop.step}) {{",
             *("    " + x for x in body), "  }", "}"]
    text = ("\n".join(lines) + "\n").replace(SCRATCH, str(blk.scratch))
    return LoopKernel(name, loop, bufs, outer, threads, text, blk.scratch), blk.helpers


def _stage(s: Stage, blk: Block, threads: int) -> list[str]:
    """One step's run of stage `s`: its box from the loop variables, its points over the blocks."""
    lines, count = [], []
    for k, d in enumerate(s.dims):
        lo = index_expr(d.start, blk.names)
        lines.append(f"const long long ft_lo{k} = {lo}, ft_n{k} = {index_expr(d.stop, blk.names)} - ft_lo{k};")
        count.append(f"ft_n{k}")
    points = " * ".join(count) or "1"
    empty = " || ".join(f"ft_n{k} <= 0" for k in range(len(s.dims))) or "false"
    decode = []
    for k in reversed(range(len(s.dims))):
        decode.append(f"const long long v_{s.dims[k].var} = ft_lo{k} + ft_p" +
                      (f" % ft_n{k}; ft_p /= ft_n{k};" if k else ";"))
    lines += [f"const long long ft_points = ({empty}) ? 0 : {points};",
              "for (long long ft_q = blockIdx.x; ft_q < ft_points; ft_q += gridDim.x) {",
              "  long long ft_p = ft_q;", *("  " + x for x in decode),
              f"  const int ft_chunks = 1, ft_chunk = 0, ft_t0 = threadIdx.x, ft_tn = {threads};",
              *("  " + x for x in stage_ops(s, blk)),
              "  __syncthreads();  // the point is done before the block takes the next",
              "}"]
    return lines
