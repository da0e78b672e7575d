"""Index expressions of the tile IR: affine and quasi-affine integer expressions over loop variables.

An index is an `Aff`: integer multiples of *atoms* plus a constant.  An atom is a loop
variable (its name) or a quasi-affine node whose operands are `Aff`s again:
`Max(args)`, `Min(args)` (two or more arguments), `FloorDiv(e, c)` and `Mod(e, c)` with a
constant `c > 0` (rounding down and a remainder in `0..c-1`: Python's `//` and `%`, isl's
`floor` and `mod`).  An `Aff` is canonical: equal atoms merged, zero coefficients dropped,
terms sorted (positive coefficients first; within each sign variables by name, then
quasi-affine atoms by their text), so the same expression compares equal however it was
built, and `s - l + 1` prints as written.

Printed (and parsed back by `fractal.lower.tile_parser.parse_index`)::

    2*i + j - 1        max(0, m - 63)        min(5, s + 1)
    floor(q / 4)       floor((i + 3) / 4)    q mod 4        2*(q mod 4) + i

A `mod` is written bare only as a whole expression; inside a sum or with a coefficient it
is parenthesised.  The operand of `floor`/`mod` is a single atom or a parenthesised sum.

Build with `aff(x)` (an int, a variable name or a quasi node), `+`, `-`, `*` by ints, `//`
and `%` by positive ints, and `amax`/`amin`; these helpers fold constants, the dataclass
constructors never do.  `aff` never parses: the tile IR's node constructors normalise their
indices with it, and building a node must not run the parser; index text goes through
`fractal.lower.parse_index` (`parse_index("2*i + 1")`).  `evaluate(env)`, `substitute(map)`,
`vars()` and `bounds(ranges)` (interval arithmetic) work on every index node;
`evaluate_affine` evaluates an affine index at many points at once, `evaluate_many` any index.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Union

import numpy as np


def _int(x) -> int:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"expected an int, got {x!r}")
    return int(x)


class _IndexOps:
    """Arithmetic and queries shared by `Aff` and the quasi-affine nodes; results are `Aff`s."""

    def __add__(self, other):
        return _combine(aff(self), aff(other), 1)

    __radd__ = __add__

    def __sub__(self, other):
        return _combine(aff(self), aff(other), -1)

    def __rsub__(self, other):
        return _combine(aff(other), aff(self), -1)

    def __neg__(self):
        return aff(self) * -1

    def __mul__(self, k):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            return NotImplemented
        a = aff(self)
        return Aff(tuple((t, c * int(k)) for t, c in a.terms), a.const * int(k))

    __rmul__ = __mul__

    def __floordiv__(self, c):
        return floordiv(self, c)

    def __mod__(self, c):
        return mod(self, c)

    def vars(self) -> frozenset[str]:
        """The loop variables this index reads."""
        return _vars(self)

    def evaluate(self, env: Mapping[str, int]) -> int:
        """The value for integer values of the variables (KeyError names a missing one)."""
        return _eval(self, env)

    def substitute(self, mapping: Mapping[str, object]) -> "Aff":
        """Replace variables by indices (ints, names, `Aff`s); quasi nodes whose operands
        become constant are folded."""
        return _subst(self, {k: aff(v) for k, v in mapping.items()})

    def bounds(self, ranges: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
        """Inclusive (lo, hi) over variables ranging in inclusive `ranges` (interval arithmetic:
        sound, exact for affine sums of distinct variables)."""
        return _bounds(self, ranges)

    def __str__(self) -> str:
        return _fmt(aff(self))


@dataclass(frozen=True)
class Aff(_IndexOps):
    """`sum(coeff * atom) + const`; `terms` is `((atom, coeff), ...)`, an atom a name or quasi node."""

    terms: tuple[tuple[object, int], ...] = ()
    const: int = 0

    def __post_init__(self):
        acc: dict = {}
        for atom, c in self.terms:
            if not isinstance(atom, (str, *QUASI)):
                raise TypeError(f"an Aff atom is a variable name or Max/Min/FloorDiv/Mod, got {atom!r}")
            acc[atom] = acc.get(atom, 0) + _int(c)
        terms = sorted(((a, c) for a, c in acc.items() if c), key=lambda t: (t[1] < 0, _atom_key(t[0])))
        object.__setattr__(self, "terms", tuple(terms))
        object.__setattr__(self, "const", _int(self.const))

    @property
    def is_const(self) -> bool:
        return not self.terms

    def __str__(self) -> str:
        return _fmt(self)


@dataclass(frozen=True)
class Max(_IndexOps):
    args: tuple[Aff, ...]

    def __post_init__(self):
        args = tuple(aff(a) for a in self.args)
        if len(args) < 2:
            raise ValueError(f"{type(self).__name__.lower()}() needs at least two arguments")
        object.__setattr__(self, "args", args)


@dataclass(frozen=True)
class Min(Max):
    pass


@dataclass(frozen=True)
class FloorDiv(_IndexOps):
    e: Aff
    c: int

    def __post_init__(self):
        object.__setattr__(self, "e", aff(self.e))
        object.__setattr__(self, "c", _int(self.c))
        if self.c <= 0:
            raise ValueError(f"the divisor of {type(self).__name__} must be positive, got {self.c}")


@dataclass(frozen=True)
class Mod(FloorDiv):
    pass


QUASI = (Max, Min, FloorDiv, Mod)
Index = Union[Aff, Max, Min, FloorDiv, Mod]


def evaluate_affine(a: Aff, values: Mapping[str, np.ndarray], size: int) -> np.ndarray | None:
    """`a` at many points at once: `values` gives each variable's value at every point (arrays
    of `size`); None unless `a` is affine in plain variables that `values` has."""
    out = np.full(size, a.const, dtype=np.int64)
    for atom, c in a.terms:
        if not isinstance(atom, str) or atom not in values:
            return None
        out = out + c * values[atom]
    return out


def evaluate_many(x, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """Any index at many points at once (`values`: each variable's int64 array, all of one
    shape, or broadcastable)."""
    if isinstance(x, str):
        return np.asarray(values[x], dtype=np.int64)
    if isinstance(x, Aff):
        out = np.int64(x.const)
        for atom, c in x.terms:
            out = out + c * evaluate_many(atom, values)
        return np.asarray(out, dtype=np.int64)
    if isinstance(x, Max):
        fn = np.minimum if isinstance(x, Min) else np.maximum
        out = evaluate_many(x.args[0], values)
        for a in x.args[1:]:
            out = fn(out, evaluate_many(a, values))
        return out
    e = evaluate_many(x.e, values)
    return np.mod(e, x.c) if isinstance(x, Mod) else np.floor_divide(e, x.c)
# The keywords of index text: never variable names (the parser reads them as operators).
INDEX_KEYWORDS = frozenset({"max", "min", "floor", "mod"})


def aff(x) -> Aff:
    """An `Aff` from an `Aff`, an int, a quasi node or a variable name (`"i"`); not from index
    text, which `fractal.lower.parse_index` reads."""
    if isinstance(x, Aff):
        return x
    if isinstance(x, QUASI):
        return Aff(((x, 1),))
    if isinstance(x, str):
        if x in INDEX_KEYWORDS:
            raise TypeError(f"aff({x!r}): {x!r} is a keyword of index text, not a variable name")
        if not x.isidentifier():
            raise TypeError(f"aff({x!r}): aff takes a variable name, not index text; parse text with "
                            f"fractal.lower.parse_index({x!r})")
        return Aff(((x, 1),))
    return _const(_int(x))


@lru_cache(maxsize=1 << 16)
def _const(c: int) -> Aff:
    return Aff((), c)   # (planners build millions of regions from the same few constants)


def amax(*xs) -> Aff:
    """`max(...)`, folded when every argument is constant or only one is given."""
    return _fold_minmax(Max, max, xs)


def amin(*xs) -> Aff:
    return _fold_minmax(Min, min, xs)


def floordiv(e, c: int) -> Aff:
    e, c = aff(e), _int(c)
    if c <= 0:
        raise ValueError(f"floor division by {c}: the divisor must be positive")
    return Aff((), e.const // c) if e.is_const else e if c == 1 else aff(FloorDiv(e, c))


def mod(e, c: int) -> Aff:
    e, c = aff(e), _int(c)
    if c <= 0:
        raise ValueError(f"mod {c}: the divisor must be positive")
    return Aff((), e.const % c) if e.is_const else Aff() if c == 1 else aff(Mod(e, c))


def _fold_minmax(node, fn, xs) -> Aff:
    args = tuple(aff(x) for x in xs)
    if not args:
        raise ValueError(f"{node.__name__.lower()}() needs at least one argument")
    if len(args) == 1:
        return args[0]
    if all(a.is_const for a in args):
        return Aff((), fn(a.const for a in args))
    return aff(node(args))


def _combine(a: Aff, b: Aff, sign: int) -> Aff:
    return Aff(a.terms + tuple((t, sign * c) for t, c in b.terms), a.const + sign * b.const)


def _atom_key(atom) -> tuple:
    return (0, atom) if isinstance(atom, str) else (1, _atom(atom))


# --- queries ----------------------------------------------------------------------------

def _vars(x) -> frozenset[str]:
    if isinstance(x, str):
        return frozenset((x,))
    if isinstance(x, Aff):
        return frozenset().union(*(_vars(t) for t, _ in x.terms))
    if isinstance(x, Max):
        return frozenset().union(*(_vars(a) for a in x.args))
    return _vars(x.e)


def _eval(x, env) -> int:
    if isinstance(x, str):
        return int(env[x])
    if isinstance(x, Aff):
        return sum(c * _eval(t, env) for t, c in x.terms) + x.const
    if isinstance(x, Max):
        return (min if isinstance(x, Min) else max)(_eval(a, env) for a in x.args)
    v = _eval(x.e, env)
    return v % x.c if isinstance(x, Mod) else v // x.c


def _subst(x, mapping) -> Aff:
    if isinstance(x, str):
        return mapping.get(x, Aff(((x, 1),)))
    if isinstance(x, Aff):
        out = Aff((), x.const)
        for t, c in x.terms:
            out = out + c * _subst(t, mapping)
        return out
    if isinstance(x, Max):
        return (amin if isinstance(x, Min) else amax)(*(_subst(a, mapping) for a in x.args))
    return (mod if isinstance(x, Mod) else floordiv)(_subst(x.e, mapping), x.c)


def _bounds(x, ranges) -> tuple[int, int]:
    if isinstance(x, str):
        lo, hi = ranges[x]
        return int(lo), int(hi)
    if isinstance(x, Aff):
        lo = hi = x.const
        for t, c in x.terms:
            a, b = _bounds(t, ranges)
            lo, hi = (lo + c * a, hi + c * b) if c > 0 else (lo + c * b, hi + c * a)
        return lo, hi
    if isinstance(x, Max):
        fn = min if isinstance(x, Min) else max
        bs = [_bounds(a, ranges) for a in x.args]
        return fn(b[0] for b in bs), fn(b[1] for b in bs)
    lo, hi = _bounds(x.e, ranges)
    if isinstance(x, Mod):
        return (lo % x.c, hi % x.c) if lo // x.c == hi // x.c else (0, x.c - 1)
    return lo // x.c, hi // x.c


# --- text ---------------------------------------------------------------------------------

def _single(a: Aff):
    """The atom `a` is exactly (coefficient 1, no constant), or None."""
    return a.terms[0][0] if len(a.terms) == 1 and a.terms[0][1] == 1 and a.const == 0 else None


def _fmt(a: Aff) -> str:
    atom = _single(a)
    if isinstance(atom, Mod):
        return f"{_operand(atom.e)} mod {atom.c}"
    if not a.terms:
        return str(a.const)
    out = []
    for i, (t, c) in enumerate(a.terms):
        text = _atom(t) if abs(c) == 1 else f"{abs(c)}*{_atom(t)}"
        out.append(("-" if c < 0 else "") + text if i == 0 else (" - " if c < 0 else " + ") + text)
    if a.const:
        out.append((" - " if a.const < 0 else " + ") + str(abs(a.const)))
    return "".join(out)


def _atom(t) -> str:
    if isinstance(t, str):
        return t
    if isinstance(t, Max):
        return f"{'min' if isinstance(t, Min) else 'max'}({', '.join(_fmt(a) for a in t.args)})"
    if isinstance(t, Mod):
        return f"({_operand(t.e)} mod {t.c})"
    return f"floor({_operand(t.e)} / {t.c})"


def _operand(a: Aff) -> str:
    """The operand of `floor`/`mod`: one non-mod atom as is, anything else in parentheses."""
    atom = _single(a)
    return _atom(atom) if atom is not None and not isinstance(atom, Mod) else f"({_fmt(a)})"
