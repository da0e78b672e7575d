"""CUDA C++ kernels run on the CPU with the CUDA execution model (`cuda_emu.h`): the way the
CUDA backend is verified on machines without a GPU.  `emulate` runs one kernel on copies of
its arguments; `EmulatedModule` compiles a module's kernels once and launches them in place
on a program's buffers.  Kernels may use `__half` and `__nv_bfloat16` (`cuda_emu_half.h`; a
`__nv_bfloat16*` takes uint16 arrays of bfloat16 bits, made by `bfloat16_bits`) and the
tensor-core helpers of `fractal.backends.cuda.mma` (`cuda_emu_mma.h`)."""

from .errors import CompilerMissingError, EmulationCompileError, EmulationError
from .run import EmulatedModule, emulate
from .source import bfloat16_bits, from_bfloat16_bits

__all__ = ["emulate", "EmulatedModule", "EmulationError", "EmulationCompileError", "CompilerMissingError",
           "bfloat16_bits", "from_bfloat16_bits"]
