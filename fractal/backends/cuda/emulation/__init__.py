"""CUDA C++ kernels run on the CPU with the CUDA execution model (`cuda_emu.h`, `emulate`):
the way the CUDA backend is verified on machines without a GPU.  Kernels may use `__half` and
`__nv_bfloat16` (`cuda_emu_half.h`; a `__nv_bfloat16*` takes uint16 arrays of bfloat16 bits,
made by `bfloat16_bits`)."""

from .errors import CompilerMissingError, EmulationCompileError, EmulationError
from .run import emulate
from .source import bfloat16_bits, from_bfloat16_bits

__all__ = ["emulate", "EmulationError", "EmulationCompileError", "CompilerMissingError", "bfloat16_bits",
           "from_bfloat16_bits"]
