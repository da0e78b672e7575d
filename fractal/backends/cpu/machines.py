"""CPU targets: hardware records built from a handful of numbers, and the named presets.

    cpu_target("cpu-generic")                      # a preset, by name
    custom_cpu(cores=8, l2=2 * MiB, gemm_gflops=900.0)   # unspecified fields from cpu-generic

A CPU is described by its cores, SIMD width, per-core L1 and L2, the L3 all cores share,
its DRAM, its float32/float64 GEMM rates and its memory bandwidth; `cpu_hardware` turns
those into the `Hardware` record the passes read (levels fastest first, tiles sized for
L2) and `cpu_target` into a `Target` with the CPU backend's cost policy.  Every preset says
where its numbers come from: [S] a vendor's specification, [D] derived from [S] numbers
(peak = cores x FLOPs per cycle x base clock), [E] a documented estimate.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from fractal.lang.errors import ArgumentError
from fractal.lower.hardware import GiB, KiB, MiB, Hardware, MemoryLevel
from fractal.lower.target import Target

from .policy import CpuPolicy


@dataclass(frozen=True)
class CpuSpec:
    """The numbers a CPU target is made of (sizes in bytes, rates in GFLOP/s and GB/s)."""

    name: str
    cores: int
    simd_bytes: int           # widest vector register (16: SSE/NEON, 32: AVX2, 64: AVX-512)
    l1: int                   # per core
    l2: int                   # per core
    l3: int                   # shared by all cores (0: none)
    dram: int
    gemm_gflops: float        # float32 GEMM, all cores
    gemm_gflops_f64: float    # float64 GEMM, all cores
    memory_gbs: float         # DRAM bandwidth
    clock_ghz: float
    source: str

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("name", "source", "l3") and not (isinstance(value, (int, float)) and value > 0):
                raise ArgumentError(f"cpu target {self.name!r}: {f.name} must be a positive number, got {value!r}")
        if self.l3 < 0:
            raise ArgumentError(f"cpu target {self.name!r}: l3 must be 0 (none) or a positive size, got {self.l3}")


def cpu_hardware(spec: CpuSpec) -> Hardware:
    """The `Hardware` record of a CPU: registers, L1, L2, L3 (if any), DRAM; bandwidths from
    the per-cycle rates of a typical core (registers 3 vectors, L1 2 vectors, L2 32 B, L3 16 B
    per cycle per core [E]) and the spec's DRAM rate."""
    per_core = {"registers": 3 * spec.simd_bytes, "L1": 2 * spec.simd_bytes, "L2": 32, "L3": 16}
    gbs = {name: bpc * spec.clock_ghz * spec.cores for name, bpc in per_core.items()}
    levels = [MemoryLevel("registers", 16 * spec.simd_bytes, gbs["registers"], spec.simd_bytes),
              MemoryLevel("L1", spec.l1, gbs["L1"], 64), MemoryLevel("L2", spec.l2, gbs["L2"], 64)]
    if spec.l3:
        levels.append(MemoryLevel("L3", spec.l3, gbs["L3"], 64, shared_by=spec.cores))
    levels.append(MemoryLevel("DRAM", spec.dram, spec.memory_gbs, 64, shared_by=spec.cores))
    return Hardware(spec.name, "cpu", spec.cores, spec.simd_bytes, tuple(levels),
                    (("float32", spec.gemm_gflops), ("float64", spec.gemm_gflops_f64)),
                    tile_align=8, tile_level="L2", clock_ghz=spec.clock_ghz, source=spec.source)


def cpu_target(spec: CpuSpec | str, policy: CpuPolicy | None = None) -> Target:
    """The CPU target of a spec (or of a preset's name), with the CPU cost policy."""
    if isinstance(spec, str):
        spec = preset(spec)
    return Target(spec.name, "cpu", cpu_hardware(spec), policy or CpuPolicy(), spec.source)


def custom_cpu(name: str = "custom-cpu", policy: CpuPolicy | None = None, **numbers) -> Target:
    """A CPU target from the numbers given (`cores=`, `l2=`, `gemm_gflops=`...), the others
    those of `cpu-generic`."""
    known = {f.name for f in fields(CpuSpec)} - {"name"}
    unknown = sorted(set(numbers) - known)
    if unknown:
        raise ArgumentError(f"ft.targets.cpu() has no field {unknown[0]!r}; its fields are {', '.join(sorted(known))}")
    base = PRESETS["cpu-generic"]
    source = numbers.pop("source", "given: " + ", ".join(f"{k}={v}" for k, v in sorted(numbers.items())) +
                         "; the rest from cpu-generic")
    return cpu_target(replace(base, name=name, source=source, **numbers), policy)


