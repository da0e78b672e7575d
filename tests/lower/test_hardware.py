"""Hardware records: frozen and printable; sane GPU spec records and PE meshes; and `gemm_tile`,
checked against brute force.  (CPU records: tests/backends/cpu/test_machines.py.)"""

from __future__ import annotations

import dataclasses
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractal.backends.cpu.machines import cpu_hardware, preset
from fractal.lower.hardware import A100_SXM_80GB, H100_SXM, Hardware, MemoryLevel, fits, gemm_tile, pe_mesh

SETTINGS = settings(max_examples=150, deadline=None)


def toy(align: int, tile_bytes: int) -> Hardware:
    return Hardware("toy", "cpu", 1, 16, (MemoryLevel("L1", tile_bytes, 100.0), MemoryLevel("DRAM", 1 << 30, 10.0)),
                    (("float32", 1.0),), tile_align=align, tile_level="L1")


GENERIC = cpu_hardware(preset("cpu-generic"))


# --- records -----------------------------------------------------------------------------------

@pytest.mark.parametrize("hw", [A100_SXM_80GB, H100_SXM, pe_mesh(4, 4), GENERIC], ids=lambda hw: hw.name)
def test_records_are_frozen_and_print_their_levels_and_peaks(hw):
    with pytest.raises(dataclasses.FrozenInstanceError):
        hw.cores = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        hw.levels[0].size_bytes = 1
    text = str(hw)
    assert text.splitlines()[0].startswith(f"{hw.name} ({hw.kind})")
    assert len(text.splitlines()) == len(hw.levels) + 2 + (2 if hw.gpu else 0)  # a GPU's limits and MMA shapes
    assert all(level.name in text for level in hw.levels) and "peak GFLOP/s" in text
    assert hw.level(hw.tile_level) in hw.levels


def test_levels_and_peaks_are_looked_up_by_name_with_clear_errors():
    assert A100_SXM_80GB.level("shared").size_bytes == 164 * 1024
    assert A100_SXM_80GB.peak(np.float32) == A100_SXM_80GB.peak("float32") == 19_500.0
    with pytest.raises(KeyError, match="no memory level 'L3'"):
        A100_SXM_80GB.level("L3")
    with pytest.raises(KeyError, match="no peak for dtype 'int8'"):
        A100_SXM_80GB.peak("int8")


def test_malformed_records_are_rejected():
    levels = (MemoryLevel("L1", 1024, 1.0),)
    with pytest.raises(ValueError, match="kind 'tpu'"):
        Hardware("x", "tpu", 1, 16, levels, (), tile_align=1, tile_level="L1")
    with pytest.raises(ValueError, match="tile level 'L2'"):
        Hardware("x", "cpu", 1, 16, levels, (), tile_align=1, tile_level="L2")
    with pytest.raises(ValueError, match="not unique"):
        Hardware("x", "cpu", 1, 16, levels * 2, (), tile_align=1, tile_level="L1")
    with pytest.raises(ValueError, match="must be positive"):
        MemoryLevel("L1", 0, 1.0)


def test_fits_is_inclusive_of_the_level_size():
    sram = pe_mesh(2, 2, sram_kib=4).level("sram").size_bytes
    assert fits(pe_mesh(2, 2, sram_kib=4), "sram", sram) and not fits(pe_mesh(2, 2, sram_kib=4), "sram", sram + 1)
    with pytest.raises(KeyError):
        fits(H100_SXM, "L3", 1)


# --- GPU and dataflow records ------------------------------------------------------------------

def test_a100_and_h100_match_their_spec_sheets_in_order_of_magnitude():
    for gpu in (A100_SXM_80GB, H100_SXM):
        assert gpu.kind == "gpu" and gpu.warp_size == 32 and gpu.max_threads_per_block == 1024
        assert [level.name for level in gpu.levels] == ["registers", "shared", "L2", "HBM"]
        assert gpu.tile_level == "shared" and gpu.tile_align % 16 == 0
        assert gpu.peak("float16") > gpu.peak("tf32") > gpu.peak("float32") > gpu.peak("float64")
        assert gpu.level("shared").bandwidth_gbs > gpu.level("L2").bandwidth_gbs > gpu.level("HBM").bandwidth_gbs
    assert H100_SXM.cores > A100_SXM_80GB.cores == 108
    for level in ("shared", "L2", "HBM"):
        assert H100_SXM.level(level).size_bytes >= A100_SXM_80GB.level(level).size_bytes
        assert H100_SXM.level(level).bandwidth_gbs > A100_SXM_80GB.level(level).bandwidth_gbs
    assert 2_000 <= A100_SXM_80GB.level("HBM").bandwidth_gbs < H100_SXM.level("HBM").bandwidth_gbs <= 3_500
    assert H100_SXM.peak("bfloat16") > 3 * A100_SXM_80GB.peak("bfloat16")


