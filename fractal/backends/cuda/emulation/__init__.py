"""CUDA C++ kernels run on the CPU with the CUDA execution model (`cuda_emu.h`, `emulate`):
the way the CUDA backend is verified on machines without a GPU."""

from .errors import CompilerMissingError, EmulationCompileError, EmulationError
from .run import emulate

__all__ = ["emulate", "EmulationError", "EmulationCompileError", "CompilerMissingError"]
