"""The CUDA backends: `cuda-emulated` (the generated CUDA C++ run on the CPU through
`cuda_emu.h`, the way it is checked on machines without a GPU) and `cuda` (compiled by NVRTC
and run on a GPU through CuPy, `cupy_device`).  Both build the same module
(`module.emit_module`) for the same target record, so what the emulation checked is the
source a GPU runs.  Compiling for `cuda` on a machine without CuPy or without a GPU is a
`DeviceError` that suggests the emulated target."""

from __future__ import annotations

from fractal.lower.target import Target

from .cupy_device import CupyDevice, probe
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


class CudaBackend:
    name = "cuda"
    description = ("generated CUDA C++ compiled by NVRTC (cached on disk) and run on this machine's NVIDIA GPU "
                   "through CuPy")
    consumes = "tile"

    def default_target(self) -> Target:
        return cuda_target("sm_90")

    def targets(self):
        return {name: (lambda name=name: preset_target(name)) for name in SPECS}

    def unavailable(self) -> str | None:
        gpu, why = probe()
        return None if gpu else f"{why} here: it runs on an NVIDIA GPU through CuPy"

    def build(self, program, target: Target) -> CudaExecutable:
        device = CupyDevice.for_target(target)  # (no CuPy, no GPU, a GPU too old: a DeviceError first)
        return CudaExecutable(emit_module(program, target.hardware, target.policy), device)
