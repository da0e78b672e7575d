"""The elementwise op: an expression tree evaluated over a whole stage box, with NumPy.

Semantics are those of the plain evaluation `fn(children...)` per node (`tensor_ops.UNARY`
/ `BINARY`, `np.where`), loads broadcast (their shapes right-aligned to dst's by size-1
axes), a constant typed like its sibling operand (else like dst; float64 in a comparison of
constants only), the result cast to dst's dtype.  What this module adds is *where*
results go, since a fresh array per node per run (e.g. every step of a wavefront loop)
costs allocations, page faults and cache misses:

* the root writes straight into dst's view (`out=`, cast there if dst is wider);
* a node writes into a *target*: its parent's target when it is the parent's first child
  of the same dtype and shape (so `exp(sub(a, b))` runs as `sub(a, b, out=t)`,
  `exp(t, out=t)`), else a scratch `_Register` of its own, kept across runs and grown to
  the largest box seen;
* dst itself is such a target only when no load of the expression reads dst's buffer
  (an earlier write into dst would change what a later load reads).

Only nodes whose dtype is known exactly take targets ("outable"): probed once with NumPy on
one-element operands (exact under NumPy 2's dtype rules; under NumPy 1 only when all
operands share one dtype), with in-place forms of the non-ufunc `sigmoid`, `relu`, `gelu`,
`softplus`, `log_sigmoid` and `elu` for float dtypes that repeat `tensor_ops`' arithmetic
step by step (bit-identical), of `neg` (around a NumPy bug with strided operands, see
`_negative_into`), and `where` as `copyto(t, b); copyto(t, a, where=cond)`.  Every other
node allocates as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fractal.lang.tensor_ops import BINARY, UNARY
from fractal.lower.tile_expr import BOOL_OPS
from fractal.lower.tile_ir import Binary, Const, Load, Unary, Where, expr_loads

BOOL = np.dtype(bool)
F64 = np.dtype(np.float64)
_EXACT_PROBE = np.lib.NumpyVersion(np.__version__) >= "2.0.0"  # NEP 50: dtypes never depend on values
_GELU_C = math.sqrt(2.0 / math.pi)


def static_dtype(e, dtypes):
    """The dtype of an element expression as `verify` types it; None where only constants."""
    if isinstance(e, Load):
        return dtypes[e.region.buffer]
    if isinstance(e, Const):
        return None
    if isinstance(e, Unary):
        return BOOL if e.op in BOOL_OPS else static_dtype(e.x, dtypes)
    if isinstance(e, Binary) and e.op in BOOL_OPS:
        return BOOL
    a, b = static_dtype(e.a, dtypes), static_dtype(e.b, dtypes)
    return a if a is not None else b


def _constant(value: float, dtype) -> np.generic:
    with np.errstate(all="ignore"):
        return np.asarray(value).astype(dtype)[()]


# --- in-place forms of tensor_ops' non-ufunc functions (same steps, same roundings) ---------

def _negative_into(x, out, tmp):
    """`np.negative(x, out=out)`, around a NumPy bug: NumPy 2.4's AVX-512 `negative` loop
    reads a strided input wrongly when out is not contiguous (f32/i32 input of element
    stride 4, f64/i64 of stride 8, on this machine's AVX-512 CPU; every other unary and
    binary ufunc checked is right); with either operand contiguous it is right."""
    if not (out.flags.c_contiguous or x.flags.c_contiguous):
        x = np.ascontiguousarray(x)
    return np.negative(x, out=out)


def _sigmoid_into(x, out, tmp):
    _negative_into(x, out, tmp)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    np.add(1, out, out=out)
    return np.divide(1, out, out=out)


def _relu_into(x, out, tmp):
    return np.maximum(x, np.zeros((), x.dtype), out=out)


def _gelu_into(x, out, tmp):
    np.multiply(x, x, out=tmp)  # the bracket first: `out` may be `x`; x*x*x, as NumPy's
    np.multiply(tmp, x, out=tmp)  # float power takes ~100x longer than two multiplies
    np.multiply(tmp, 0.044715, out=tmp)
    np.add(x, tmp, out=tmp)
    np.multiply(tmp, _GELU_C, out=tmp)
    np.tanh(tmp, out=tmp)
    np.add(tmp, 1, out=tmp)
    np.multiply(x, 0.5, out=out)
    return np.multiply(out, tmp, out=out)


def _log1p_exp_neg_abs_into(x, tmp):
    """tmp = log1p(exp(-|x|)), the stable tail of softplus and log_sigmoid (x is only read)."""
    np.abs(x, out=tmp)
    _negative_into(tmp, tmp, None)
    np.exp(tmp, out=tmp)
    return np.log1p(tmp, out=tmp)


def _softplus_into(x, out, tmp):
    _log1p_exp_neg_abs_into(x, tmp)  # first: `out` may be `x`
    np.maximum(x, np.zeros((), x.dtype), out=out)
    return np.add(out, tmp, out=out)


def _log_sigmoid_into(x, out, tmp):
    _log1p_exp_neg_abs_into(x, tmp)
    np.minimum(x, np.zeros((), x.dtype), out=out)
    return np.subtract(out, tmp, out=out)


def _elu_into(x, out, tmp):
    zero = np.zeros((), x.dtype)
    np.minimum(x, zero, out=tmp)
    np.expm1(tmp, out=tmp)
    np.maximum(x, zero, out=out)
    return np.add(out, tmp, out=out)


INTO = {"neg": _negative_into, "sigmoid": _sigmoid_into, "relu": _relu_into, "gelu": _gelu_into,
        "softplus": _softplus_into, "log_sigmoid": _log_sigmoid_into, "elu": _elu_into}
NEEDS_TMP = frozenset({"gelu", "softplus", "log_sigmoid", "elu"})


# --- the typed tree -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Node:
    """One expression node with what evaluation needs: its kind (load, const, ufunc, into,
    where, call), NumPy function, children, result dtype (None: unknown), shape after the
    box (`tail`, as many axes as dst), a load's getter or a constant's value, and whether it
    can write into a given array (`outable`)."""

    kind: str
    fn: object = None
    name: str = ""
    children: tuple = ()
    dtype: np.dtype | None = None
    tail: tuple = ()
    get: object = None
    value: object = None
    outable: bool = False

    @property
    def computed(self) -> bool:
        return self.kind not in ("load", "const")


def _probe(fn, children):
    """The dtype NumPy gives `fn` on operands of the children's dtypes (None if it fails)."""
    if any(c.kind != "const" and c.dtype is None for c in children):
        return None
    args = [c.value if c.kind == "const" else np.ones((1,), c.dtype) for c in children]
    try:
        with np.errstate(all="ignore"):
            return np.asarray(fn(*args)).dtype
    except Exception:  # noqa: BLE001 (the real run raises it again, with the real operands)
        return None


