"""Index expressions of the tile IR (`fractal.lower.tile_affine`) as C++ integer expressions.

Variables are the C++ names of loop variables, all of the dialect's 64-bit `index_type`.
C++'s `/` and `%` truncate toward zero; the tile IR's `floor` and `mod` round down (Python's
`//` and `%`), so they go through the helpers `fl_div` and `fl_mod` (a divisor is always a
positive constant), and `min`/`max` through `fl_min`/`fl_max`; `index_prelude(dialect)`
defines the four once.  Every operand is a sum or a call, so no parentheses are needed: the
text is `str(index)` with calls for the quasi-affine atoms, deterministic for equal indices.

    >>> from fractal.lower import parse_index
    >>> index_expr(parse_index("2*(q mod 4) + floor((i - 3) / 4) - max(0, m - 63)"))
    '2*fl_mod(q, 4) + fl_div(i - 3, 4) - fl_max(0, m - 63)'
    >>> print(index_prelude(HOST).splitlines()[0])
    static inline std::int64_t fl_mod(std::int64_t a, std::int64_t c) { std::int64_t r = a % c; return r < 0 ? r + c : r; }
"""

from __future__ import annotations

from typing import Mapping

from fractal.lower.tile_affine import Aff, FloorDiv, Max, Min, Mod, aff

from .dialect import Dialect

_CALL = {Mod: "fl_mod", FloorDiv: "fl_div", Min: "fl_min", Max: "fl_max"}  # (Mod before FloorDiv: a subclass)


def index_prelude(d: Dialect) -> str:
    """The definitions of `fl_mod`, `fl_div`, `fl_min` and `fl_max` on `d.index_type`."""
    i, q = d.index_type, d.inline
    return "\n".join((
        f"{q} {i} fl_mod({i} a, {i} c) {{ {i} r = a % c; return r < 0 ? r + c : r; }}",
        f"{q} {i} fl_div({i} a, {i} c) {{ return a % c < 0 ? a / c - 1 : a / c; }}",
        f"{q} {i} fl_min({i} a, {i} b) {{ return a < b ? a : b; }}",
        f"{q} {i} fl_max({i} a, {i} b) {{ return a > b ? a : b; }}",
    )) + "\n"


def index_expr(x, names: Mapping[str, str] | None = None) -> str:
    """C++ text of an index (`Aff`, quasi node, int or variable name); `names` renames
    variables (default: each keeps its tile-IR name)."""
    return _sum(aff(x), names or {})


def _sum(a: Aff, names) -> str:
    if not a.terms:
        return str(a.const)
    out = []
    for k, (atom, c) in enumerate(a.terms):
        text = _atom(atom, names) if abs(c) == 1 else f"{abs(c)}*{_atom(atom, names)}"
        out.append(("-" if c < 0 else "") + text if k == 0 else (" - " if c < 0 else " + ") + text)
    if a.const:
        out.append((" - " if a.const < 0 else " + ") + str(abs(a.const)))
    return "".join(out)


def _atom(t, names) -> str:
    if isinstance(t, str):
        return names.get(t, t)
    call = next(name for cls, name in _CALL.items() if isinstance(t, cls))
    if isinstance(t, Max):  # (and Min): a left fold of two-argument calls
        text = _sum(t.args[0], names)
        for a in t.args[1:]:
            text = f"{call}({text}, {_sum(a, names)})"
        return text
    return f"{call}({_sum(t.e, names)}, {t.c})"