def preset(name: str) -> CpuSpec:
    if name not in PRESETS:
        raise ArgumentError(f"unknown cpu preset {name!r}; the presets are {', '.join(PRESETS)}")
    return PRESETS[name]


def _peak(cores: int, flops_per_cycle: int, ghz: float) -> float:
    return cores * flops_per_cycle * ghz


PRESETS = {spec.name: spec for spec in (
    # The record tests and golden files pin: two cores of an AVX2 server (the CI machines are
    # 2-core VMs), caches and rates typical of x86-64 server cores.  AVX2: 8 float32 lanes x 2
    # FMA pipes x 2 flops = 32 FLOPs per cycle per core at 2.5 GHz.
    CpuSpec("cpu-generic", cores=2, simd_bytes=32, l1=32 * KiB, l2=1 * MiB, l3=32 * MiB, dram=16 * GiB,
            gemm_gflops=_peak(2, 32, 2.5), gemm_gflops_f64=_peak(2, 16, 2.5), memory_gbs=20.0, clock_ghz=2.5,
            source="documented estimates of a 2-core AVX2 x86-64 server VM [E]"),
    # AMD EPYC 9654 (Genoa, Zen 4), AMD product page and the Zen 4 software optimization guide:
    # 96 cores, 2.4 GHz base, 32 KB L1d and 1 MB L2 per core, 384 MB L3 (32 MB per 8-core CCD;
    # one core sees its CCD's), 12 channels of DDR5-4800 = 460.8 GB/s [S]; AVX-512 on 256-bit
    # pipes: 2 FMA x 8 float32 lanes x 2 = 32 FLOPs per cycle per core [D].
    CpuSpec("epyc-9654", cores=96, simd_bytes=64, l1=32 * KiB, l2=1 * MiB, l3=32 * MiB, dram=768 * GiB,
            gemm_gflops=_peak(96, 32, 2.4), gemm_gflops_f64=_peak(96, 16, 2.4), memory_gbs=460.8, clock_ghz=2.4,
            source="AMD EPYC 9654 product page and Zen 4 optimization guide [S]; peaks [D]"),
    # Intel Xeon Platinum 8480+ (Sapphire Rapids), Intel ARK: 56 cores, 2.0 GHz base, 48 KB L1d and
    # 2 MB L2 per core, 105 MB L3, 8 channels of DDR5-4800 = 307.2 GB/s [S]; 2 AVX-512 FMA units:
    # 2 x 16 float32 lanes x 2 = 64 FLOPs per cycle per core [D] (AMX, for bf16/int8, unused).
    CpuSpec("xeon-8480", cores=56, simd_bytes=64, l1=48 * KiB, l2=2 * MiB, l3=105 * MiB, dram=512 * GiB,
            gemm_gflops=_peak(56, 64, 2.0), gemm_gflops_f64=_peak(56, 32, 2.0), memory_gbs=307.2, clock_ghz=2.0,
            source="Intel ARK, Xeon Platinum 8480+ [S]; peaks [D]"),
    # AWS Graviton3 (Neoverse V1), AWS and Arm documentation: 64 cores at 2.6 GHz, 64 KB L1d and
    # 1 MB L2 per core, 32 MB shared cache, 8 channels of DDR5-4800 = 307.2 GB/s [S]; SVE 256-bit,
    # 2 FMA pipes: 2 x 8 float32 lanes x 2 = 32 FLOPs per cycle per core [D].
    CpuSpec("graviton3", cores=64, simd_bytes=32, l1=64 * KiB, l2=1 * MiB, l3=32 * MiB, dram=256 * GiB,
            gemm_gflops=_peak(64, 32, 2.6), gemm_gflops_f64=_peak(64, 16, 2.6), memory_gbs=307.2, clock_ghz=2.6,
            source="AWS Graviton3 and Arm Neoverse V1 documentation [S]; peaks [D]"),
)}
