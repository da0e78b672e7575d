"""`ft.targets`: what a program is compiled for.

    ft.targets.default()               # what a call naming no target gets: this machine, by C++ where it can
    ft.targets.host()                  # this machine, measured once, kept on disk (NumPy: the cpu backend)
    ft.targets.get("cpu-generic")      # a named preset (`ft.targets.names()` lists them)
    ft.targets.cpu(cores=8, l2=2 << 20, gemm_gflops=900.0)   # a record of your own
    ft.targets.get("h100"), ft.targets.cuda("sm_90", sms=114)   # GPUs (run with CuPy; emulate=True: on the CPU)
    ft.targets.mesh(8, 8, preset="wse2", sram_bytes=96 << 10)    # a mesh of PEs (the dataflow backend)
    f(*args, target=t)                 # compile for it and run; f.compile(*args, target=t)

A `Target` (`fractal.lower.target`) is data: a hardware record, the backend that runs it and
that backend's cost policy.  The compiler reads every decision from it and nothing from the
machine it runs on, so one program, its argument sizes and one target give the same tile IR
on any machine (only `host()` is this machine's own record).  Each backend contributes its
presets (`fractal.backends.registry`); `fractal targets` prints them with their numbers and
where the numbers come from.
"""

from __future__ import annotations

import os

from .backends import registry
from .backends.cxx_build import find_compiler
from .backends.cpu.backend import host_target
from .backends.cpu.machines import custom_cpu
from .backends.cuda import presets as cuda_presets
from .backends.dataflow.backend import mesh_target
from .backends.native.backend import native_target
from .lang.errors import ArgumentError
from .lower.target import Target

__all__ = ["Target", "default", "host", "get", "names", "cpu", "cuda", "mesh"]

BACKEND_VARIABLE = "FRACTAL_BACKEND"


def default() -> Target:
    """The target of a call that names neither a backend nor a target: the default target of
    the backend `FRACTAL_BACKEND` names where it is set (`cpu`, `native`, `interpreter`, ...),
    else this machine run by C++ (`host(native=True)`) where a C++ compiler is found (faster
    than NumPy on the whole CPU benchmark: BENCHMARKS.md), else by NumPy (`host()`)."""
    name = os.environ.get(BACKEND_VARIABLE, "").strip()
    if name:
        return registry.get(name).default_target()
    return host(native=find_compiler() is not None)


def host(native: bool = False) -> Target:
    """This machine as a CPU target (`fractal.backends.cpu.host`; `FRACTAL_HOST` replaces it),
    run by NumPy (the `cpu` backend) or, `native=True`, by C++ compiled for it (`native`)."""
    return native_target(host_target()) if native else host_target()


def _presets() -> dict:
    out = {}
    for backend in registry.backends():
        for name, make in backend.targets().items():
            out.setdefault(name, make)
    return out


def names() -> list[str]:
    """Every named target of the registered backends."""
    return list(_presets())


def get(name: str) -> Target:
    """The target called `name`; an unknown name is an error listing the known ones."""
    presets = _presets()
    if not isinstance(name, str) or name not in presets:
        raise ArgumentError(f"unknown target {name!r}; the targets are {', '.join(presets)}")
    return presets[name]()


def cpu(name: str = "custom-cpu", **numbers) -> Target:
    """A CPU target from your numbers, the others `cpu-generic`'s: `cores`, `simd_bytes`, `l1`,
    `l2` (per core), `l3` (shared; 0: none) and `dram` in bytes, `gemm_gflops` and
    `gemm_gflops_f64`, `memory_gbs`, `clock_ghz`; `policy=` a `CpuPolicy` of other thresholds."""
    return custom_cpu(name, **numbers)


def cuda(arch: str = "sm_90", *, emulate: bool = False, name: str | None = None, tf32: bool = False,
         **numbers) -> Target:
    """A GPU target: the record of `arch`'s reference GPU (sm_80: a100, sm_89: l4, sm_90: h100),
    the numbers given (`sms`, `clock_ghz`, `l2`, `dram_gbs`, `peak_gflops`...: the fields of
    `fractal.lower.hardware.GpuSpec`) replacing its own.
    `emulate=True`: the same record for the "cuda-emulated" backend, which runs the generated CUDA
    C++ on the CPU; without it, the "cuda" backend, which runs it on this machine's GPU through CuPy
    (without CuPy or a GPU, compiling for it is a `DeviceError`).  `tf32=True`: float32 GEMMs may
    run on tensor cores in TF32 (10 mantissa bits per operand, fp32 accumulation)."""
    return cuda_presets.cuda_target(arch, emulate=emulate, name=name, tf32=tf32, **numbers)


def mesh(rows: int | None = None, cols: int | None = None, preset: str = "tiny", *, name: str | None = None,
         **numbers) -> Target:
    """A mesh of PEs for the "dataflow" backend: `preset`'s machine (`tiny`, `ipu_mk2`, `ipu_mk1`,
    `wse2`, `wse3`, `wormhole`; `fractal.backends.dataflow.spec.PRESETS`) as rows x cols PEs (default
    the preset's own grid), any field of its `MeshSpec` (`sram_bytes`, `link_bytes_per_cycle`,
    `hop_latency_cycles`, `sync_cycles`, ...) replaced by a keyword.  Every number says where it
    comes from (`fractal targets` prints them); a run's `compiled.report` lists the placeholders."""
    return mesh_target(rows, cols, preset, name=name, **numbers)
