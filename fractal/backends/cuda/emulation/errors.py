"""The errors of the CUDA emulation: each a `FractalError`, so a caller catches them all as one."""

from __future__ import annotations

from ....lang.errors import FractalError


class EmulationError(FractalError):
    """An emulated kernel went wrong: a race (the result depends on the schedule), an
    out-of-bounds access to a global buffer, a barrier or warp intrinsic that not every thread
    reached, a wrong shuffle mask, or arguments that do not fit the kernel's parameters."""


class EmulationCompileError(EmulationError):
    """The host C++ compiler refused the kernel source; the message holds its log."""


class CompilerMissingError(EmulationError):
    """No host C++ compiler to build the emulation with."""
