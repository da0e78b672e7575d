"""The `pointwise` backend: the tile IR run point by point, registered like any backend.

It computes what the interpreter does on every zoo model (ragged and regular), what the cpu
backend does on the same tile IR, says a bad traced index at the user's line, and compiles
for cpu-generic's record and policy (the cpu backend's tile IR there)."""

from __future__ import annotations

import numpy as np
import pytest

import fractal as ft
from examples import zoo
from fractal.backends import get
from fractal.lang.errors import LengthError

MODELS = zoo.available()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("ragged", [True, False], ids=["ragged", "regular"])
def test_every_zoo_model_runs_point_by_point_as_interpreted(name, ragged):
    m = zoo.load(name)
    args = m.inputs("small", dtype=np.float64, ragged=ragged)
    got = m.outputs(m.model(*args, backend="pointwise"))
    want = m.outputs(m.model.interpret(*args))
    assert zoo.max_abs_error(got, want) <= 1e-10


def test_it_runs_the_cpu_backends_tile_ir_at_cpu_generic_to_the_same_results():
    m = zoo.load("grid_rnn")
    args = m.inputs("small", dtype=np.float64)
    slow = m.model.compile(*args, backend="pointwise")
    fast = m.model.compile(*args, target="cpu-generic")
    assert slow.tile_ir == fast.tile_ir
    assert slow.target.backend == "pointwise" and slow.target.hardware == fast.target.hardware
    assert zoo.max_abs_error(m.outputs(slow.run(*args)), m.outputs(fast.run(*args))) <= 1e-12


def test_a_traced_index_out_of_range_is_said_at_the_gathers_line():
    @ft.function
    def pick(xs, i):
        return ft.gather(xs, i)

    xs = ft.fractal([np.ones((2,)), np.zeros((2,))], type=ft.FractalTensor[ft.Tensor[(2,), np.float64]])
    with pytest.raises(LengthError, match="out of range") as e:
        pick(xs, np.array([0, 2], np.int64), backend="pointwise")
    assert "return ft.gather(xs, i)" in str(e.value)


def test_it_is_a_tile_backend_with_one_named_target():
    backend = get("pointwise")
    assert backend.consumes == "tile" and set(backend.targets()) == {"pointwise"}
    assert ft.targets.get("pointwise").backend == "pointwise"
