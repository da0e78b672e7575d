"""The check every tile backend makes of a run's inputs: one array per input buffer, by name,
of the buffer's shape and dtype (`fractal.backends.registry`: `run(inputs)`); a device's own
arrays (a GPU's, through `adopt`) are checked where they are, never copied to the host."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from fractal.lang.errors import ArgumentError, ShapeError


def checked_inputs(buffers, arrays: Mapping[str, object], what: str = "input", adopt=None) -> dict:
    """`arrays` matched to `buffers` by name, checked for shape and dtype: {buffer: (array, on
    the device)}; `adopt(value)` gives a value as the device's own array, or None (a NumPy one)."""
    if not isinstance(arrays, Mapping):
        raise ArgumentError(f"{what}s must be a mapping from buffer name to array, got {type(arrays).__name__}")
    names = [b.name for b in buffers]
    expected = ", ".join(names) or "none"
    extra = sorted(set(arrays) - set(names))
    if extra:
        raise ArgumentError(f"unknown {what} {extra[0]!r}: the program's {what}s are {expected}")
    out = {}
    for b in buffers:
        if b.name not in arrays:
            raise ArgumentError(f"missing {what} {b.name!r}: the program's {what}s are {expected}")
        adopted = None if adopt is None else adopt(arrays[b.name])
        value = np.asarray(arrays[b.name]) if adopted is None else adopted
        if tuple(value.shape) != b.shape:
            raise ShapeError(f"{what} {b.name!r} has shape {tuple(value.shape)}, expected {b.shape}")
        if value.dtype != b.dtype:
            raise ArgumentError(f"{what} {b.name!r} has dtype {value.dtype}, expected {b.dtype}")
        out[b] = (value, adopted is not None)
    return out
