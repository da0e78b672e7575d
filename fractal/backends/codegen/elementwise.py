"""Element-wise expression trees of the tile IR as one C++ expression per element.

`emit_expr(expr, want, dtypes, load, dialect)` gives the C++ text of an `Elementwise`
expression (`fractal.lower.tile_expr`) at one element, typed exactly as the interpreter
(`fractal.backends.pointwise.evaluate`) types it: a load has its buffer's dtype, a constant
the dtype of its sibling operand (else `want`; both sides of a comparison of constants are
float64), and every op computes in the dtype NumPy's promotion gives its operands (an int
`exp` in float64, an int `div` in float64, a comparison in the operands' common dtype).
Half precision computes in float32 and is rounded when stored.  The caller supplies
`load(region) -> str` (the element's C++ lvalue, e.g. `x[offset(...)]`); `store(...)`
converts the value to a destination dtype.  Per-op behaviour is the table of
`fractal.backends.codegen.ops`; `Emitted.helpers` lists the inline functions the text
calls, which `prelude(dialect, helpers)` defines once.

    >>> e = Binary("add", Unary("sigmoid", Load(x)), Const(1.0))          # x: float32
    >>> print(emit_expr(e, "float32", {"x": "float32"}, lambda r: "x[i]", CUDA).text)
    1.0f / (1.0f + expf(-x[i])) + 1.0f
    >>> v = emit_expr(Unary("softplus", Load(h)), "float16", {"h": "float16"}, lambda r: "h[i]", CUDA)
    >>> print(store(v, "float16", CUDA).text)
    __float2half(fl_softplus_float32(__half2float(h[i])))
    >>> print(prelude(CUDA, v.helpers))
    #include <cuda_fp16.h>
    #include <cuda_bf16.h>
    template <typename T> static __device__ __forceinline__ T fl_maximum(T a, T b) { T m = a > b ? a : b; return a != a ? a : m; }
    static __device__ __forceinline__ float fl_softplus_float32(float x) { return fl_maximum(x, 0.0f) + log1pf(expf(-fabsf(x))); }
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from fractal.lang.errors import ArgumentError, FractalTypeError, UnsupportedError
from fractal.lang.tensor_ops import BINARY, UNARY
from fractal.lower.tile_expr import BOOL_OPS, Binary, Const, Load, Region, Unary, Where

from .dialect import COMPUTE, KIND, Dialect
from .ops import BINARY_OPS, COMPARISONS, GENERIC, LOGICAL, UNARY_OPS

_FIELD = re.compile(r"\{([A-Za-z]\w*)(?::([^{}\s]*))?\}")


@dataclass(frozen=True)
class Emitted:
    """C++ text of a value of dtype `dtype` (held in its compute type), and the helper
    definitions the text calls, in first-use order."""

    text: str
    dtype: str
    helpers: tuple[str, ...] = ()


def prelude(d: Dialect, helpers) -> str:
    """The dialect's includes, then the definitions of `helpers` (from one or more `Emitted`),
    each once, in order."""
    return d.includes() + "".join(h + "\n" for h in dict.fromkeys(helpers))


def emit_expr(expr, want, dtypes: Mapping[str, object], load: Callable[[Region], str], d: Dialect) -> Emitted:
    """`expr` at one element; `want` types constants with no typed sibling (the destination's
    dtype), `dtypes` maps buffer names to dtypes (NumPy dtypes or names such as "bfloat16")."""
    return _Emitter({k: _name(v) for k, v in dtypes.items()}, load, d).emit(expr, _name(want))


def store(value: Emitted, dtype, d: Dialect) -> Emitted:
    """`value` converted to `dtype` and into its storage type (as `dst[...] = value` does)."""
    dtype = _name(dtype)
    v = _convert(value, COMPUTE[dtype], d)
    return Emitted(d.from_compute(dtype, v.text), dtype, v.helpers)


def cast(text: str, src, dst, d: Dialect) -> Emitted:
    """A value of dtype `src` (its storage text, e.g. a load) converted to `dst` as NumPy's
    `astype` converts it (a `Convert` op): floats to ints truncate toward zero (undefined in
    C++ beyond the int's range, where NumPy gives the int's minimum), anything to bool is `!= 0`."""
    src = _name(src)
    return store(Emitted(d.to_compute(src, text), src), dst, d)


def _name(dtype) -> str:
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    if name not in COMPUTE:
        raise FractalTypeError(f"the C++ emitter has no scalar type for {name} (it has {', '.join(COMPUTE)})")
    return name


@functools.lru_cache(maxsize=None)
def _result(fn_name: str, *dtypes: str) -> str:
    """The dtype NumPy gives `fn_name` on `dtypes` (bfloat16 promotes like float16, and with
    float16 to float32, as in PyTorch)."""
    if "bfloat16" in dtypes and "float16" in dtypes:
        dtypes = tuple("float32" if t in ("bfloat16", "float16") else t for t in dtypes)
    fn = {**UNARY, **BINARY, "where": lambda a, b: np.where(True, a, b)}[fn_name]
    probes = [np.ones((1,), "float16" if t == "bfloat16" else t) for t in dtypes]
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(fn(*probes)).dtype.name
    except TypeError:
        raise FractalTypeError(f"{fn_name} is not defined for {' and '.join(dtypes)} operands (as in NumPy)") from None
    return _name("bfloat16" if out == "float16" and "bfloat16" in dtypes else out)


class _Emitter:
    def __init__(self, dtypes, load, d: Dialect):
        self.dtypes, self.load, self.d = dtypes, load, d

    def dtype(self, r: Region) -> str:
        if r.buffer not in self.dtypes:
            raise ArgumentError(f"the expression loads buffer {r.buffer}, which has no dtype in {sorted(self.dtypes)}")
        return self.dtypes[r.buffer]

    def static(self, e) -> str | None:
        """The interpreter's `dtype_of`: the dtype that types a sibling constant."""
        if isinstance(e, Load):
            return self.dtype(e.region)
        if isinstance(e, Const):
            return None
        if isinstance(e, Unary):
            return "bool" if e.op in BOOL_OPS else self.static(e.x)
        if isinstance(e, Binary) and e.op in BOOL_OPS:
            return "bool"
        a = self.static(e.a)
        return a if a is not None else self.static(e.b)

    def emit(self, e, want: str) -> Emitted:
        if isinstance(e, Load):
            dt = self.dtype(e.region)
            return Emitted(self.d.to_compute(dt, self.load(e.region)), dt)
        if isinstance(e, Const):
            return Emitted(_literal(e.value, want, self.d), want)
        if isinstance(e, Unary):
            x = self.emit(e.x, want)
            return _apply(e.op, UNARY_OPS, (x,), _result(e.op, x.dtype) if e.op in UNARY else None, self.d)
        da, db = self.static(e.a), self.static(e.b)
        if isinstance(e, Binary) and e.op in BOOL_OPS:
            want = "float64"  # constants compared with constants: exactly
        a = self.emit(e.a, db if db is not None else want)
        b = self.emit(e.b, da if da is not None else want)
        if isinstance(e, Where):
            c = _convert(self.emit(e.cond, "bool"), "bool", self.d)
            out = _result("where", a.dtype, b.dtype)
            a, b = _convert(a, COMPUTE[out], self.d), _convert(b, COMPUTE[out], self.d)
            text = f"{_parens(c.text, '', ' ?')} ? {_parens(a.text, '? ', ' :')} : {_parens(b.text, ': ', '')}"
            return Emitted(text, out, c.helpers + a.helpers + b.helpers)
        return _apply(e.op, BINARY_OPS, (a, b), _result(e.op, a.dtype, b.dtype) if e.op in BINARY else None, self.d)


