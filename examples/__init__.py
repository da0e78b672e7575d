"""The fractal model zoo: one module per model, each with the same small interface.

See `examples/zoo.py` for the interface and `MODELS` for the list."""