def _outable(kind: str, dtype, children) -> bool:
    """Whether a node of this kind and probed dtype can compute into a given array."""
    if dtype is None:
        return False
    operands = {c.dtype for c in children[-2:]}  # where: a and b
    if kind == "ufunc":  # NumPy 1 may type mixed operands by value: only same-dtype ones there
        return _EXACT_PROBE or len({c.dtype for c in children}) == 1
    if kind == "into":
        return operands == {dtype} and dtype.kind == "f"
    return kind == "where" and children[0].dtype == BOOL and operands == {dtype}


def _node(kind: str, fn, name: str, children: tuple) -> _Node:
    dtype = _probe(fn, children)
    tail = tuple(np.broadcast_shapes(*(c.tail for c in children)))
    return _Node(kind, fn, name, children, dtype, tail, outable=_outable(kind, dtype, children))


def _typed(e, want, scope, ndst: int) -> _Node:
    """The typed tree of `e`; a constant takes the dtype `want`."""
    if isinstance(e, Load):
        pads = ndst - len(e.region.shape)
        access = scope.access(e.region, pads=pads)
        return _Node("load", dtype=access.dtype, tail=(1,) * pads + e.region.shape, get=access.get)
    if isinstance(e, Const):
        value = _constant(e.value, want)
        return _Node("const", dtype=value.dtype, tail=(1,) * ndst, value=value)  # box dims stay leading
    if isinstance(e, Unary):
        fn = UNARY[e.op]
        kind = "into" if e.op in INTO else "ufunc" if isinstance(fn, np.ufunc) else "call"
        return _node(kind, fn, e.op, (_typed(e.x, want, scope, ndst),))
    da, db = static_dtype(e.a, scope.dtypes), static_dtype(e.b, scope.dtypes)
    if isinstance(e, Binary) and e.op in BOOL_OPS:
        want = F64  # constants compared with constants: as the exact numbers they are
    a = _typed(e.a, db if db is not None else want, scope, ndst)
    b = _typed(e.b, da if da is not None else want, scope, ndst)
    if isinstance(e, Where):
        return _node("where", np.where, "where", (_typed(e.cond, BOOL, scope, ndst), a, b))
    return _node("ufunc", BINARY[e.op], e.op, (a, b))


