"""The CUDA backends: `cuda-emulated` (the generated CUDA C++ run on the CPU through
`cuda_emu.h`, the way it is checked on machines without a GPU) and, on a machine with a GPU
and CuPy, `cuda`.  Both build the same module (`module.emit_module`) for the same target
record, so what the emulation checked is the source a GPU runs."""

from __future__ import annotations

from fractal.lower.target import Target

from .emulated import EmulatedDevice
from .module import emit_module
from .presets import SPECS, cuda_target, preset_target
from .runtime import CudaExecutable


class CudaEmulatedBackend:
    name = "cuda-emulated"
    description = ("the CUDA backend's kernels compiled by the host C++ compiler and run on the CPU, each "
                   "launch twice in opposite block and thread orders (races and missing barriers fail)")
    consumes = "tile"
    checked_by_default = False  # (ft.testing.check: slow; named where wanted)

    def default_target(self) -> Target:
        return cuda_target("sm_90", emulate=True)

    def targets(self):
        return {f"{name}-emulated": (lambda name=name: preset_target(name, emulate=True)) for name in SPECS}

    def build(self, program, target: Target) -> CudaExecutable:
        return CudaExecutable(emit_module(program, target.hardware, target.policy), EmulatedDevice())