def _apply(op: str, table, args: tuple[Emitted, ...], result: str | None, d: Dialect) -> Emitted:
    if op not in table or result is None:
        raise UnsupportedError(f"the C++ emitter has no rule for the element-wise op {op!r}")
    compute = "bool" if op in LOGICAL else COMPUTE[_result("where", *(a.dtype for a in args)) if op in COMPARISONS
                                                   else result]
    template = table[op].get(KIND[compute])
    if template is None:
        raise FractalTypeError(f"{op} is not defined for {' and '.join(a.dtype for a in args)} operands (as in NumPy)")
    args = tuple(_convert(a, compute, d) for a in args)
    names = ("x",) if len(args) == 1 else ("a", "b")
    helpers = tuple(h for a in args for h in a.helpers) + tuple(_generic(template, d))
    if "return" in template or any(template.count("{%s}" % n) > 1 for n in names):
        ctype, fn = d.ctype[compute], f"fl_{op}_{compute}"
        params = ", ".join(f"{ctype} {n}" for n in names)
        body = _render(template, dict(zip(names, names)), compute, d, wrap=False)
        body = body if "return" in template else f"return {body};"
        result_type = "bool" if op in COMPARISONS else ctype
        helpers += (f"{d.inline} {result_type} {fn}({params}) {{ {body} }}",)
        return Emitted(f"{fn}({', '.join(a.text for a in args)})", _stored(op, result), helpers)
    text = _render(template, {n: a.text for n, a in zip(names, args)}, compute, d, wrap=True)
    return Emitted(text, _stored(op, result), helpers)


def _stored(op: str, result: str) -> str:
    return "bool" if op in LOGICAL or op in COMPARISONS else result


