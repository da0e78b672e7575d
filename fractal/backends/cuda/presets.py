"""CUDA targets: the GPU presets and `cuda_target(arch, **overrides)`.

    cuda_target("sm_90")                      # the architecture's reference GPU: sm_80 a100, sm_89 l4, sm_90 h100
    cuda_target("sm_90", sms=114)             # with numbers of your own (an H100 PCIe has 114 SMs)
    cuda_target("sm_90", emulate=True)        # the same record, for the emulated backend (CPU)
    PRESETS["rtx4090"]()                      # a named GPU

A CUDA target is a `Hardware` record of kind "gpu" (`fractal.lower.hardware.gpu_hardware`: SMs,
registers and shared memory per SM and per block from the compute capability, L2, device memory,
peak GFLOP/s per dtype, `mma.sync` shapes) with the CUDA cost policy (`policy.CudaPolicy`).  Its
backend is "cuda" (run on a GPU) or "cuda-emulated" (the same CUDA C++ run on the CPU): same
record, same policy, so the same tile IR and the same generated source.  Every number says where
it comes from: [S] a vendor's document, [D] derived from [S] numbers, [U] an unofficial estimate,
a placeholder until someone measures it.  Nothing is probed: the record is the same on any machine.
"""

from __future__ import annotations

import dataclasses

from fractal.lang.errors import ArgumentError
from fractal.lower.hardware import A100_SPEC, H100_SPEC, GiB, GpuSpec, MiB, gpu_hardware
from fractal.lower.target import Target

from .policy import CudaPolicy

# NVIDIA L4 Tensor Core GPU datasheet: 7,424 CUDA cores = 58 SMs of 128 (Ada whitepaper), 2040 MHz
# boost, 24 GB GDDR6 at 300 GB/s, FP32 30.3 / TF32 60 / FP16 and BF16 121 TFLOPS dense (the
# sheet's 120 and 242 are with sparsity) [S]; 48 MB L2 (Ada Lovelace architecture whitepaper, AD104)
# [S]; FP64 at 1/64 of FP32 on Ada (CUDA C++ Programming Guide, arithmetic instruction throughput:
# 2 of 128 results per SM per cycle) [D]; L2 bandwidth scaled from the RTX 4090's by SMs x clock [U].
L4 = GpuSpec(
    "L4", "sm_89", sms=58, clock_ghz=2.04, l2=48 * MiB, l2_gbs=5000.0 * 58 / 128 * 2.04 / 2.52,
    dram_name="GDDR6", dram=24 * GiB, dram_gbs=300.0,
    peak_gflops=(("float64", 30_300.0 / 64), ("float32", 30_300.0), ("tf32", 60_000.0),
                 ("float16", 121_000.0), ("bfloat16", 121_000.0)),
    source="NVIDIA L4 datasheet, Ada whitepaper, CUDA C++ Programming Guide [S]; FP64 [D]; L2 bandwidth [U]")

# NVIDIA Ada Lovelace GPU architecture whitepaper (v1.1), GeForce RTX 4090 column: 128 SMs, 2520 MHz
# boost, 72 MB L2, 24 GB GDDR6X at 1,008 GB/s, FP32 82.6 TFLOPS, tensor TF32 82.6 and FP16/BF16
# with FP32 accumulation 165.2 TFLOPS dense (GeForce: half the FP16-accumulate rate) [S]; FP64 at
# 1/64 of FP32 [D]; L2 bandwidth about 5 TB/s (third-party microbenchmarks) [U].
RTX4090 = GpuSpec(
    "RTX4090", "sm_89", sms=128, clock_ghz=2.52, l2=72 * MiB, l2_gbs=5000.0,
    dram_name="GDDR6X", dram=24 * GiB, dram_gbs=1008.0,
    peak_gflops=(("float64", 82_600.0 / 64), ("float32", 82_600.0), ("tf32", 82_600.0),
                 ("float16", 165_200.0), ("bfloat16", 165_200.0)),
    source="NVIDIA Ada Lovelace whitepaper, CUDA C++ Programming Guide [S]; FP64 [D]; L2 bandwidth [U]")

SPECS = {"h100": H100_SPEC, "a100": A100_SPEC, "l4": L4, "rtx4090": RTX4090}
# The GPU an architecture stands for when a target is asked for by architecture alone.
REFERENCE = {"sm_80": "a100", "sm_89": "l4", "sm_90": "h100"}
_BACKEND = {False: "cuda", True: "cuda-emulated"}
_FIELDS = tuple(f.name for f in dataclasses.fields(GpuSpec) if f.name not in ("name", "arch", "source"))


def _target(name: str, spec: GpuSpec, emulate: bool, tf32: bool = False) -> Target:
    hw = gpu_hardware(spec)
    return Target(name + ("-emulated" if emulate else "") + ("-tf32" if tf32 else ""), _BACKEND[bool(emulate)],
                  hw, CudaPolicy(tf32=bool(tf32)), spec.source)


def preset_target(name: str, emulate: bool = False) -> Target:
    """The target of a named GPU (`SPECS`), for the "cuda" or the "cuda-emulated" backend."""
    return _target(name, SPECS[name], emulate)


def cuda_target(arch: str = "sm_90", *, emulate: bool = False, name: str | None = None, tf32: bool = False,
                **numbers) -> Target:
    """The target of `arch`'s reference GPU (`REFERENCE`), its numbers replaced by those given
    (fields of `GpuSpec`: sms, clock_ghz, l2, l2_gbs, dram_name, dram, dram_gbs, peak_gflops);
    `tf32=True` lets float32 GEMMs run on tensor cores in TF32."""
    if arch not in REFERENCE:
        raise ArgumentError(f"ft.targets.cuda() knows the architectures {', '.join(REFERENCE)} "
                            f"(their GPUs: {', '.join(REFERENCE.values())}), not {arch!r}")
    unknown = sorted(set(numbers) - set(_FIELDS))
    if unknown:
        raise ArgumentError(f"ft.targets.cuda() has no field {unknown[0]!r}; its fields are {', '.join(_FIELDS)}")
    reference = REFERENCE[arch]
    if not numbers and name is None:
        return _target(reference, SPECS[reference], emulate, tf32)
    given = ", ".join(f"{k}={v!r}" for k, v in sorted(numbers.items()))
    name = name or f"custom-{arch}"
    source = f"given: {given}; the rest from {reference}" if given else SPECS[reference].source
    try:
        return _target(name, dataclasses.replace(SPECS[reference], name=name, source=source, **numbers), emulate,
                       tf32)
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"ft.targets.cuda({arch!r}, {given}): {e}") from None


PRESETS = {name: (lambda name=name: preset_target(name)) for name in SPECS}
