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

from dataclasses import dataclass

from fractal.lower.hardware import GpuArch
from fractal.lower.tile_ir import If, Loop, Stage, TileProgram

from ..codegen import CUDA, index_prelude
from .kernel import Kernel, emit_kernel, kernel_name, stage_vars

HALF = ("float16", "bfloat16")


@dataclass(frozen=True)
class CudaModule:
    """The generated source, each stage's kernel (by stage name, in program order), and per
    status code (1, 2, ...) the op that raises it: (kind, index buffer)."""

    program: TileProgram
    source: str
    kernels: dict
    status: tuple[tuple[str, str], ...]

    def kernel(self, stage: Stage) -> Kernel:
        return self.kernels[stage.name]


def emit_module(program: TileProgram, gpu: GpuArch) -> CudaModule:
    buffers = {b.name: b for b in program.buffers}
    kernels, helpers, status, taken = {}, [], [], set()

    def walk(stmts, loop_vars: tuple[str, ...]):
        for s in stmts:
            if isinstance(s, Stage):
                reads = stage_vars(s)
                k, h = emit_kernel(s, kernel_name(s, taken), buffers, tuple(v for v in loop_vars if v in reads),
                                   gpu, status)
                kernels[s.name] = k
                helpers.extend(h)
            elif isinstance(s, Loop):
                walk(s.body, loop_vars + (s.var,))
            elif isinstance(s, If):
                walk(s.then, loop_vars)
                walk(s.orelse, loop_vars)

    walk(program.body, ())
    head = [f"// fractal: tile program @{program.name}, {len(kernels)} kernels for {gpu.name}"]
    if any(b.dtype.name in HALF for b in program.buffers):
        head.append(CUDA.includes().rstrip())
    head.append(index_prelude(CUDA).rstrip())
    head.extend(dict.fromkeys(helpers))
    source = "\n".join(head) + "\n\n" + "\n".join(k.source for k in kernels.values())
    return CudaModule(program, source, kernels, tuple(status))
