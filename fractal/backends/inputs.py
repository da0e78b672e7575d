"""The check every tile backend makes of a run's inputs: one array per input buffer, by name,
of the buffer's shape and dtype (`fractal.backends.registry`: `run(inputs)`)."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from fractal.lang.errors import ArgumentError, ShapeError


def checked_inputs(buffers, arrays: Mapping[str, np.ndarray], what: str = "input") -> dict:
    """`arrays` matched to `buffers` by name (a dict buffer -> array), checked for shape and dtype."""
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
        value = np.asarray(arrays[b.name])
        if value.shape != b.shape:
            raise ShapeError(f"{what} {b.name!r} has shape {value.shape}, expected {b.shape}")
        if value.dtype != b.dtype:
            raise ArgumentError(f"{what} {b.name!r} has dtype {value.dtype}, expected {b.dtype}")
        out[b] = value
    return out
