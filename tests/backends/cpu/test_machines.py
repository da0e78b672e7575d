"""CPU targets as data: presets with their sources, records from your numbers, this machine
measured once and kept on disk, and `FRACTAL_HOST` replacing the measurement."""

from __future__ import annotations

import json
import math
import os

import pytest

import fractal as ft
from fractal.backends.cpu import host
from fractal.backends.cpu.machines import PRESETS, CpuSpec, cpu_hardware
from fractal.backends.cpu.policy import CpuPolicy
from fractal.lower.hardware import KiB, MiB


def affinity_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


@pytest.fixture
def fresh_host(monkeypatch, tmp_path):
    """No measurement in this process or on disk; a fast, fake benchmark."""
    monkeypatch.delenv("FRACTAL_HOST", raising=False)
    monkeypatch.setenv("FRACTAL_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(host, "gemm_gflops", lambda dtype: calls.append(dtype) or {"float32": 70.0, "float64": 35.0}[dtype])
    monkeypatch.setattr(host, "copy_gbs", lambda: 12.5)
    host._measured.cache_clear()
    yield calls
    host._measured.cache_clear()


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_cpu_target_that_says_where_its_numbers_come_from(name):
    t = ft.targets.get(name)
    assert (t.name, t.backend, t.hardware.kind) == (name, "cpu", "cpu") and isinstance(t.policy, CpuPolicy)
    assert t.source and ("[S]" in t.source or "[E]" in t.source)
    levels = [level.name for level in t.hardware.levels]
    assert levels[0] == "registers" and levels[-1] == "DRAM" and t.hardware.tile_level == "L2"
    sizes = [level.size_bytes for level in t.hardware.levels]
    assert sizes == sorted(sizes)  # fastest (smallest) first
    assert t.hardware.peak("float32") == 2 * t.hardware.peak("float64") > 0
    assert name in str(t) and "policy: CpuPolicy(" in str(t)


def test_a_custom_cpu_takes_the_given_numbers_and_the_rest_from_cpu_generic():
    t = ft.targets.cpu("big-l2", cores=8, l2=4 * MiB, gemm_gflops=900.0)
    hw = t.hardware
    assert (t.name, hw.cores, hw.level("L2").size_bytes, hw.peak("float32")) == ("big-l2", 8, 4 * MiB, 900.0)
    assert hw.level("L1").size_bytes == PRESETS["cpu-generic"].l1 and "l2=4194304" in t.source
    assert ft.targets.cpu(cores=8) == ft.targets.cpu(cores=8)  # data: equal numbers, equal targets


def test_a_cpu_with_no_l3_has_no_l3_level():
    assert [lv.name for lv in ft.targets.cpu(l3=0).hardware.levels] == ["registers", "L1", "L2", "DRAM"]


@pytest.mark.parametrize("bad, message", [
    (dict(cores=0), "cores must be a positive number, got 0"),
    (dict(l2=-1), "l2 must be a positive number"),
    (dict(l3=-4), "l3 must be 0 .none. or a positive size"),
    (dict(gemm_gflops="fast"), "gemm_gflops must be a positive number, got 'fast'"),
    (dict(l4=1 << 30), "ft.targets.cpu.. has no field 'l4'"),
])
def test_a_custom_cpu_with_bad_numbers_is_refused(bad, message):
    with pytest.raises(ft.ArgumentError, match=message):
        ft.targets.cpu(**bad)


def test_the_host_is_measured_once_and_read_back_from_disk(fresh_host, tmp_path):
    t = ft.targets.host()
    assert t.name == "host" and t.hardware.cores == affinity_count()
    assert t.hardware.peak("float32") == 70.0 and t.hardware.levels[-1].bandwidth_gbs == 12.5
    assert fresh_host == ["float32", "float64"] and "measured on" in t.source
    (saved,) = tmp_path.glob("host-*.json")
    assert json.loads(saved.read_text())["gemm_gflops"] == 70.0
    host._measured.cache_clear()  # a new process: read from disk, not measured again
    assert ft.targets.host() == t and fresh_host == ["float32", "float64"]


def test_the_host_without_sys_or_proc_files_is_a_generic_record(fresh_host, monkeypatch):
    monkeypatch.setattr(host, "read_text", lambda path: None)
    hw = ft.targets.host().hardware
    assert hw.simd_width_bytes == 16 and hw.cores == affinity_count() and "generic cpu" in ft.targets.host().source
    assert [level.name for level in hw.levels] == ["registers", "L1", "L2", "DRAM"]  # no L3 known: none


def test_the_host_parses_sys_cache_files_and_skips_odd_ones(fresh_host, monkeypatch):
    files = {"index0": dict(level="1", type="Data", size="48K"), "index1": dict(level="1", type="Instruction", size="32K"),
             "index2": dict(level="2", type="Unified", size="2048K"), "index3": dict(level="3", type="Unified", size="30M"),
             "index4": dict(level="4", type="Unified", size="lots")}
    fake = {f"{host._SYS_CACHE}/{index}/{name}": text for index, entries in files.items() for name, text in entries.items()}
    fake["/proc/cpuinfo"] = "model name\t: Test CPU 9000\ncpu MHz\t\t: 3100.0\nflags\t\t: fpu sse2 avx avx2 avx512f\n"
    monkeypatch.setattr(host, "read_text", fake.get)
    t = ft.targets.host()
    hw = t.hardware
    assert (hw.simd_width_bytes, hw.clock_ghz) == (64, 3.1) and "Test CPU 9000" in t.source
    assert [(lv.name, lv.size_bytes) for lv in hw.levels[1:-1]] == [("L1", 48 * KiB), ("L2", 2 * MiB), ("L3", 30 * MiB)]


def test_the_real_benchmarks_give_positive_rates():
    assert math.isfinite(host.gemm_gflops("float32", n=64, repeats=1)) and host.gemm_gflops("float32", n=64, repeats=1) > 0
    assert host.copy_gbs(1 << 20, repeats=1) > 0


def test_fractal_host_names_a_preset_or_a_json_record_instead_of_measuring(fresh_host, monkeypatch, tmp_path):
    monkeypatch.setenv("FRACTAL_HOST", "xeon-8480")
    t = ft.targets.host()
    assert (t.name, t.hardware.cores) == ("host", 56) and fresh_host == [] and "FRACTAL_HOST=xeon-8480" in t.source
    record = tmp_path / "tiny.json"
    record.write_text(json.dumps({**PRESETS["cpu-generic"].__dict__, "l2": 64 * KiB, "l3": 0}))
    monkeypatch.setenv("FRACTAL_HOST", str(record))
    assert ft.targets.host().hardware.level("L2").size_bytes == 64 * KiB and fresh_host == []


@pytest.mark.parametrize("value, message", [("no-such-cpu", "neither a preset"), ("{}", "neither a preset")])
def test_a_bad_fractal_host_is_refused(fresh_host, monkeypatch, value, message):
    monkeypatch.setenv("FRACTAL_HOST", value)
    with pytest.raises(ft.ArgumentError, match=message):
        ft.targets.host()


def test_a_json_record_of_other_numbers_is_refused(fresh_host, monkeypatch, tmp_path):
    record = tmp_path / "bad.json"
    record.write_text(json.dumps({"cores": "two"}))
    monkeypatch.setenv("FRACTAL_HOST", str(record))
    with pytest.raises(ft.ArgumentError, match="not a CPU record"):
        ft.targets.host()


def test_records_are_data_built_from_their_spec():
    spec = PRESETS["epyc-9654"]
    hw = cpu_hardware(spec)
    assert hw == cpu_hardware(CpuSpec(**spec.__dict__)) and hw.level("L3").shared_by == 96