def _generic(template: str, d: Dialect):
    for name, text in GENERIC.items():
        if name + "(" in template:
            yield text.replace("{inline}", d.inline)


def _render(template: str, operands: Mapping[str, str], compute: str, d: Dialect, wrap: bool) -> str:
    def field(m):
        key, arg = m.group(1), m.group(2)
        if key == "f":
            return d.math(arg, compute)
        if key == "c":
            return _literal(float(arg), compute, d)
        if key == "T":
            return d.ctype[compute]
        text = operands[key]
        return _parens(text, template[:m.start()], template[m.end():]) if wrap else text
    return _FIELD.sub(field, template)


# C++ precedence levels (lower binds tighter) of the operators the templates use.
_PREC = {"*": 3, "/": 3, "%": 3, "+": 4, "-": 4, "<": 6, "<=": 6, ">": 6, ">=": 6, "==": 7, "!=": 7,
         "&&": 11, "||": 12, "?": 13, ":": 13}
_UNARY_PREC = 2
_TOKEN = re.compile(r"\s*([A-Za-z_][\w:]*<[\w ]*>(?:::\w+)?|[A-Za-z_][\w:]*|\d[\d.]*(?:e[+-]\d+)?f?(?:LL)?"
                    r"|&&|\|\||[<>=!]=|[-+*/%<>!?:()\[\],{}])")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _is_unary(prev: str | None) -> bool:
    return prev is None or prev in _PREC or prev in ("(", ",", "!")


def _prec(text: str) -> int:
    """The precedence level of `text`'s loosest operator outside brackets (0: a name,
    number or call)."""
    depth, prev, level = 0, None, 0
    for t in _tokens(text):
        if t in ("(", "["):
            depth += 1
        elif t in (")", "]"):
            depth -= 1
        elif depth == 0 and (t in _PREC or t == "!"):
            unary = t in ("-", "+", "!") and _is_unary(prev)
            level = max(level, _UNARY_PREC if unary else _PREC[t])
        prev = t
    return level


def _parens(text: str, before: str, after: str) -> str:
    """`text` as an operand between template text `before` and `after`, parenthesised only
    where C++ precedence needs it (a right operand also at equal precedence, and any
    operator after a unary one: `-(-x)`, never `--x`)."""
    p = _prec(text)
    if p == 0:
        return text
    left, right = _tokens(before)[-2:], _tokens(after)[:1]
    need = False
    if left and (left[-1] in _PREC or left[-1] == "!"):
        unary = left[-1] in ("-", "+", "!") and _is_unary(left[-2] if len(left) == 2 else None)
        need = p >= (_UNARY_PREC if unary else _PREC[left[-1]])
    if right and right[0] in _PREC:
        need = need or p > _PREC[right[0]]
    return f"({text})" if need else text


def _convert(v: Emitted, compute: str, d: Dialect) -> Emitted:
    """`v` in compute dtype `compute` (C++ conversion rules equal NumPy's `astype` for finite,
    in-range values; to bool is `!= 0`, so NaN is true)."""
    have = COMPUTE[v.dtype]
    if have == compute:
        return Emitted(v.text, compute, v.helpers) if v.dtype != compute else v
    if compute == "bool":
        return Emitted(f"{_parens(v.text, '', ' != 0')} != {_literal(0.0, have, d)}", "bool", v.helpers)
    return Emitted(f"static_cast<{d.ctype[compute]}>({v.text})", compute, v.helpers)


def _literal(value: float, dtype: str, d: Dialect) -> str:
    """A constant as NumPy's `np.asarray(value).astype(dtype)` gives it, in its compute type."""
    compute = COMPUTE[dtype]
    if compute == "bool":
        return "true" if value != 0 else "false"
    if KIND[compute] == "i":
        if not np.isfinite(value):
            raise FractalTypeError(f"the constant {value} has no {dtype} value")
        n = int(np.asarray(value).astype(dtype))
        return f"{n}LL" if compute == "int64" else str(n)
    with np.errstate(over="ignore"):  # 1e30 as a float16 is inf, as in NumPy
        x = _bfloat16(value) if dtype == "bfloat16" else float(np.asarray(value).astype(dtype))
    if np.isnan(x):
        return d.nan[compute]
    if np.isinf(x):
        return d.infinity[compute] if x > 0 else "-" + d.infinity[compute]
    return f"{str(np.float32(x))}f" if compute == "float32" else repr(x)  # (the shortest text that rounds back)


def _bfloat16(value: float) -> float:
    """`value` rounded to bfloat16 (the upper half of a float32, to nearest even)."""
    bits = int(np.asarray(value, np.float32).view(np.uint32))
    if (bits & 0x7F800000) == 0x7F800000:  # inf and NaN as they are
        return float(np.float32(value))
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return float(np.asarray(bits, np.uint32).view(np.float32))
