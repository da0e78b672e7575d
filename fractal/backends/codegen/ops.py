"""The C++ form of every element-wise op, one row per op: the emitter's only per-op table.

A row maps an operand kind (`f` float, `i` integer, `b` bool: the kind of the dtype the op
computes in, found by NumPy's own promotion) to a template.  In a template `{x}` (unary) or
`{a}`, `{b}` (binary) are the operands, `{f:exp}` the dialect's math function for the
compute type (`expf`, `exp`, `std::exp`), `{c:0.5}` a literal of the compute type and `{T}`
its C++ type.  A template that reads an operand twice, or that is a function body (it holds
`return`), becomes a small inline function `fl_<op>_<dtype>` emitted once, so an expression
never repeats a subtree.  The float forms follow `fractal.lang.tensor_ops` step by step (the
stable softplus/log_sigmoid/elu, gelu's tanh approximation, sigmoid's exp form), and
`fl_maximum`/`fl_minimum` propagate NaN like NumPy.  A kind missing from a row means NumPy
has no loop for it either (`sub` of bools).  Integer `floordiv`/`mod` by zero give 0 and an
int to a negative int power 0 (NumPy: 0 with a warning, and an error); signed overflow
wraps in NumPy but is undefined in C++: a host build that relies on wrapping passes
`-fwrapv` (GPUs wrap in practice).

    {"gelu": {"f": "{c:0.5} * {x} * ({c:1} + {f:tanh}({c:0.7978845608028654} * ({x} + {c:0.044715} * ({x} * {x} * {x}))))"}}
    gelu(x) in CUDA float32 ->  fl_gelu_float32(x)   with
    static __device__ __forceinline__ float fl_gelu_float32(float x) { return 0.5f * x * (1.0f + tanhf(0.7978846f * (x + 0.044715f * (x * x * x)))); }
"""

from __future__ import annotations

import math


_CALL = "{f:%s}({x})"
_FLOAT_MOD = ("{T} m = {f:fmod}({a}, {b}); if (m != {c:0}) { if (({b} < {c:0}) != (m < {c:0})) m += {b}; } "
              "else m = {f:copysign}({c:0}, {b}); return m;")
_FLOAT_FLOORDIV = ("if ({b} == {c:0}) return {a} / {b}; {T} m = {f:fmod}({a}, {b}); {T} d = ({a} - m) / {b}; "
                   "if (m != {c:0} && (({b} < {c:0}) != (m < {c:0}))) d -= {c:1}; "
                   "if (d == {c:0}) return {f:copysign}({c:0}, {a} / {b}); "
                   "{T} q = {f:floor}(d); if (d - q > {c:0.5}) q += {c:1}; return q;")
_INT_FLOORDIV = ("if ({b} == 0) return 0; {T} q = {a} / {b}; "
                 "return ({a} % {b} != 0 && (({a} % {b} < 0) != ({b} < 0))) ? q - 1 : q;")
_INT_MOD = "if ({b} == 0) return 0; {T} r = {a} % {b}; return (r != 0 && ((r < 0) != ({b} < 0))) ? r + {b} : r;"
_INT_POW = ("if ({b} < 0) return 0; {T} r = 1, p = {a}; for ({T} e = {b}; e > 0; e >>= 1) { if (e & 1) r *= p; "
            "p *= p; } return r;")
_STABLE_TAIL = "{f:log1p}({f:exp}(-{f:fabs}({x})))"
_GELU_C = repr(math.sqrt(2.0 / math.pi))

UNARY_OPS = {
    "neg": {"f": "-{x}", "i": "-{x}"},
    **{fn: {"f": _CALL % fn} for fn in ("exp", "log", "log1p", "tanh", "sqrt", "sin", "cos")},
    "abs": {"f": _CALL % "fabs", "i": "{x} < 0 ? -{x} : {x}", "b": "{x}"},
    "sigmoid": {"f": "{c:1} / ({c:1} + {f:exp}(-{x}))"},
    "softplus": {"f": "fl_maximum({x}, {c:0}) + " + _STABLE_TAIL},
    "log_sigmoid": {"f": "fl_minimum({x}, {c:0}) - " + _STABLE_TAIL},
    "elu": {"f": "fl_maximum({x}, {c:0}) + {f:expm1}(fl_minimum({x}, {c:0}))"},
    "relu": {"f": "fl_maximum({x}, {c:0})", "i": "fl_maximum({x}, {c:0})", "b": "{x}"},
    "gelu": {"f": "{c:0.5} * {x} * ({c:1} + {f:tanh}({c:%s} * ({x} + {c:0.044715} * ({x} * {x} * {x}))))" % _GELU_C},
    "logical_not": {"b": "!{x}"},
}

_ARITH = {"add": "+", "sub": "-", "mul": "*"}
_COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
BINARY_OPS = {
    **{op: {"f": "{a} %s {b}" % s, "i": "{a} %s {b}" % s} for op, s in _ARITH.items()},
    "add": {"f": "{a} + {b}", "i": "{a} + {b}", "b": "{a} || {b}"},
    "mul": {"f": "{a} * {b}", "i": "{a} * {b}", "b": "{a} && {b}"},
    "div": {"f": "{a} / {b}"},
    "pow": {"f": "{f:pow}({a}, {b})", "i": _INT_POW},
    "mod": {"f": _FLOAT_MOD, "i": _INT_MOD},
    "floordiv": {"f": _FLOAT_FLOORDIV, "i": _INT_FLOORDIV},
    "maximum": {"f": "fl_maximum({a}, {b})", "i": "fl_maximum({a}, {b})", "b": "{a} || {b}"},
    "minimum": {"f": "fl_minimum({a}, {b})", "i": "fl_minimum({a}, {b})", "b": "{a} && {b}"},
    **{op: {k: "{a} %s {b}" % s for k in "fib"} for op, s in _COMPARE.items()},
    "logical_and": {"b": "{a} && {b}"},
    "logical_or": {"b": "{a} || {b}"},
}

# Ops whose operands are read as truth values (converted to bool first), as NumPy's logical ufuncs do.
LOGICAL = frozenset({"logical_and", "logical_or", "logical_not"})
# Ops whose result is bool while their operands compute in the promoted operand dtype.
COMPARISONS = frozenset(_COMPARE)

# Generic helpers (templates on the operand type) the rows call by name.  NumPy's NaN-propagating
# max as a plain `a > b ? a : b` (x86's max instruction: `b` where either is NaN) and a NaN `a`
# kept: a vector max, a compare and a blend in a host loop, and no branch in scalar code (the
# one-select form `((a > b) | (a != a)) ? a : b` compiled to two branches in GCC's scalar code,
# mispredicted half the time on random data: the lanes' final combination of every row max)
GENERIC = {
    "fl_maximum": "template <typename T> {inline} T fl_maximum(T a, T b) { T m = a > b ? a : b; return a != a ? a : m; }",
    "fl_minimum": "template <typename T> {inline} T fl_minimum(T a, T b) { T m = a < b ? a : b; return a != a ? a : m; }",
}

