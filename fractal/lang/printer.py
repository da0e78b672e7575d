"""Print the program IR in its text form; `fractal.lang.parser` reads it back exactly.

Spellings (grammar: `program.lark`):

* types: `f32[1,4]`, scalar `i64[]`, `ft<f32[4]>`, tuples `(f32[2], i64[])`, `(f32[2],)`, `()`;
* variables `%name` (typed where they are defined), programs `@name`;
* parameter values: `none`, `true`/`false`, ints, floats as `repr` (`0.5`, `1e-07`, `inf`,
  `-inf`, `nan`), JSON-quoted strings, dtypes as bare short names (`f32`), types as
  `type(ft<f32[4]>)`, tuples `(1, 2)`/`(1,)`/`()`, `slice(1, none, -1)`, `...`, and
  constants as `array<f32[2]>[1.0, 2.0]` (at most 64 elements) or
  `array<f32[256]> b64"..."` (little-endian raw bytes), the data in the format the tile
  IR shares (`fractal.lang.array_text`);
* locations `loc("file.py":12:"fn")`, or `loc("file.py":12)` without a function.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np

from .array_text import print_array_data, print_scalar
from .errors import SourceLoc
from .ir_nodes import Const, Eqn, Region, Slice, Var
from .types import FractalTensorType, TensorType, TupleType, Type, dtype_name

_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9.]*\Z")  # ops and parameter keys
_VAR_NAME = re.compile(r"[A-Za-z_0-9][A-Za-z_0-9.]*\Z")  # variables and programs


def print_type(t: Type) -> str:
    if isinstance(t, TensorType):
        return f"{_dtype(t.dtype)}[{','.join(str(int(d)) for d in t.shape)}]"
    if isinstance(t, FractalTensorType):
        return f"ft<{print_type(t.elem)}>"
    if isinstance(t, TupleType):
        return _tuple([print_type(e) for e in t.elems])
    raise TypeError(f"cannot print {t!r}: not a TensorType, FractalTensorType or TupleType")


def print_param_value(v: Any) -> str:
    if v is None:
        return "none"
    if v is Ellipsis:
        return "..."
    if isinstance(v, (bool, np.bool_, int, np.integer, float, np.floating)):
        return print_scalar(v)
    if isinstance(v, (str, np.str_)):
        return json.dumps(str(v))  # ASCII-only, escapes quotes, backslashes and controls
    if isinstance(v, np.dtype) or (isinstance(v, type) and issubclass(v, np.generic)):
        return _dtype(v)
    if isinstance(v, Type):
        return f"type({print_type(v)})"
    if isinstance(v, Slice):
        return f"slice({', '.join(_opt_int(x) for x in (v.start, v.stop, v.step))})"
    if isinstance(v, Const):
        return _const(v.value)
    if isinstance(v, tuple):
        return _tuple([print_param_value(x) for x in v])
    raise TypeError(f"cannot print parameter value {v!r} of type {type(v).__name__}")


def print_loc(loc: SourceLoc) -> str:
    head = f"loc({json.dumps(loc.file)}:{int(loc.line)}"
    return f"{head}:{json.dumps(loc.function)})" if loc.function else head + ")"


def print_program(p) -> str:
    """The text of `p`, a `Program` (read by its fields: `fractal.lang.ir` builds on this module)."""
    types, ret = _results(p.out_tree, p.body.results)
    lines = [f"func @{_checked(p.name, _VAR_NAME, 'program name')}({_defs(p.body.params)}) -> {types} {{"]
    for eqn in p.body.eqns:
        _eqn(eqn, "  ", lines)
    lines += [f"  return {ret}", "}"]
    return "\n".join(lines)


def _eqn(e: Eqn, pad: str, lines: list[str]) -> None:
    if not e.outputs:
        raise ValueError(f"cannot print an equation of '{e.op}' without outputs")
    head = f"{pad}{_defs(e.outputs)} = {_checked(e.op, _NAME, 'op name')}({', '.join(map(_use, e.inputs))})"
    if e.params:
        items = (f"{_checked(k, _NAME, 'parameter key')}={print_param_value(v)}" for k, v in e.params)
        head += " {" + ", ".join(items) + "}"
    head += "  " + print_loc(e.loc)
    if not e.regions:
        lines.append(head)
        return
    for i, region in enumerate(e.regions):
        lines.append(head + " {" if i == 0 else pad + "} {")
        _region(region, pad + "  ", lines)
    lines.append(pad + "}")


def _region(r: Region, pad: str, lines: list[str]) -> None:
    lines.append(f"{pad}^({_defs(r.params)}):")
    for eqn in r.eqns:
        _eqn(eqn, pad + "  ", lines)
    lines.append(f"{pad}  yield {', '.join(map(_use, r.results))}".rstrip())


def _results(tree: Any, results: tuple[Var, ...]) -> tuple[str, str]:
    """The `-> types` and `return vars` texts, nested like `out_tree`."""
    if tree is None:
        if len(results) != 1:
            raise ValueError(f"out_tree is None but the program has {len(results)} results")
        return print_type(results[0].type), _use(results[0])
    flat = iter(results)

    def walk(t):
        if t is None:
            v = next(flat, None)
            if v is None:
                raise ValueError(f"out_tree {tree!r} has more leaves than the {len(results)} results")
            return print_type(v.type), _use(v)
        if not isinstance(t, tuple):
            raise ValueError(f"out_tree {tree!r} must nest tuples with None leaves")
        parts = [walk(s) for s in t]
        return _tuple([a for a, _ in parts]), _tuple([b for _, b in parts])

    out = walk(tree)
    if next(flat, None) is not None:
        raise ValueError(f"out_tree {tree!r} has fewer leaves than the {len(results)} results")
    return out


def _const(a: np.ndarray) -> str:
    head, data = f"array<{_dtype(a.dtype)}[{','.join(map(str, a.shape))}]>", print_array_data(a)
    return f"{head} {data}" if data.startswith('b64"') else head + data


def _dtype(dt: Any) -> str:
    try:
        return dtype_name(dt)
    except KeyError:
        raise TypeError(f"cannot print dtype {dt}: use f16, f32, f64, i32, i64 or bool") from None


def _tuple(items: list[str]) -> str:
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def _opt_int(x: int | None) -> str:
    return "none" if x is None else str(int(x))


def _defs(vs: tuple[Var, ...]) -> str:
    return ", ".join(f"{_use(v)}: {print_type(v.type)}" for v in vs)


def _use(v: Var) -> str:
    return "%" + _checked(v.name, _VAR_NAME, "variable name")


def _checked(name: str, pattern: re.Pattern, what: str) -> str:
    if not isinstance(name, str) or not pattern.match(name):
        raise ValueError(f"cannot print {what} {name!r}: it must match {pattern.pattern[:-2]}")
    return name
