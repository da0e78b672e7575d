"""The host arrays of a run: every executor checks the inputs the same way (`host.host_arrays`)."""

from __future__ import annotations

import numpy as np
import pytest

from fractal.backends.dataflow.blocked import run_local
from fractal.backends.dataflow.bsp import run_bsp
from fractal.backends.dataflow.event import run_event
from fractal.backends.dataflow.host import host_arrays
from fractal.lang.errors import ArgumentError, ShapeError

from .programs import cannon

# Each executor's outputs; run_local is the MPI executor's run on one rank (`blocked.BlockRun`).
EXECUTORS = {"bsp": lambda program, inputs: run_bsp(program, inputs)[0],
             "event": lambda program, inputs: run_event(program, inputs)[0],
             "blocked": run_local}


def square(n: int = 4, dtype=np.float64) -> np.ndarray:
    return np.arange(n * n).reshape(n, n).astype(dtype)


@pytest.mark.parametrize("executor", EXECUTORS.values(), ids=EXECUTORS.keys())
@pytest.mark.parametrize("inputs, error, message", [
    ({"a": square()}, ArgumentError, "cannon: no value for input 'b'; the inputs are a, b"),
    ({}, ArgumentError, "cannon: no value for input 'a', 'b'; the inputs are a, b"),
    ({"a": square(), "b": square(), "z": 1}, ArgumentError, "cannon: no input named 'z'; the inputs are a, b"),
    ({"a": square(), "b": square(), "c": square()}, ArgumentError,
     "cannon: no input named 'c'; the inputs are a, b"),
    ({"a": square()[:, :3], "b": square()}, ShapeError,
     r"cannon: input 'a' has shape \(4, 3\), the program declares \(4, 4\)"),
    ({"a": square(), "b": square(dtype=complex)}, ArgumentError,
     "cannon: input 'b' is complex128, which does not convert to its declared float64"),
], ids=["missing", "all missing", "unknown", "an output", "shape", "dtype"])
def test_wrong_inputs_are_refused_by_every_executor(executor, inputs, error, message):
    with pytest.raises(error, match=message):
        executor(cannon(2), inputs)


@pytest.mark.parametrize("executor", EXECUTORS.values(), ids=EXECUTORS.keys())
def test_inputs_of_a_kind_that_converts_run_as_their_declared_dtype(executor):
    outputs = executor(cannon(2), {"a": square(dtype=np.int32), "b": square(dtype=np.float32)})
    assert outputs["c"].dtype == np.float64
    np.testing.assert_array_equal(outputs["c"], square() @ square())


def test_the_host_arrays_are_copies_in_the_declared_dtypes():
    a, b = square(dtype=np.int16), square()
    host = host_arrays(cannon(2), {"a": a, "b": b})
    assert {name: x.dtype for name, x in host.items()} == {name: np.dtype(np.float64) for name in "abc"}
    assert not np.shares_memory(host["b"], b)
    np.testing.assert_array_equal(host["c"], np.zeros((4, 4)))
