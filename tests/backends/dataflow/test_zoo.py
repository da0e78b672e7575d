"""Every zoo model at its `small` config, ragged and regular, planned onto small meshes and
run on the BSP simulator, equals the interpreter; its cost report is self-consistent."""

from __future__ import annotations

import numpy as np
import pytest

import fractal as ft
from examples import zoo
from fractal.testing.compare import compare

MESHES = {"tiny-4x4": ft.targets.mesh(4, 4), "tiny-2x3": ft.targets.mesh(2, 3, sram_bytes=256 << 10),
          "torus-3x3": ft.targets.mesh(3, 3, kind="torus", sram_bytes=128 << 10)}


@pytest.mark.parametrize("name", zoo.available())
@pytest.mark.parametrize("mesh, ragged, dtype", [("tiny-4x4", True, np.float32), ("tiny-2x3", False, np.float32),
                                                  ("torus-3x3", True, np.float64)],
                         ids=["4x4-ragged-f32", "2x3-regular-f32", "torus3x3-ragged-f64"])
def test_the_model_on_a_mesh_equals_the_interpreter(name, mesh, ragged, dtype):
    m = zoo.load(name)
    args = m.inputs("small", dtype=dtype, ragged=ragged)
    compiled = m.model.compile(*args, target=MESHES[mesh])
    got = m.outputs(compiled.run(*args))
    want = m.outputs(m.model(*args, backend="interpreter"))
    tol = zoo.tolerance(dtype)
    assert compare(got, want, rtol=tol, atol=tol) == []
    report = compiled.report
    assert report.bytes_sent == report.bytes_received > 0
    assert report.makespan_cycles > 0
    assert 0 < report.sram_peak.max() <= MESHES[mesh].policy.spec.usable_bytes
