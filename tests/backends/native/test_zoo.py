"""Every zoo model at its `small` config, ragged and regular, float32 and float64, compiled to
C++ by the native backend equals the interpreter (float64 tightly, float32 within the zoo's
tolerance)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import fractal as ft
from fractal.backends.cpu.policy import CpuPolicy

from examples import zoo
from fractal.testing.compare import compare
from tests.backends.native.conftest import needs_compiler

pytestmark = needs_compiler


@pytest.mark.parametrize("name", zoo.available())
@pytest.mark.parametrize("ragged, dtype", [(True, np.float32), (False, np.float32), (True, np.float64)],
                         ids=["ragged-f32", "regular-f32", "ragged-f64"])
def test_the_model_compiled_natively_equals_the_interpreter(name, ragged, dtype):
    m = zoo.load(name)
    args = m.inputs("small", dtype=dtype, ragged=ragged)
    compiled = m.model.compile(*args, backend="native")
    assert "FT_EXPORT int ft_run(" in compiled.source
    got = m.outputs(compiled.run(*args))
    want = m.outputs(m.model(*args, backend="interpreter"))
    tol = 1e-9 if dtype == np.float64 else zoo.tolerance(dtype)
    assert compare(got, want, rtol=tol, atol=tol) == []


def test_a_ragged_batch_runs_its_batched_input_projections_over_its_live_sequences_only():
    """dilated_lstm's layers project their inputs before their recurrences (hoisted, batched
    over time); natively, where the steps' products stay big enough (32 sequences of 128),
    each step's rows are cut to the sequences still running, as the recurrence's own steps
    are (layer 0's recurrence too: its map over the one sub-sequence of dilation 1 is
    unrolled, its hint kept); the result still equals the interpreter.  (A named target: the
    decision is the policy's, on the target's numbers.)"""
    from fractal.lower.tile_ir import Loop, Stage
    m = zoo.load("dilated_lstm")
    args = m.inputs(dict(depth=2, length=32, batch=32, hidden=128), dtype=np.float64, ragged=True)
    compiled = m.model.compile(*args, target="cpu-generic-native")
    polygons = [s.name for s in compiled.tile_ir.body if isinstance(s, Stage) and not s.rectangular]
    assert "matmul4" in polygons   # (layer 0's input projection, batched over its 32 steps)
    assert all(lp.active is not None for lp in compiled.tile_ir.body if isinstance(lp, Loop) and lp.kind == "sequential")
    got = m.outputs(compiled.run(*args))
    assert compare(got, m.outputs(m.model(*args, backend="interpreter")), rtol=1e-9, atol=1e-9) == []


class _CutEveryDeadPoint(CpuPolicy):
    """The native policy, but every cut of dead points pays (`cut_dead`, `hoist`)."""

    def cut_to_live(self, facts, hw) -> bool:
        return True


def _cutting_target():
    native = ft.targets.host(native=True)
    fields = {f.name: getattr(native.policy, f.name) for f in dataclasses.fields(native.policy)}
    return dataclasses.replace(native, name=native.name + "-cut-every-dead-point", policy=_CutEveryDeadPoint(**fields))


@pytest.mark.parametrize("name", ["conv2d", "transformer_block", "bigbird", "selective_scan", "retention", "bigru"])
def test_the_model_with_every_dead_point_cut_equals_the_interpreter(name):
    """The ragged models' padded points that nothing reads, all cut (`cut_dead`: polygons the
    native backend runs as loops around box code and products), still give the interpreter's
    result (ragged, float64)."""
    from fractal.lower.rewrite import stages_of
    m = zoo.load(name)
    args = m.inputs("small", dtype=np.float64, ragged=True)
    compiled = m.model.compile(*args, target=_cutting_target())
    stages = [s for top in compiled.tile_ir.body for s in stages_of(top)]
    assert any(s.dims[0].var in d.stop.vars() for s in stages for d in s.dims[1:])   # (a cut's stops)
    got = m.outputs(compiled.run(*args))
    assert compare(got, m.outputs(m.model(*args, backend="interpreter")), rtol=1e-9, atol=1e-9) == []
