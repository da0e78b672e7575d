"""Cutting a product into blocks of its result: before and after, and the same answer."""

from __future__ import annotations

import numpy as np

from fractal.backends.dataflow.split import blocks, split_gemm
from fractal.backends.pointwise import run_pointwise
from fractal.lower.tile_ir import Buffer, Gemm, Stage, TileProgram
from fractal.lower.tile_parser import parse_region as R


def _stage(trans_b=False):
    b = R("w[0:8, 0:6]") if trans_b else R("w[0:6, 0:8]")
    return Stage("mm", (("m", 0, 3),), (Gemm(R("a[m, 0:4, 0:6]"), b, R("c[m, 0:4, 0:8]"), trans_b=trans_b),))


def test_a_product_is_cut_into_blocks_of_its_result():
    cut = split_gemm(_stage(), 2, 4)
    assert str(cut).splitlines() == [
        "stage mm(m in 0:3, mm_gm in 0:2, mm_gn in 0:2) device {",
        "  c[m, 2*mm_gm:2*mm_gm + 2, 4*mm_gn:4*mm_gn + 4] = gemm(a[m, 2*mm_gm:2*mm_gm + 2, 0:6], "
        "w[0:6, 4*mm_gn:4*mm_gn + 4])",
        "}"]


def test_the_blocks_compute_the_same_product():
    rng = np.random.default_rng(0)
    for trans_b in (False, True):
        buffers = (Buffer("a", (3, 4, 6), "f8", role="input"), Buffer("w", (8, 6) if trans_b else (6, 8), "f8", role="input"),
                   Buffer("c", (3, 4, 8), "f8", role="output"))
        inputs = {"a": rng.integers(-3, 4, (3, 4, 6)).astype("f8"),
                  "w": rng.integers(-3, 4, (8, 6) if trans_b else (6, 8)).astype("f8")}
        whole = run_pointwise(TileProgram("p", buffers, (_stage(trans_b),)), inputs)["c"]
        cut = run_pointwise(TileProgram("p", buffers, (split_gemm(_stage(trans_b), 1, 2),)), inputs)["c"]
        assert np.array_equal(whole, cut)


def test_the_fewest_blocks_that_fit_are_chosen():
    # a point: 4x6 + 6x8 + 4x8 = 104 elements; blocks of 4x4: 24 + 24 + 16 = 64
    assert blocks(_stage(), lambda elements: elements <= 64).dims[-2:] == split_gemm(_stage(), 4, 4).dims[-2:]
    assert blocks(_stage(), lambda elements: elements <= 3) is None
