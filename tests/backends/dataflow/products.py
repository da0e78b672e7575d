"""Programs of points that share a weight (one stacked product), on integer-valued data so
that every plan's answer is exact, for the planner's tests."""

from __future__ import annotations

import numpy as np

import fractal as ft

F64 = np.float64


def ints(shape, seed):
    return np.random.default_rng(seed).integers(-3, 4, shape).astype(F64)


def tensors(n, shape, seed):
    return ft.fractal([ints(shape, seed + i) for i in range(n)], type=ft.FractalTensor[ft.Tensor[shape, F64]])


@ft.function
def project(xs, w):
    """Points that share a weight: one stacked product."""
    return ft.map(lambda x: x @ w, xs)
