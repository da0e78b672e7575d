"""The `native` backend: each tile program compiled to C++ by the host compiler, for CPU
targets (the `cpu` backend's records and cost policy, but for what a polygon stage costs: loops
around box code here, no gathers; so the same tile IR where no ragged batch is cut to its live points).

    f(x, backend="native")                            # this machine
    f.compile(x, target=ft.targets.host(native=True))

Where no C++ compiler is found, the NumPy `cpu` backend runs the program instead, after one
warning that says so (a program never fails for want of a compiler).
"""

from __future__ import annotations

import dataclasses
import warnings

from fractal.lower.target import Target

from .. import cxx_build
from ..cpu.backend import host_target
from ..cpu.executor import CpuExecutable
from ..cpu.machines import PRESETS, cpu_target
from ..cpu.policy import CpuPolicy
from .executable import NativeExecutable

_warned = False


def native_target(target: Target | None = None) -> Target:
    """A CPU target (default: this machine) run by the native backend."""
    target = target or host_target()
    policy = target.policy
    if isinstance(policy, CpuPolicy):   # (loops over a polygon's bounding dims, no gathers)
        policy = dataclasses.replace(policy, polygon_gathers=False)
    return dataclasses.replace(target, name=f"{target.name}-native", backend="native", policy=policy)


class NativeBackend:
    name = "native"
    description = "C++ generated per program, compiled by the host compiler (OpenMP, BLAS for big products)"
    consumes = "tile"
    checked_by_default = False   # (ft.testing.check: a C++ build per example; named where wanted)

    def default_target(self) -> Target:
        return native_target()

    def targets(self):
        out = {"native-host": native_target}
        out.update({f"{name}-native": (lambda name=name: native_target(cpu_target(name))) for name in PRESETS})
        return out

    def unavailable(self) -> str | None:
        return None   # (without a compiler it runs on the cpu backend: `build`)

    def build(self, program, target: Target):
        if cxx_build.find_compiler() is None:
            global _warned
            if not _warned:
                warnings.warn("the native backend found no C++ compiler (set CXX, or install g++ or clang++): "
                              "programs run on the NumPy cpu backend instead", RuntimeWarning, stacklevel=2)
                _warned = True
            policy = target.policy if isinstance(target.policy, CpuPolicy) else CpuPolicy()
            return CpuExecutable(program, split_elements=policy.split_elements)
        return NativeExecutable(program, threads=target.hardware.cores, target=target)
