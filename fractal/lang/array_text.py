"""Constant arrays in text, one format for both IRs: a program IR constant
(`array<f32[2]>[1.0, 2.0]`, `fractal.lang.printer`) and a tile IR const buffer
(`buffer rows: i64[4] global const = [0, 2, 1, 3]`, `fractal.lower.tile_printer`).

The surrounding text gives the shape and dtype; the data prints as

* a nested literal, up to `LITERAL_MAX_SIZE` elements: `[[1, -2], [3, 4]]`, a bare scalar
  for a 0-d array (`2.5`), `[]` when empty; ints as digits, bools `true`/`false`, floats
  as Python's `repr` of the value (`0.1` of an f32 prints `0.10000000149011612`) or `inf`,
  `-inf`, `nan`;
* else `b64"..."`: the little-endian bytes of the row-major array in base64, which is also
  what a NaN with a payload needs (a literal `nan` reads back as the canonical one).

Both read back to the same bits.  The grammar is `array_text.lark` (rule `array_data`),
which `program.lark` and `tile_ir.lark` `%import`; `array_from_data` turns its parse tree
into the array, raising `ValueError` (the parsers add where and what) on data that does
not fit the shape and dtype.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from lark import Token, Tree

from .types import dtype_name

# Constants up to this many elements print as readable literals, larger ones as base64.
LITERAL_MAX_SIZE = 64

# Where the grammar files live, for lark's `import_paths` (the tile IR's grammar is elsewhere).
GRAMMAR_DIR = Path(__file__).parent

# How syntax errors name the fragment's terminals (lark prefixes imported names).
TERMINAL_NAMES = {"array_text__INT": "integer", "array_text__FLOAT": "float",
                  "array_text__WORD": "'-inf', 'false', 'inf', 'nan', 'true'", "array_text__B64": 'b64"..."'}

_INT = re.compile(r"-?[0-9]+\Z")


def print_scalar(x: Any) -> str:
    """A bool, int or float as the text reads it: `true`/`false`, digits, or the float's
    `repr` (shortest exact form, always with '.' or 'e', or `inf`/`-inf`/`nan`)."""
    if isinstance(x, (bool, np.bool_)):  # before int: bool is an int subclass
        return "true" if x else "false"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return repr(float(x))


def print_array_data(a: np.ndarray) -> str:
    """The data of `a` (shape and dtype printed by the caller): a literal or `b64"..."`."""
    if a.size <= LITERAL_MAX_SIZE and _literal_is_exact(a):
        return "[]" if a.size == 0 else _literal(a.tolist())
    data = a.astype(a.dtype.newbyteorder("<")).tobytes()
    return f'b64"{base64.b64encode(data).decode("ascii")}"'


def array_from_data(data: Tree | Token, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """The array an `array_data` parse tree spells for `shape` and `dtype`.  Raises
    `ValueError` when the data does not fit them (wrong count, nesting or element kind,
    a value out of range, bad base64)."""
    node = data.children[0] if isinstance(data, Tree) and data.data == "array_data" else data
    if isinstance(node, Token) and node.value.startswith('b64"'):
        return _from_base64(node.value[4:-1], shape, np.dtype(dtype))
    return _from_literal(_nested(node), shape, np.dtype(dtype))


def position(data: Tree | Token) -> tuple[int, int]:
    """(line, column) where an `array_data` parse tree starts."""
    if isinstance(data, Token):
        return data.line, data.column
    return data.meta.line, data.meta.column


# --- printing -------------------------------------------------------------------------------

def _literal(x: Any) -> str:
    if isinstance(x, list):
        return "[" + ", ".join(_literal(e) for e in x) + "]"
    return print_scalar(x)  # tolist() gives Python bool/int/float


def _literal_is_exact(a: np.ndarray) -> bool:
    """A literal `nan` reads back as the canonical NaN: other NaN payloads need base64."""
    if a.dtype.kind != "f":
        return True
    nans = a[np.isnan(a)]
    return nans.tobytes() == np.array(float("nan"), a.dtype).tobytes() * nans.size


# --- reading ---------------------------------------------------------------------------------

_WORDS = {"true": True, "false": False, "inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _nested(node: Tree | Token) -> Any:
    """A literal's parse tree as nested Python lists of bool/int/float."""
    if isinstance(node, Tree):
        return [_nested(c) for c in node.children]
    text = node.value
    if text in _WORDS:
        return _WORDS[text]
    return int(text) if _INT.match(text) else float(text)


def _from_base64(text: str, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("invalid base64 data") from None
    size = math.prod(shape)
    if len(data) != size * dt.itemsize:
        raise ValueError(f"base64 data has {len(data)} bytes, expected {size * dt.itemsize}")
    return np.frombuffer(data, dtype=dt.newbyteorder("<")).astype(dt).reshape(shape)


def _from_literal(lit: Any, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
    flat: list[Any] = []

    def shape_of(x) -> tuple[int, ...]:
        if not isinstance(x, list):
            flat.append(x)
            return ()
        subs = [shape_of(e) for e in x]
        if any(s != subs[0] for s in subs):
            raise ValueError("ragged array literal")
        return (len(x),) + (subs[0] if subs else ())

    got = shape_of(lit)
    size = math.prod(shape)
    if len(flat) != size:
        raise ValueError(f"literal has {len(flat)} element(s), expected {size}")
    if got != tuple(shape) and not (size == 0 and lit == []):
        raise ValueError(f"literal is nested as [{','.join(map(str, got))}]")
    kind, name = dt.kind, dtype_name(dt)
    for x in flat:
        ok = isinstance(x, bool) if kind == "b" else (
            not isinstance(x, bool) and (isinstance(x, int) or kind == "f"))
        if not ok:
            want = {"b": "true or false", "i": "an integer", "f": "a number"}[kind]
            raise ValueError(f"element {print_scalar(x)} is not {want}")
        if kind == "i" and not np.iinfo(dt).min <= x <= np.iinfo(dt).max:
            raise ValueError(f"element {x} does not fit {name}")
        if kind == "f" and (isinstance(x, int) or math.isfinite(x)) and not _fits_float(x, dt):
            raise ValueError(f"element {x} overflows {name}")
    if size == 0:
        return np.zeros(shape, dt)
    return np.array(flat, dtype=dt).reshape(shape)


def _fits_float(x: float | int, dt: np.dtype) -> bool:
    try:
        with np.errstate(over="ignore"):
            return bool(np.isfinite(np.array(float(x), dtype=dt)))
    except OverflowError:  # an int beyond float64
        return False
