"""Property-based testing of fractal models: hypothesis strategies for FractalTensors and a
one-call check of a model against NumPy, on every backend (README: "Testing a model").

    import fractal as ft
    ft.testing.check(model, numpy_reference)                 # or: test_model = ft.testing.checks(...)

Needs hypothesis, an optional dependency: `pip install "fractal-tensor[testing]"`.
`import fractal` does not import this package; `ft.testing` imports it on first use.
"""

try:
    import hypothesis  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("fractal.testing needs hypothesis: install the extra with "
                      "`pip install \"fractal-tensor[testing]\"` (or `pip install hypothesis`)") from None

from .check import CheckReport, CheckWarning, check, checks, reference_arguments
from .compare import TOLERANCES, Difference, compare, padded_lengths, unpad
from .strategies import arguments_for, fractal_tensors, list_lengths, tensors

__all__ = ["CheckReport", "CheckWarning", "Difference", "TOLERANCES", "arguments_for", "check", "checks", "compare",
           "fractal_tensors", "list_lengths", "padded_lengths", "reference_arguments", "tensors", "unpad"]
