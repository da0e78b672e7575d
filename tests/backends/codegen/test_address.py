"""Region offsets compiled by g++ equal NumPy's strided indexing of the buffer, for random
shapes, layouts (axis orders in memory) and regions (index and range axes, strides, starts
that read a loop variable)."""

from __future__ import annotations

import ctypes
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractal.backends.codegen import HOST, offset, point_offset
from fractal.backends.pointwise import region as numpy_region
from fractal.lang.errors import ArgumentError
from fractal.lower.tile_affine import aff
from fractal.lower.tile_nodes import Buffer, Region

from .cxx import build, dispatcher, pointer

COUNT = 200
T = 3  # the loop variable t runs over 0..T-1


def random_case(rng: random.Random):
    ndim = rng.randint(1, 4)
    shape = tuple(rng.randint(1, 6) for _ in range(ndim))
    layout = list(range(ndim))
    rng.shuffle(layout)
    buf = Buffer("b", shape, "float32", layout=tuple(layout))
    starts, sizes, strides = [], [], []
    for n in shape:
        index = rng.random() < 0.4
        step = rng.choice((1, 1, 2))
        size = None if index else rng.randint(1, max(1, (n - 1) // step + 1))
        extent = 1 if index else (size - 1) * step + 1  # the elements it spans
        room = n - extent  # the largest start that stays inside
        uses_t = room >= T - 1 and rng.random() < 0.5
        c = rng.randint(0, room - (T - 1) if uses_t else room)
        starts.append(aff("t") + c if uses_t else aff(c))
        sizes.append(size)
        strides.append(step)
    return buf, Region("b", tuple(starts), tuple(sizes), tuple(strides))


CASES = [random_case(random.Random(k)) for k in range(COUNT)]
MAXDIM = 4
EVARS = tuple(f"e{a}" for a in range(MAXDIM))


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    evars = EVARS
    unpack = "std::int64_t t = v[0]; " + " ".join(f"std::int64_t {e} = v[{a + 1}];" for a, e in enumerate(evars))
    unused = " ".join(f"(void){e};" for e in ["t", *evars])
    fns = "".join(f"static std::int64_t off{k}(const std::int64_t* v) {{ {unpack} {unused} "
                  f"return {offset(r, b, evars[:len(r.shape)])}; }}\n" for k, (b, r) in enumerate(CASES))
    source = "#include <cstdint>\n" + fns + dispatcher("std::int64_t", "region_offset", "const std::int64_t* v", "v",
                                                        COUNT, "off")
    lib = build(tmp_path_factory, "address", source)
    lib.region_offset.restype = ctypes.c_int64
    lib.region_offset.argtypes = [ctypes.c_int, ctypes.c_void_p]
    return lib


def offsets_array(buf: Buffer) -> np.ndarray:
    """The buffer's logical array whose elements are their own linear offsets in memory."""
    stored = np.arange(int(np.prod(buf.shape))).reshape([buf.shape[a] for a in buf.layout])
    return np.transpose(stored, np.argsort(buf.layout))


@settings(max_examples=200, deadline=None)
@given(k=st.integers(0, COUNT - 1), t=st.integers(0, T - 1))
def test_offset_of_every_point_equals_numpy_strided_indexing(lib, k, t):
    buf, r = CASES[k]
    expected = numpy_region(r, {"t": t}, {"b": offsets_array(buf)})
    assert expected.shape == r.shape
    for point in np.ndindex(*r.shape):
        v = np.array([t, *point, *[0] * (MAXDIM - len(point))], np.int64)
        assert lib.region_offset(k, pointer(v)) == expected[point], (offset(r, buf, EVARS[:len(point)]), point)


def test_offset_text_merges_terms_and_folds_constants():
    b = Buffer("h", (5, 6, 8), "float32", layout=(0, 2, 1))  # axis 1 innermost: strides (48, 1, 6)
    r = Region("h", (aff("l") + 1, aff("s"), 0), (None, 4, 8), (1, 1, 1))
    assert offset(r, b, ("e0", "e1")) == "e0 + 6*e1 + 48*l + s + 48"
    assert offset(r, b, ("e0", "e1"), {"l": "layer"}) == "e0 + 6*e1 + 48*layer + s + 48"


def test_a_strided_range_axis_scales_its_element_variable():
    b = Buffer("x", (4, 10), "float64")
    assert offset(Region("x", (aff("i"), 1), (None, 3), (1, 3)), b, ("e",)) == "3*e + 10*i + 1"
    assert point_offset(Region("x", (aff("i"), 1), (None, 3), (1, 3)), b, ("e",)).evaluate({"i": 2, "e": 2}) == 27


def test_a_region_of_another_buffer_is_refused():
    with pytest.raises(ArgumentError, match="region y with 2 axes is not a region of buffer x with 2 axes"):
        offset(Region("y", (0, 0), (2, 2)), Buffer("x", (4, 4), "float32"), ("a", "b"))


def test_one_element_variable_per_range_axis():
    with pytest.raises(ArgumentError, match=r"region x has 1 range axes, got 2 element variables \('a', 'b'\)"):
        offset(Region("x", (aff("i"), 0), (None, 4)), Buffer("x", (4, 4), "float32"), ("a", "b"))
