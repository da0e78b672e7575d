"""A CUDA compile error that points at the tile IR: the kernel, its stage and the op.

The compiler's log names lines of the generated module; the module names what each line came
from.  A kernel starts with its stage's header comment and its signature, and each tile op's
code follows that op's text as a comment (`fractal.backends.cuda.kernel`)::

    // stage matmul6(f32 in 0:2, m31 in 0:3) device           <- the stage header
    extern "C" __global__ void __launch_bounds__(32) matmul6(  <- the kernel
      ...
      // t12_0[3*f32 + m31, 0:1, 0:32] = gemm(...)             <- the op
      for (...) { ... }                                          <- a failing line

`locate(source, line)` reads these back for a line; `compile_module(module, arch)` compiles a
`CudaModule` as `nvrtc.compile_cuda` does and, where the compiler refuses it, raises a
`CudaCompileError` that keeps the compiler's message, log and lines and adds, per failing line
(and per kernel ptxas refuses as a whole: too much shared memory, too many registers), the
kernel, the stage and the op it belongs to::

    fractal.CudaCompileError: CUDA C++ does not compile for sm_90 (NVRTC 12.9): model.cu
    model.cu(85): error: identifier "ft_bogus" is undefined
        84 |       for (int ft_i = threadIdx.x; ft_i < 8; ft_i += 32) {
        85 |         ft_as_float32[ft_i % 8][ft_i / 8] = ft_bogus;
    generated from the tile IR:
      line 85: kernel matmul6, stage matmul6(f32 in 0:2, m31 in 0:3) device,
        op t12_0[3*f32 + m31, 0:1, 0:32] = gemm(st29_0[...], in_params_w_0[f32, 0:8, 0:32])
"""

from __future__ import annotations

import re
from typing import NamedTuple

from fractal.lang.errors import CudaCompileError

from .module import CudaModule
from .nvrtc import DEFAULT_OPTIONS, compile_cuda

# A kernel's header: its stage, or the loop a device loop's kernel runs (whose stages then
# open with `{ // stage ...`: `device_loop`).
_STAGE = re.compile(r"\s*// ((?:stage|for) .*)")
_INNER_STAGE = re.compile(r"\s*\{ // (stage .*)")
_KERNEL = re.compile(r'extern "C" __global__ void (?:__launch_bounds__\([^)]*\) )?(\w+)\(')
_COMMENT = re.compile(r"\s*// (.*)")
# ptxas refusing a kernel as a whole names its entry function, not a line.
_ENTRY = re.compile(r"ptxas (?:error|fatal)\s*: .*?[Ee]ntry function '(\w+)'")


class Location(NamedTuple):
    """What a line of a generated module belongs to: the kernel's C++ name, the stage header
    (`stage NAME(dims) device`) and the tile op (its text); None where the line lies outside a
    kernel (the helpers before the first one), or before the kernel's first op (the op)."""

    kernel: str | None
    stage: str | None
    op: str | None

    def __str__(self) -> str:
        if self.kernel is None and self.stage is None:
            return "the module's helpers, before the first kernel"
        where = f"kernel {self.kernel or '?'}, {self.stage or 'which has no stage header'}"
        return where + (f",\n    op {self.op}" if self.op is not None else "")


def locate(source: str, line: int) -> Location:
    """The kernel, stage header and op that line `line` (1-based) of `source` belongs to."""
    text = source.splitlines()
    kernel = stage = op = None
    for number, entry in enumerate(text[:max(0, line)], start=1):
        header = _STAGE.fullmatch(entry)
        if header:
            following = text[number] if number < len(text) else ""
            name = _KERNEL.match(following)
            if name or not kernel:
                kernel, stage, op = (name[1] if name else None), header[1], None
                continue
        if kernel is not None and (inner := _INNER_STAGE.fullmatch(entry)):
            stage, op = inner[1], None
        elif stage is not None and (comment := _COMMENT.fullmatch(entry)):
            op = comment[1]
    return Location(kernel, stage, op)


def kernel_location(source: str, kernel: str) -> Location:
    """The kernel named `kernel` as a whole: its stage header (None where it has none), no op."""
    text = source.splitlines()
    for number, entry in enumerate(text):
        name = _KERNEL.match(entry)
        if name and name[1] == kernel:
            header = _STAGE.fullmatch(text[number - 1]) if number else None
            return Location(kernel, header[1] if header else None, None)
    return Location(kernel, None, None)


def compile_module(module: CudaModule, arch: str = "sm_90", *, options: tuple[str, ...] = DEFAULT_OPTIONS,
                   compiler: str | None = None) -> bytes:
    """The cubin of `module.source` for `arch` (as `nvrtc.compile_cuda`, under the name
    `<program>.cu`), or a `CudaCompileError` naming the kernel, stage and op of each line (or
    kernel) the compiler refuses."""
    name = f"{module.program.name}.cu"
    try:
        return compile_cuda(module.source, arch, options=options, name=name, compiler=compiler)
    except CudaCompileError as e:
        places = []
        for n in e.lines:
            where = locate(module.source, n)
            before = where.kernel is not None and where.op is None
            places.append(f"  line {n}: {where}" + (" (its set-up, before the first op)" if before else ""))
        for kernel in dict.fromkeys(_ENTRY.findall(e.log)):
            places.append(f"  {kernel_location(module.source, kernel)}")
        if not places:
            raise
        message = e.message + "\ngenerated from the tile IR:\n" + "\n".join(places)
        raise CudaCompileError(message, log=e.log, lines=e.lines) from None
