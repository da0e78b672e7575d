"""Property-based testing of fractal models (needs hypothesis: `pip install fractal[testing]`)."""

try:
    import hypothesis  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("fractal.testing needs hypothesis: install the extra with "
                      "`pip install fractal[testing]` (or `pip install hypothesis`)") from None

from .strategies import arguments_for, fractal_tensors, list_lengths, tensors

__all__ = ["arguments_for", "fractal_tensors", "list_lengths", "tensors"]