# --- scratch and compiled evaluation ------------------------------------------------------------

class _Register:
    """Scratch storage for one node's results, kept across calls: a flat buffer grown to the
    largest box seen, viewed as `box + tail` (the last view is reused while the box repeats)."""

    __slots__ = ("dtype", "tail", "flat", "box", "array")

    def __init__(self, dtype, tail):
        self.dtype, self.tail = dtype, tail
        self.flat, self.box, self.array = np.empty(0, dtype), None, None

    def get(self, box):
        if box != self.box:
            shape = box + self.tail
            n = math.prod(shape)
            if n > self.flat.size:
                self.flat = np.empty(n, self.dtype)
            self.box, self.array = box, self.flat[:n].reshape(shape)
        return self.array


def _chained(node: _Node):
    """The index of the child that may compute straight into the node's target, or None
    (`where` chains only b: it is copied into the target before a is copied over it)."""
    for i in (2,) if node.kind == "where" else range(len(node.children)):
        c = node.children[i]
        if c.computed and c.outable and c.dtype == node.dtype and c.tail == node.tail:
            return i
    return None


class _Emitter:
    """Python source for one op's `run(env, los, box)`: one statement per computed node,
    loads as inline view calls; functions, getters, constants and registers are bound by
    generated names in the function's globals (nothing from the program becomes source)."""

    def __init__(self):
        self.globals, self.lines = {"__builtins__": {}, "copyto": np.copyto}, []

    def bind(self, obj, prefix: str) -> str:
        name = f"{prefix}{len(self.globals)}"
        self.globals[name] = obj
        return name

    def emit(self, line: str) -> None:
        self.lines.append("    " + line)

    def value(self, node: _Node, target: str | None = None) -> str:
        """Source of the node's value; an outable node is computed into `target` (a local
        holding its parent's target) or into a register of its own."""
        if node.kind == "load":
            return f"{self.bind(node.get, 'G')}(env, los, box)"
        if node.kind == "const":
            return self.bind(node.value, "K")
        if not node.outable:
            return f"{self.bind(node.fn, 'F')}({', '.join(self.value(c) for c in node.children)})"
        if target is None:
            target = f"r{len(self.lines)}"
            self.emit(f"{target} = {self.bind(_Register(node.dtype, node.tail), 'R')}.get(box)")
        self.into(node, target, chain=True)
        return target

    def into(self, node: _Node, target: str, chain: bool) -> None:
        """Statements writing the node into the local `target`; `chain`: a child may be
        computed in `target` first."""
        k = _chained(node) if chain else None
        args = [self.value(c, target if i == k else None) for i, c in enumerate(node.children)]
        if node.kind == "where":
            cond, a, b = args
            if k is None:
                self.emit(f"copyto({target}, {b})")
            self.emit(f"copyto({target}, {a}, where={cond})")
        elif node.kind == "into":
            tmp = f"{self.bind(_Register(node.dtype, node.tail), 'R')}.get(box)" if node.name in NEEDS_TMP else "None"
            self.emit(f"{self.bind(INTO[node.name], 'I')}({args[0]}, {target}, {tmp})")
        else:
            self.emit(f"{self.bind(node.fn, 'F')}({', '.join(args)}, out={target})")

    def function(self):
        source = "def run(env, los, box):\n" + "\n".join(self.lines)
        exec(source, self.globals)  # noqa: S102 (source built above from generated names only)
        return self.globals["run"]


def compile_elementwise(op, scope):
    """`run(env, los, box)` for an `Elementwise` op."""
    dst = scope.access(op.dst)
    dtype = dst.dtype
    root = _typed(op.expr, dtype, scope, len(op.dst.shape))
    alias_free = all(r.buffer != op.dst.buffer for r in expr_loads(op.expr))
    em = _Emitter()
    if dst.is_view and root.outable and root.dtype == dtype and root.tail == op.dst.shape \
            and (alias_free or root.kind != "where"):  # where writes dst twice: no load may read it
        em.emit(f"out = {em.bind(dst.view, 'D')}(env, los, box)")
        em.into(root, "out", chain=alias_free)  # chained children write into dst: no load reads it
    elif dst.is_view and root.kind == "ufunc":  # the last ufunc writes (and casts) into dst
        args = [em.value(c) for c in root.children]
        em.emit(f"{em.bind(root.fn, 'F')}({', '.join(args)}, out={em.bind(dst.view, 'D')}(env, los, box), "
                f"casting='unsafe')")
    else:
        em.emit(f"{em.bind(dst.put, 'P')}(env, los, box, {em.value(root)})")
    return em.function()
