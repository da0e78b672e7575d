"""Long associative reductions (`fractal.backends.native.reduce_loop`): a reduce's loop over a
state rolled to a window runs as partial folds among the threads, then its last steps as
written, leaving every slot of the window as the step-by-step loop leaves it (up to rounding);
other loops run step by step."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fractal.backends.native.executable import NativeExecutable
from fractal.backends.pointwise import run_pointwise
from tests.backends.cpu.programs import program, tile
from tests.backends.native.conftest import needs_compiler

pytestmark = needs_compiler
FOLDS = ("add", "maximum", "minimum")   # the scans a reduction's combiner folds


def reduction(steps: int, cols: int, op: str, dtype: str = "f32", *, state: str = "(r + 1) mod 2",
              prev: str = "r mod 2", slots: int = 2, associative: bool = True):
    """`st[state] = op(st[prev], x[r])` over `r in 0:steps`, the state (`slots` rows, an output:
    every slot is compared) starting from `init`."""
    kind = "sequential associative" if associative else "sequential"
    return program(tile(
        f"buffer x: {dtype}[{steps},1,{cols}] global input\n"
        f"buffer init: {dtype}[1,1,{cols}] global input\n"
        f"buffer st: {dtype}[{slots},1,{cols}] global output",
        f"stage first() device {{ st[0, 0:1, 0:{cols}] = copy(init[0, 0:1, 0:{cols}]) }}\n"
        f"for r in 0:{steps} {kind} host {{ stage fold() device {{ "
        f"st[{state}, 0:1, 0:{cols}] = {op}(st[{prev}, 0:1, 0:{cols}], x[r, 0:1, 0:{cols}]) }} }}"))


def inputs(steps: int, cols: int, op: str, dtype, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps, 1, cols))
    if op == "mul":   # (products of factors near 1 stay finite)
        x = 1 + 0.01 * x
    return {"x": x.astype(dtype), "init": rng.standard_normal((1, 1, cols)).astype(dtype)}


def test_the_loop_folds_partials_among_the_threads_and_runs_its_last_steps_as_written():
    p = reduction(4096, 16, "add")
    exe = NativeExecutable(p, threads=2)
    assert "partial folds among the threads, then its last 2 steps" in exe.source
    got, want = exe.run(inputs(4096, 16, "add", np.float32)), run_pointwise(p, inputs(4096, 16, "add", np.float32))
    np.testing.assert_allclose(got["st"], want["st"], rtol=1e-4, atol=1e-3)   # (both slots: the last two states)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.sampled_from([1, 2, 3, 500, 2049, 5000]), cols=st.sampled_from([1, 8, 64]),
       op=st.sampled_from(FOLDS), dtype=st.sampled_from(["f32", "f64"]), window=st.sampled_from([2, 3]),
       threads=st.sampled_from([1, 2, 3]))
def test_every_slot_of_the_window_ends_as_the_step_by_step_loop_leaves_it(steps, cols, op, dtype, window, threads):
    np_dtype = np.float32 if dtype == "f32" else np.float64
    p = reduction(steps, cols, op, dtype, state=f"(r + 1) mod {window}", prev=f"r mod {window}", slots=window)
    data = inputs(steps, cols, op, np_dtype, seed=steps + cols)
    got = NativeExecutable(p, threads=threads).run(data)["st"]
    want = run_pointwise(p, data)["st"]
    tol = 1e-4 if dtype == "f32" else 1e-9
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, float(np.abs(want).max())))


@pytest.mark.parametrize("why, kw", [
    ("a slot per step: every state is kept, for anyone to read", dict(state="r + 1", prev="r", slots=4097)),
    ("not marked associative: the steps keep their order", dict(associative=False)),
    ("a product: no reduction combiner folds it", dict(op="mul")),
])
def test_other_loops_run_step_by_step(why, kw):
    op = kw.pop("op", "add")
    p = reduction(4096, 16, op, **kw)
    exe = NativeExecutable(p, threads=2)
    assert "partial folds" not in exe.source, why
    data = inputs(4096, 16, op, np.float32)
    np.testing.assert_array_equal(exe.run(data)["st"], run_pointwise(p, data)["st"])