def test_pe_mesh_follows_the_dataflow_machine_model():
    mesh = pe_mesh(3, 5, sram_kib=64, link_gbs=8.0, reserved_kib=16, hop_latency_cycles=2)
    assert (mesh.kind, mesh.cores, mesh.mesh_shape) == ("dataflow", 15, (3, 5))
    assert (mesh.link_gbs, mesh.hop_latency_cycles, mesh.tile_level) == (8.0, 2, "sram")
    assert mesh.level("sram").size_bytes == 48 * 1024                  # what is left after the reserve
    assert mesh.level("mesh").size_bytes == 15 * 48 * 1024
    assert mesh.level("mesh").bandwidth_gbs == 2 * (3 * 4 + 5 * 2) * 8.0  # directed links x link rate
    default = pe_mesh(2, 2)
    assert default.level("sram").size_bytes == 48 * 1024 and default.link_gbs == 4.0   # WSE-2 PE
    for bad in [dict(rows=0, cols=2), dict(rows=2, cols=2, sram_kib=4, reserved_kib=4)]:
        with pytest.raises(ValueError, match="pe_mesh"):
            pe_mesh(**bad)


# --- gemm_tile ---------------------------------------------------------------------------------

def allowed_sides(dim: int, align: int) -> list[int]:
    return sorted({*range(align, dim + 1, align), dim})


def check_tile(hw: Hardware, dims: tuple[int, int, int], itemsize: int, tile: tuple[int, int, int]) -> None:
    for side, dim in zip(tile, dims):
        assert 0 < side <= dim and (side % hw.tile_align == 0 or side == dim)
    mt, nt, kt = tile
    assert fits(hw, hw.tile_level, (mt * kt + kt * nt + mt * nt) * itemsize)


def ratio(tile) -> Fraction:
    mt, nt, kt = tile
    return Fraction(mt * nt * kt, mt * kt + kt * nt + mt * nt)


@SETTINGS
@given(st.sampled_from([1, 2, 3, 4, 8, 16]), st.integers(16, 6000), st.sampled_from([1, 2, 4, 8]),
       st.tuples(*[st.integers(1, 40)] * 3))
def test_gemm_tile_is_the_best_aligned_tile_that_fits_by_brute_force(align, tile_bytes, itemsize, dims):
    hw = toy(align, tile_bytes)
    fitting = [t for t in itertools.product(*(allowed_sides(d, align) for d in dims))
               if fits(hw, "L1", (t[0] * t[2] + t[2] * t[1] + t[0] * t[1]) * itemsize)]
    if not fitting:
        with pytest.raises(ValueError, match="does not fit"):
            gemm_tile(hw, *dims, itemsize)
        return
    tile = gemm_tile(hw, *dims, itemsize)
    check_tile(hw, dims, itemsize, tile)
    best = max(ratio(t) for t in fitting)
    assert ratio(tile) == best
    assert math.prod(tile) == max(math.prod(t) for t in fitting if ratio(t) == best)  # ties: larger volume


@SETTINGS
@given(st.sampled_from([A100_SXM_80GB, H100_SXM, pe_mesh(2, 2), pe_mesh(2, 2, sram_kib=2, tile_align=4),
                        GENERIC]),
       st.tuples(*[st.integers(1, 5000)] * 3), st.sampled_from([2, 4, 8]))
def test_gemm_tile_on_real_records_is_aligned_fits_and_is_deterministic(hw, dims, itemsize):
    tile = gemm_tile(hw, *dims, itemsize)
    check_tile(hw, dims, itemsize, tile)
    assert gemm_tile(hw, *dims, itemsize) == tile


def test_gemm_tile_examples():
    assert gemm_tile(A100_SXM_80GB, 4096, 4096, 4096, 2) == (176, 160, 160)   # 164 KiB of f16
    assert gemm_tile(H100_SXM, 4096, 4096, 4096, 4) == (144, 144, 128)
    assert gemm_tile(toy(8, 1 << 20), 5, 7, 3, 4) == (5, 7, 3)                 # small dims: whole GEMM
    assert gemm_tile(toy(1, 27), 1, 4, 6, 1) == (1, 3, 6)   # ratio 2/3 like (1, 4, 4): the larger volume wins
    with pytest.raises(ValueError, match="must be positive"):
        gemm_tile(A100_SXM_80GB, 0, 4, 4, 4)
    with pytest.raises(ValueError, match="does not fit"):
        gemm_tile(pe_mesh(2, 2, sram_kib=1, tile_align=16), 64, 64, 64, 4)
