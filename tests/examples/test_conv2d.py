"""conv2d: nested windows (rows, then columns), stride/padding/dilation, batch-norm statistics."""

import numpy as np
import pytest

import fractal as ft
from examples import conv2d as m
from examples import zoo


def _combinators(region):
    return [e.op for e in region.eqns if e.regions]


def _windows(program):
    return [e.attrs for e in program.eqns() if e.op == "window"]


def test_nest_is_image_map_row_window_map_column_window_map_tap_reduce():
    program = m.model.trace(*m.inputs("small"))
    assert _combinators(program.body) == ["map", "reduce", "reduce", "map"]  # conv, mean, var, normalise
    image = program.body.eqns[[e.op for e in program.body.eqns].index("map")].regions[0]
    assert _combinators(image) == ["map", "map"]           # zero row, output rows over row windows
    row = image.eqns[-1].regions[0]
    assert _combinators(row) == ["map", "map"]             # columns of K pixels, output pixels
    pixel = row.eqns[-1].regions[0]
    assert _combinators(pixel) == ["reduce"]               # the K kernel taps
    ops = [e.op for e in program.body.eqns]
    assert ops.count("flatten") == 2 and "length" in ops   # batch statistics over every pixel


def test_rows_are_padded_by_join_and_columns_by_the_window():
    program = m.model.trace(*m.inputs("small"))
    rows, cols = _windows(program)
    assert rows["padding"] == 0 and cols["padding"] == 1 and rows["size"] == cols["size"] == 3
    ops = [e.op for e in program.eqns()]
    assert ops.count("join") == 2 and "repeat" in ops


def test_stride_padding_dilation_reach_the_windows():
    program = m.model.trace(*m.inputs("small_strided"))
    for w in _windows(program):
        assert (w["stride"], w["dilation"]) == (2, 2)
    assert _windows(program)[1]["padding"] == 2


def test_no_padding_needs_no_join():
    images, weight, bn, _ = m.inputs("small")
    program = m.model.trace(images, weight, bn, m.Conv(1, 0, 1))
    assert "join" not in {e.op for e in program.eqns()}


@pytest.mark.parametrize("conv", [m.Conv(1, 0, 1), m.Conv(2, 1, 1), m.Conv(1, 2, 2), m.Conv(3, 1, 1)])
def test_geometry_variants_match_numpy(conv):
    images, weight, bn, _ = m.inputs("small", dtype=np.float64)
    got = m.outputs(m.model(images, weight, bn, conv))
    want = m.reference(images, weight, bn, conv)
    assert [g.shape for g in got] == [w.shape for w in want]
    assert zoo.max_abs_error(got, want) <= 1e-9


def test_ragged_images_keep_their_own_output_sizes():
    images, weight, bn, conv = m.inputs("small")
    sizes = [(len(img), len(img[0])) for img in images]
    assert len(set(sizes)) > 1
    for out, (h, w) in zip(m.outputs(m.model(images, weight, bn, conv)), sizes):
        assert out.shape == (h, w, weight.shape[-1])     # stride 1, "same" padding


def test_batch_norm_output_has_the_affine_statistics():
    images, weight, bn, conv = m.inputs("small", dtype=np.float64)
    pixels = np.concatenate([o.reshape(-1, o.shape[-1]) for o in m.outputs(m.model(images, weight, bn, conv))])
    np.testing.assert_allclose(pixels.mean(0), bn.beta[0], atol=1e-12)
    np.testing.assert_allclose(pixels.std(0), np.abs(bn.gamma[0]), rtol=1e-3)  # var / (var + eps)


@pytest.mark.skipif(not zoo.torch_available(), reason="PyTorch is not installed")
def test_strided_dilated_matches_torch():
    args = m.inputs("small_strided", dtype=np.float64)
    assert zoo.max_abs_error(m.outputs(m.model(*args)), m.torch_reference(*args)) <= 1e-9


def test_images_are_depth_3():
    images, *_ = m.inputs("small")
    assert images.depth == 3 and images.type.leaf == ft.Tensor[(1, 2), ft.float32]
