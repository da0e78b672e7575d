"""Random element-wise expression trees (seeded, so a module compiles them once) for the codegen tests."""

from __future__ import annotations

import random

from fractal.lower.tile_affine import aff
from fractal.lower.tile_expr import Binary, Const, Load, Region, Unary, Where

FLOAT_UNARY = ("neg", "exp", "log", "log1p", "tanh", "sqrt", "abs", "sin", "cos", "sigmoid", "softplus",
               "log_sigmoid", "elu", "relu", "gelu")
FLOAT_BINARY = ("add", "sub", "mul", "div", "pow", "mod", "floordiv", "maximum", "minimum")
INT_UNARY = ("neg", "abs", "relu")
INT_BINARY = ("add", "sub", "mul", "floordiv", "mod", "maximum", "minimum")
COMPARE = ("eq", "ne", "lt", "le", "gt", "ge")
FLOAT_CONSTS = (0.0, 1.0, -1.0, 0.5, 2.5, -3.0, 1e30, -1e30, float("nan"), float("inf"))
INT_CONSTS = (0.0, 1.0, -1.0, 2.0, -3.0, 7.0)


def whole(buffer: str, n: int = 1) -> Region:
    """A one-axis region of `n` elements from 0 (the element is `buffer[i]` in C++)."""
    return Region(buffer, (aff(0),), (n,))


def random_tree(rng: random.Random, depth: int, floats: bool, n: int = 1, consts=None):
    """A random tree over loads of `x` and `y`, constants (of `consts`), the group's ops, `where`s of
    comparisons."""
    consts = consts or (FLOAT_CONSTS if floats else INT_CONSTS)
    if depth == 0 or rng.random() < 0.2:
        if rng.random() < 0.75:
            return Load(whole(rng.choice("xy"), n))
        return Const(rng.choice(consts))
    kind = rng.random()
    sub = lambda: random_tree(rng, depth - 1, floats, n, consts)  # noqa: E731
    if kind < 0.35:
        return Unary(rng.choice(FLOAT_UNARY if floats else INT_UNARY), sub())
    if kind < 0.85:
        return Binary(rng.choice(FLOAT_BINARY if floats else INT_BINARY), sub(), sub())
    cond = Binary(rng.choice(COMPARE), sub(), sub())
    if rng.random() < 0.3:
        cond = Binary(rng.choice(("logical_and", "logical_or")), cond, Unary("logical_not", Load(whole("x", n))))
    return Where(cond, sub(), sub())
