"""A counterexample as Python a user can paste into a test.

`python_source(name, value)` writes one assignment, `name = <expression>`, whose expression
rebuilds `value` exactly (the same lengths, shapes, dtypes and bits):

    xs = ft.fractal([[np.array([[0.0, 1.5]], dtype=np.float32)], []])
    w = np.zeros((2, 2), dtype=np.float32)
    params = Params(w=np.array([1, 2], dtype=np.int64), b=3)

A FractalTensor is `ft.fractal(nested lists)` (with `type=` when no leaf says the type: every
list empty); an array is `np.zeros`/`np.full` when constant, else `np.array` of its values
written so that they parse back to the same floats (`np.float32('0.1')` is 0.1 in float32);
NamedTuples are their class called with keywords (`imports` names the classes to import).
`failure_message` puts a failed `check` into words around that code.
"""

from __future__ import annotations

import numpy as np

import inspect

from fractal.lang.function import Function
from fractal.lang.types import FractalTensorType, TensorType, TupleType
from fractal.lang.values import FractalTensor

_DTYPES = {np.dtype(t): f"np.{t}" for t in ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
                                             "uint8", "uint16", "uint32", "uint64", "bool_", "complex64",
                                             "complex128")}


def python_source(name: str, value) -> str:
    """`name = <expression>` rebuilding `value`."""
    return f"{name} = {expression(value)}"


def imports(values) -> list[str]:
    """`from module import Class` lines for the NamedTuple classes in `values` (those defined
    at a module's top level; others are left to the reader)."""
    found: set[tuple[str, str]] = set()
    for v in values:
        _classes(v, found)
    return [f"from {m} import {c}" for m, c in sorted(found)]


def expression(value) -> str:
    """Python source that evaluates to `value` (with `np` and `ft` imported)."""
    if isinstance(value, FractalTensor):
        text = _nested(value)
        if value._parts is not None or _no_leaves(value):
            text += f", type={type_expression(value.type)}"
        return f"ft.fractal({text})"
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):
        args = ", ".join(f"{k}={expression(v)}" for k, v in zip(value._fields, value))
        return f"{type(value).__name__}({args})"
    if isinstance(value, tuple):
        items = [expression(v) for v in value]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if isinstance(value, list):
        return f"[{', '.join(expression(v) for v in value)}]"
    if isinstance(value, (np.ndarray, np.generic)):
        return _array(np.asarray(value), scalar=isinstance(value, np.generic))
    return repr(value)


def type_expression(t) -> str:
    """`ft.FractalTensor[ft.Tensor[(1, 2), ft.float32]]` for a type."""
    if isinstance(t, FractalTensorType):
        return f"ft.FractalTensor[{type_expression(t.elem)}]"
    if isinstance(t, TensorType):
        return f"ft.Tensor[{tuple(t.shape)!r}, {_DTYPES.get(np.dtype(t.dtype), repr(str(t.dtype)))}]"
    if isinstance(t, TupleType):
        return f"ft.TupleType(({', '.join(type_expression(e) for e in t.elems)},))"
    return repr(t)


def _nested(x: FractalTensor) -> str:
    items = []
    for e in x:
        if isinstance(e, FractalTensor):
            items.append(_nested(e))
        elif isinstance(e, tuple):
            items.append(expression(e))
        else:
            items.append(_array(np.asarray(e)))
    return f"[{', '.join(items)}]"


def _no_leaves(x: FractalTensor) -> bool:
    return x._parts is None and len(x.compact()[0]) == 0


