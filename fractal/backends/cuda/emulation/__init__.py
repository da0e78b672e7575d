"""CUDA C++ kernels run on the CPU with the CUDA execution model (`cuda_emu.h`): the way the
CUDA backend is verified on machines without a GPU.  `emulate` runs one kernel on copies of
its arguments; `EmulatedModule` compiles a module's kernels once and launches them in place
on a program's buffers."""

from .errors import CompilerMissingError, EmulationCompileError, EmulationError
from .run import EmulatedModule, emulate

__all__ = ["emulate", "EmulatedModule", "EmulationError", "EmulationCompileError", "CompilerMissingError"]
