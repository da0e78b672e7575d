"""CUDA targets: named GPUs and `ft.targets.cuda(arch)` as data.

* Each preset is a "gpu" record whose per-SM and per-block limits are its compute capability's
  (CUDA C++ Programming Guide), whose numbers are the vendor's (pinned here against the sheets),
  and which says where every number comes from; `fractal targets` prints them.
* `ft.targets.cuda(arch)` is the architecture's reference GPU; numbers of one's own replace its
  (derived numbers follow); `emulate=True` keeps the record and names the emulated backend.
* The same call gives the same record on any machine (nothing is probed).
* Compiling for a GPU on a machine without CuPy or a GPU says so and suggests the emulation;
  an emulated GPU runs.
* Bad architectures and fields are refused, naming what there is.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import fractal as ft
from fractal.backends.cuda.policy import CudaPolicy
from fractal.cli import main
from fractal.lower.hardware import A100_SXM_80GB, ARCHS, H100_SXM, KiB
from fractal.lower.policy import BatchFacts, ScheduleOption, SinkFacts, TileFacts

GPUS = ("h100", "a100", "l4", "rtx4090")


@pytest.mark.parametrize("name", GPUS)
def test_every_gpu_preset_is_a_gpu_record_with_its_architectures_limits_and_sources(name):
    target = ft.targets.get(name)
    hw = target.hardware
    assert target.backend == "cuda" and isinstance(target.policy, CudaPolicy) and name in ft.targets.names()
    assert hw.kind == "gpu" and hw.warp_size == 32 and hw.max_threads_per_block == 1024
    assert hw.gpu in ARCHS.values() and hw.level("shared").size_bytes == hw.gpu.shared_per_sm
    assert hw.gpu.shared_per_block < hw.gpu.shared_per_sm and hw.gpu.static_shared_per_block == 48 * KiB
    assert hw.level("registers").size_bytes == 4 * hw.gpu.registers_per_sm == 256 * KiB
    assert hw.gpu.mma("float16")[0] == hw.gpu.mma(np.float16)[0] == (16, 8, 16) and hw.gpu.mma("tf32")[0] == (16, 8, 8)
    assert hw.peak("float16") > hw.peak("tf32") >= hw.peak("float32") > hw.peak("float64")
    assert "[S]" in target.source and "[U]" in target.source  # vendor numbers, and the placeholders marked


def test_the_presets_numbers_are_the_vendors():
    h100, a100, l4, rtx = (ft.targets.get(n).hardware for n in GPUS)
    assert h100 == H100_SXM and a100 == A100_SXM_80GB
    assert [hw.cores for hw in (h100, a100, l4, rtx)] == [132, 108, 58, 128]
    assert [hw.gpu.name for hw in (h100, a100, l4, rtx)] == ["sm_90", "sm_80", "sm_89", "sm_89"]
    assert [hw.gpu.compute_capability for hw in (h100, a100, l4)] == [(9, 0), (8, 0), (8, 9)]
    assert [hw.levels[-1].bandwidth_gbs for hw in (h100, a100, l4, rtx)] == [3350.0, 2039.0, 300.0, 1008.0]
    assert [hw.level("L2").size_bytes >> 20 for hw in (h100, a100, l4, rtx)] == [50, 40, 48, 72]
    assert [hw.gpu.shared_per_block // KiB for hw in (h100, a100, l4)] == [227, 163, 99]
    assert [hw.gpu.max_threads_per_sm for hw in (h100, a100, l4)] == [2048, 2048, 1536]
    assert rtx.peak("float16") == 165_200.0 and l4.peak("bfloat16") == 121_000.0 and h100.peak("tf32") == 494_700.0
    # FP32 peak = SMs x FP32 lanes x 2 (FMA) x boost clock, within the sheets' rounding
    for hw in (h100, a100, l4, rtx):
        assert hw.peak("float32") == pytest.approx(hw.cores * hw.gpu.fp32_lanes_per_sm * 2 * hw.clock_ghz, rel=0.01)
    assert h100.gpu.mma("float64")[0] == (16, 8, 16) and a100.gpu.mma("float64") == ((8, 8, 4),)
    assert h100.gpu.mma("float8") == ()


def test_an_architecture_gives_its_reference_gpu_and_numbers_of_ones_own_replace_its():
    assert ft.targets.cuda("sm_90") == ft.targets.get("h100") and ft.targets.cuda() == ft.targets.get("h100")
    assert ft.targets.cuda("sm_80") == ft.targets.get("a100") and ft.targets.cuda("sm_89") == ft.targets.get("l4")
    pcie = ft.targets.cuda("sm_90", sms=114, dram_gbs=2000.0, name="h100-pcie")
    hw = pcie.hardware
    assert pcie.name == "h100-pcie" and hw.cores == 114 and hw.levels[-1].bandwidth_gbs == 2000.0
    assert hw.level("L2").shared_by == 114 and hw.level("shared").bandwidth_gbs < H100_SXM.level("shared").bandwidth_gbs
    assert hw.gpu == H100_SXM.gpu and "given: dram_gbs=2000.0, sms=114; the rest from h100" in pcie.source
    assert ft.targets.cuda("sm_80", peak_gflops={"float32": 1.0}).hardware.peak_gflops == (("float32", 1.0),)


def test_emulate_keeps_the_record_and_names_the_emulated_backend():
    real, emulated = ft.targets.cuda("sm_90"), ft.targets.cuda("sm_90", emulate=True)
    assert emulated.backend == "cuda-emulated" and emulated.name == "h100-emulated"
    assert emulated.hardware == real.hardware and emulated.policy == real.policy and emulated != real
    assert ft.targets.cuda("sm_80", emulate=True, sms=2).name == "custom-sm_80-emulated"


def test_a_target_is_the_same_record_on_any_machine(monkeypatch):
    before = repr(ft.targets.cuda("sm_89", sms=3)), str(ft.targets.get("rtx4090"))
    monkeypatch.setenv("FRACTAL_HOST", "graviton3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert (repr(ft.targets.cuda("sm_89", sms=3)), str(ft.targets.get("rtx4090"))) == before


def test_compiling_for_a_gpu_without_one_says_so_and_suggests_the_emulation(monkeypatch):
    @ft.function
    def double(x):
        return x * 2.0

    monkeypatch.setitem(sys.modules, "cupy", None)  # (this machine without CuPy, whatever it has)
    with pytest.raises(ft.DeviceError, match=r"the 'cuda' backend runs its kernels with CuPy, .* run the same "
                                             r"kernels on the CPU with ft.targets.cuda\(..., emulate=True\)"):
        double(np.ones(2, np.float32), target="h100")
    assert ft.backends.get("cuda").default_target() == ft.targets.get("h100")


def test_an_emulated_gpu_target_runs_the_program():
    @ft.function
    def double(x):
        return x * 2.0

    out = double(np.arange(3, dtype=np.float32), target=ft.targets.cuda("sm_80", emulate=True))
    np.testing.assert_array_equal(out, [0.0, 2.0, 4.0])


@pytest.mark.parametrize("call, message", [
    (lambda: ft.targets.cuda("sm_75"), "ft.targets.cuda.. knows the architectures sm_80, sm_89, sm_90 "
                                       r"\(their GPUs: a100, l4, h100\), not 'sm_75'"),
    (lambda: ft.targets.cuda("sm_90", cores=4), "ft.targets.cuda.. has no field 'cores'; its fields are sms, "
                                                "clock_ghz, l2, l2_gbs, dram_name, dram, dram_gbs, peak_gflops"),
    (lambda: ft.targets.cuda("sm_90", sms=0), r"ft.targets.cuda\('sm_90', sms=0\): gpu 'custom-sm_90': sms must "
                                              "be a positive number, got 0"),
    (lambda: ft.targets.cuda("sm_90", sms=1.5), "sms must be an int and every peak a positive number"),
])
def test_bad_architectures_and_numbers_are_refused_naming_what_there_is(call, message):
    with pytest.raises(ft.ArgumentError, match=message):
        call()


def test_the_gpu_policy_batches_never_sinks_never_tiles_and_takes_the_fewest_steps():
    policy, hw = CudaPolicy(), H100_SXM
    assert policy.batch_across(BatchFacts(steps=4, points=1, step_bytes=1 << 30, shares_weight=False), hw)
    assert not policy.batch_across(BatchFacts(4, 1, 64, True, recurrent=True), hw)  # the wavefront pass weighs it
    assert not policy.sink_into(SinkFacts(steps=2, step_bytes=1), hw)
    assert policy.tile_rows(TileFacts(rows=1 << 20, row_bytes=1 << 20, has_gemm=True), hw) is None
    options = [ScheduleOption("as written", 64, None), ScheduleOption("wavefront", 40, None),
               ScheduleOption("batched", 40, None)]
    assert policy.choose_schedule(options, hw) == 1


def test_fractal_targets_lists_the_gpus_with_their_numbers_and_sources(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert main(["targets", "h100", "l4"]) == 0
    out = capsys.readouterr().out
    assert "h100 (backend cuda): NVIDIA H100 datasheet" in out and "l4 (backend cuda): NVIDIA L4 datasheet" in out
    assert "sm_90 (compute capability 9.0): shared 228 KiB/SM, 227 KiB/block" in out
    assert "mma.sync shapes: float16 m16n8k16 m16n8k8" in out and "GDDR6         24 GiB       300 GB/s" in out
    assert "(the 'cuda' backend cannot run it here (no CuPy); h100-emulated runs the same kernels on the CPU)" in out
    assert "(the 'cuda' backend cannot run it here (no CuPy); l4-emulated runs the same kernels on the CPU)" in out
    assert main(["targets"]) == 0 and "rtx4090 (backend cuda)" in capsys.readouterr().out
