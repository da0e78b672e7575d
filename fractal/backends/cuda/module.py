"""A tile program as one CUDA C++ module: a kernel per stage, the helpers once.

`emit_module(program, gpu)` walks the program: each stage becomes a kernel
(`fractal.backends.cuda.kernel`) that takes the loop variables around it; loops and ifs stay
on the host, where the runtime (`fractal.backends.cuda.runtime`) walks the same statements
and launches a stage's kernel each time control reaches it.  The source starts with the
half-precision headers where a buffer needs them, the index helpers (`fl_mod`, `fl_div`...)
and the element-wise helpers the kernels call, each defined once; it needs no other header,
so NVRTC compiles it as it is, and so does the emulation's host compiler.

    // fractal: tile program @model, 4 kernels
    static __device__ __forceinline__ long long fl_mod(long long a, long long c) { ... }
    ...
    // stage full1() device
    extern "C" __global__ void __launch_bounds__(256) full1(...) { ... }
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fractal.lower.hardware import Hardware
from fractal.lower.tile_ir import If, Loop, Stage, TileProgram

from ..codegen import CUDA, index_prelude
from .device_loop import emit_loop_kernel, qualifies
from .kernel import Kernel, emit_kernel, free_name, kernel_name, stage_parts, stage_vars, threads_for
from .policy import CudaPolicy, DeviceLoopFacts, resident_blocks

HALF = ("float16", "bfloat16")


@dataclass(frozen=True)
class CudaModule:
    """The generated source, each stage's kernels (by stage name, in program order), each
    loop run on the device (by the loop's `id` in `program`: a `LoopKernel`) and how many
    blocks its cooperative launch takes, and per status code (1, 2, ...) the op that raises it:
    (kind, index buffer)."""

    program: TileProgram
    source: str
    kernels: dict
    status: tuple[tuple[str, str], ...]
    loops: dict = None
    loop_blocks: dict = None

    def kernel(self, stage: Stage) -> tuple[Kernel, ...]:
        """The kernels a stage launches, in order (one, or one per op: `kernel.stage_parts`)."""
        return self.kernels[stage.name]

    def launched(self) -> dict[str, int]:
        """Every kernel's name and the blocks it runs at once: 0 for an ordinary launch (any
        number, one after another as the GPU frees room), n for a cooperative launch of at
        most n (all resident at once: a device loop's kernel)."""
        out = {k.name: 0 for parts in self.kernels.values() for k in parts}
        out.update({k.name: self.loop_blocks[key] for key, k in self.loops.items()})
        return out


def emit_module(program: TileProgram, hw: Hardware, policy: CudaPolicy | None = None) -> CudaModule:
    """The module of `program` for the GPU record `hw`; `policy` (default `CudaPolicy()`) places
    each qualifying sequential loop on the device or the host."""
    policy, gpu = policy or CudaPolicy(), hw.gpu
    buffers = {b.name: b for b in program.buffers}
    kernels, loops, blocks, helpers, status, taken = {}, {}, {}, [], [], set()

    def walk(stmts, loop_vars: tuple[str, ...]):
        for s in stmts:
            if isinstance(s, Stage):
                reads = stage_vars(s)
                parts = []
                for part in stage_parts(s):
                    k, h = emit_kernel(part, kernel_name(part, taken), buffers,
                                       tuple(v for v in loop_vars if v in reads), gpu, status, policy.tf32)
                    parts.append(k)
                    helpers.extend(h)
                kernels[s.name] = tuple(parts)
            elif isinstance(s, Loop):
                facts = _loop_facts(s) if qualifies(s) else None
                if facts is not None and policy.loop_on_device(facts, hw):
                    name = free_name(f"loop_{s.var}", taken)
                    k, h = emit_loop_kernel(s, name, buffers, loop_vars, gpu, status, policy.tf32)
                    loops[id(s)], blocks[id(s)] = k, min(facts.max_points, resident_blocks(hw, k.threads))
                    helpers.extend(h)
                else:
                    walk(s.body, loop_vars + (s.var,))
            elif isinstance(s, If):
                walk(s.then, loop_vars)
                walk(s.orelse, loop_vars)

    walk(program.body, ())
    count = sum(len(parts) for parts in kernels.values()) + len(loops)
    head = [f"// fractal: tile program @{program.name}, {count} kernel{'s' if count != 1 else ''} for {gpu.name}"]
    if any(b.dtype.name in HALF for b in program.buffers):
        head.append(CUDA.includes().rstrip())
    if loops:
        head.append("#include <cooperative_groups.h>")
    texts = [k.source for parts in kernels.values() for k in parts] + [k.source for k in loops.values()]
    body = "\n".join(texts) + "\n".join(helpers)
    # the index helpers the kernels call (an unused one is a compiler warning)
    head += [line for line in index_prelude(CUDA).splitlines() if line.split("(")[0].split()[-1] + "(" in body]
    head.extend(dict.fromkeys(helpers))
    source = "\n".join(head) + "\n\n" + "\n".join(texts)
    return CudaModule(program, source, kernels, tuple(status), loops, blocks)


def _loop_facts(loop: Loop) -> DeviceLoopFacts | None:
    """The loop's steps and the most points a stage of it has in a step (over the interval
    hull of its bounds); None where the loop's bounds read enclosing loops."""
    if loop.start.vars() or loop.stop.vars():
        return None
    lo, hi = loop.start.evaluate({}), loop.stop.evaluate({})
    steps = len(range(lo, hi, loop.step))
    if steps == 0:
        return None
    last = lo + (steps - 1) * loop.step
    ranges = {loop.var: (min(lo, last), max(lo, last))}
    if any((d.start.vars() | d.stop.vars()) - {loop.var} for s in loop.body for d in s.dims):
        return None  # (a box that moves with an enclosing loop: kept on the host)
    most = 0
    for s in loop.body:
        extents = [d.stop.bounds(ranges)[1] - d.start.bounds(ranges)[0] for d in s.dims]
        most = max(most, math.prod(max(0, e) for e in extents))
    return DeviceLoopFacts(steps, max(1, most), max(threads_for(s) for s in loop.body))
