"""Every zoo model at its `small` config, ragged and regular, float32 and float64, compiled to
C++ by the native backend equals the interpreter (float64 tightly, float32 within the zoo's
tolerance)."""

from __future__ import annotations

import numpy as np
import pytest

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
