"""Every zoo model at its `small` config, ragged and regular, run as generated CUDA C++ in the
emulation (each launch twice, in opposite block and thread orders) equals the interpreter."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import fractal as ft
from examples import zoo
from fractal.testing.compare import compare

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CXX") or "g++") is None,
                                reason="the CUDA emulation needs a host C++ compiler (g++)")

TARGET = ft.targets.cuda("sm_80", emulate=True)


@pytest.mark.parametrize("name", zoo.available())
@pytest.mark.parametrize("ragged, dtype", [(True, np.float32), (False, np.float32), (True, np.float64)],
                         ids=["ragged-f32", "regular-f32", "ragged-f64"])
def test_the_model_emulated_equals_the_interpreter(name, ragged, dtype):
    m = zoo.load(name)
    args = m.inputs("small", dtype=dtype, ragged=ragged)
    got = m.outputs(m.model(*args, target=TARGET))
    want = m.outputs(m.model(*args, backend="interpreter"))
    tol = zoo.tolerance(dtype)
    assert compare(got, want, rtol=tol, atol=tol) == []
