"""Index expressions compiled by g++ equal `tile_affine`'s own `evaluate`, floor division and
mod of negative values, min and max included; and their text is `str(index)` with calls."""

from __future__ import annotations

import ctypes
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractal.backends.codegen import HOST, index_expr, index_prelude
from fractal.lower import parse_index
from fractal.lower.tile_affine import Aff, FloorDiv, Max, Min, Mod, aff

from .cxx import build, dispatcher, pointer

VARS = ("i", "j", "q", "m")
COUNT = 300


def random_index(rng: random.Random, depth: int):
    """A random index built with the node constructors (nothing folded away)."""
    if depth == 0 or rng.random() < 0.25:
        return aff(rng.choice(VARS)) if rng.random() < 0.8 else aff(rng.randint(-9, 9))
    kind = rng.choice(("sum", "sum", "div", "mod", "min", "max"))
    if kind == "sum":
        return sum((rng.randint(-4, 4) * random_index(rng, depth - 1) for _ in range(rng.randint(1, 3))),
                   aff(rng.randint(-20, 20)))
    if kind in ("div", "mod"):
        node = FloorDiv if kind == "div" else Mod
        return aff(node(random_index(rng, depth - 1), rng.randint(1, 7)))
    args = tuple(random_index(rng, depth - 1) for _ in range(rng.randint(2, 3)))
    return aff((Min if kind == "min" else Max)(args))


INDICES = [random_index(random.Random(k), 4) for k in range(COUNT)]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    unpack = " ".join(f"std::int64_t {v} = vals[{k}];" for k, v in enumerate(VARS))
    fns = "".join(f"static std::int64_t idx{k}(const std::int64_t* vals) {{ {unpack} "
                  f"{' '.join(f'(void){v};' for v in VARS)} return {index_expr(x)}; }}\n"
                  for k, x in enumerate(INDICES))
    source = "#include <cstdint>\n" + index_prelude(HOST) + fns + dispatcher(
        "std::int64_t", "eval_index", "const std::int64_t* vals", "vals", COUNT, "idx")
    lib = build(tmp_path_factory, "index", source)
    lib.eval_index.restype = ctypes.c_int64
    lib.eval_index.argtypes = [ctypes.c_int, ctypes.c_void_p]
    return lib


@settings(max_examples=300, deadline=None)
@given(k=st.integers(0, COUNT - 1), values=st.lists(st.integers(-1000, 1000), min_size=4, max_size=4))
def test_compiled_index_equals_evaluate(lib, k, values):
    vals = np.array(values, np.int64)
    assert lib.eval_index(k, pointer(vals)) == INDICES[k].evaluate(dict(zip(VARS, values))), index_expr(INDICES[k])


def test_every_variable_value_of_floor_and_mod_around_zero(lib):
    cases = [k for k, x in enumerate(INDICES) if "fl_div" in index_expr(x) or "fl_mod" in index_expr(x)]
    assert len(cases) > 50
    for k in cases[:40]:
        for v in range(-9, 10):
            vals = np.array([v, -v, v - 3, 2 * v], np.int64)
            assert lib.eval_index(k, pointer(vals)) == INDICES[k].evaluate(dict(zip(VARS, vals.tolist())))


@pytest.mark.parametrize("text, cxx", [
    ("2*i + j - 1", "2*i + j - 1"),
    ("-i + 3", "-i + 3"),
    ("floor((i + 3) / 4)", "fl_div(i + 3, 4)"),
    ("q mod 4", "fl_mod(q, 4)"),
    ("2*(q mod 4) + i", "i + 2*fl_mod(q, 4)"),
    ("max(0, m - 63)", "fl_max(0, m - 63)"),
    ("min(5, s + 1, t)", "fl_min(fl_min(5, s + 1), t)"),
    ("-3*floor((3 - i) / 2)", "-3*fl_div(-i + 3, 2)"),
    ("7", "7"),
])
def test_text_is_the_index_with_calls_and_no_parentheses(text, cxx):
    assert index_expr(parse_index(text)) == cxx


def test_names_rename_variables():
    assert index_expr(parse_index("2*i + floor(j / 3)"), {"i": "blockIdx_x", "j": "t"}) == "2*blockIdx_x + fl_div(t, 3)"


def test_equal_indices_print_equal_text():
    a = aff("i") * 2 + FloorDiv(aff("j") - 1, 3) + 4
    b = 4 + aff(FloorDiv(Aff((("j", 1),), -1), 3)) + aff("i") + aff("i")
    assert index_expr(a) == index_expr(b) == "2*i + fl_div(j - 1, 3) + 4"