def _array(a: np.ndarray, scalar: bool = False) -> str:
    dtype = _DTYPES.get(a.dtype, repr(str(a.dtype)))
    if scalar:
        return f"{dtype}({_scalar(a.item(), a.dtype)})"
    flat = a.ravel()
    if a.size and a.dtype.kind != "c" and (np.all(flat == flat[0]) and not np.isnan(flat[0]) if a.dtype.kind == "f"
                                           else np.all(flat == flat[0])):
        if flat[0] == 0 and not (a.dtype.kind == "f" and np.signbit(flat[0])):
            return f"np.zeros({a.shape!r}, dtype={dtype})"
        return f"np.full({a.shape!r}, {_scalar(flat[0].item(), a.dtype)}, dtype={dtype})"
    if a.size == 0:
        return f"np.zeros({a.shape!r}, dtype={dtype})"
    return f"np.array({_values(a)}, dtype={dtype})"


def _values(a: np.ndarray) -> str:
    if a.ndim == 0:
        return _scalar(a.item(), a.dtype)
    return f"[{', '.join(_values(row) for row in a)}]"


def _scalar(v, dtype: np.dtype) -> str:
    """A Python literal that converts to exactly this value in `dtype`."""
    if isinstance(v, bool) or isinstance(v, int):
        return repr(v)
    if isinstance(v, complex):
        return f"complex({_scalar(v.real, np.dtype(np.float64))}, {_scalar(v.imag, np.dtype(np.float64))})"
    if np.isnan(v):
        return "np.nan"
    if np.isinf(v):
        return "np.inf" if v > 0 else "-np.inf"
    if dtype.kind == "f" and dtype != np.float64:
        return str(dtype.type(v))  # the shortest text that parses back to this float16/float32
    return repr(float(v))


def _classes(v, found: set) -> None:
    if isinstance(v, tuple) and hasattr(type(v), "_fields"):
        cls = type(v)
        if "<locals>" not in cls.__qualname__ and cls.__module__ not in ("__main__", "builtins"):
            found.add((cls.__module__, cls.__qualname__))
    if isinstance(v, (tuple, list)):
        for item in v:
            _classes(item, found)


def failure_message(fn, reference, opts, args, problem: str, calls) -> str:
    """The text of a failed `check`: the problem, then the counterexample as Python: the
    arguments, and the calls (`(label, backend)`; backend None: the reference) that show it."""
    names = _parameter_names(fn, len(args))
    model = name_of(fn, "model")
    ref = name_of(reference, "reference")
    lines = ["import numpy as np", "import fractal as ft"] + imports(args)
    lines += [python_source(n, a) for n, a in zip(names, args)]
    call = ", ".join(names)
    post = name_of(opts.outputs, "outputs") if opts.outputs is not None else None
    for label, backend in calls:
        if backend is None:
            if opts.reference_inputs == "fractal":
                lines.append(f"{label} = {ref}({call})")
            else:
                pad = f", pad_value={opts.pad_value!r}" if opts.reference_inputs == "padded" else ""
                packed = f"({call},)" if len(names) == 1 else f"({call})"
                lines.append(f"{label} = {ref}(*ft.testing.reference_arguments({packed}, "
                             f"{opts.reference_inputs!r}{pad}))")
        else:
            run = f"{model}({call}, backend={backend!r})"
            lines.append(f"{label if label != backend else _identifier(backend)} = "
                         f"{post + '(' + run + ')' if post else run}")
    sizes = [f"{n}: lengths {a.lengths()}" for n, a in zip(names, args) if hasattr(a, "lengths")]
    text = [f"check({model}, {ref}) failed: {problem}", "",
            "The smallest failing example hypothesis found (paste it into a test):", ""]
    text += [f"    {line}" for line in lines]
    if sizes:
        text += ["", "  " + "; ".join(sizes)]
    return "\n".join(text)


def _parameter_names(fn: Function, n: int) -> list[str]:
    params = [p for p in fn.signature.parameters.values()
              if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    names = [p.name for p in params[:n]]
    return names + [f"arg{i}" for i in range(len(names), n)]


def name_of(f, default: str) -> str:
    name = getattr(f, "name", None) if isinstance(f, Function) else getattr(f, "__name__", None)
    return name if isinstance(name, str) and name.isidentifier() else default


def _identifier(name: str) -> str:
    return name if name.isidentifier() else "result"
