"""Read the program IR text form (see `fractal.lang.printer`) back into the IR dataclasses.

Parsing runs in two passes: lark's LALR parser plus `_Build` turn the text into
context-free pieces (types, parameter values, locations, and equations whose
variables are still name tokens); `_Resolver` then walks them with lexical scopes,
because the text gives a variable's type only where it is defined and every use
must become the same `Var`.  `parse_program(print_program(p)) == p` for every program.
"""

from __future__ import annotations

import re
from collections import ChainMap
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from lark import Lark, Token, v_args
from lark.visitors import Transformer_NonRecursive

from .array_text import GRAMMAR_DIR
from .errors import UNKNOWN_LOC, SourceLoc
from .ir import Const, Eqn, Program, Region, Slice, Var
from .text_form import TextForm
from .types import FractalTensorType, TensorType, TupleType

_GRAMMAR = Path(__file__).with_name("program.lark")


def parse_program(text: str, known_ops: Iterable[str] | None = None) -> Program:
    """Parse one `func @name(...) -> ... { ... }`; with `known_ops`, other op names are errors.

    Text that is not a `str` is a `FractalTypeError`; a syntax error, or brackets nested more
    than `MAX_NESTING` deep, a `ParseError` with the line and column."""
    func = _FORM.parse(text, "parse_program", _Build())
    ops = None if known_ops is None else frozenset(known_ops)
    return _Resolver(ops).program(func)


@lru_cache(maxsize=None)
def _parser() -> Lark:
    return Lark(_GRAMMAR.read_text(encoding="utf-8"), parser="lalr", maybe_placeholders=False,
                propagate_positions=True, import_paths=[GRAMMAR_DIR])


# --- syntax errors -----------------------------------------------------------------

def _unclosed_hint(text: str) -> str:
    unclosed = _unclosed_braces(text)
    return f" ({unclosed} unclosed '{{': unterminated region or function body?)" if unclosed else ""


def _unclosed_braces(text: str) -> int:
    code = re.sub(r'"([^"\\\n]|\\.)*"', "", text)  # braces inside strings don't count
    return code.count("{") - code.count("}")


_FORM = TextForm("<program text>", _parser, {"VAR": "%variable"}, position_first=False, at_end=_unclosed_hint)
_error, _string, _dtype = _FORM.error, _FORM.string, _FORM.dtype


# --- pass 1: context-free pieces -------------------------------------------------------

@dataclass(frozen=True)
class _EqnText:
    outs: tuple[tuple[Token, Any], ...]
    op: Token
    args: tuple[Token, ...]
    params: tuple[tuple[str, Any], ...]
    loc: SourceLoc
    regions: tuple["_RegionText", ...]


@dataclass(frozen=True)
class _RegionText:
    params: tuple[tuple[Token, Any], ...]
    eqns: tuple[_EqnText, ...]
    results: tuple[Token, ...]


@dataclass(frozen=True)
class _FuncText:
    name: str
    body: _RegionText
    result_type: Any
    ret: Any  # a VAR token, or nested tuples of them


class _Nest(tuple):
    """A `(...)` in a return, with its position for messages."""

    def __new__(cls, items, line, column):
        self = super().__new__(cls, items)
        self.line, self.column = line, column
        return self


class _Params(tuple):
    """The sorted `(key, value)` pairs of one `{...}` (a marker type among eqn children)."""


class _Build(Transformer_NonRecursive):  # (deep types do not recurse in Python)
    # structure
    def start(self, c):
        name, params, rtype, *eqns, ret = c
        return _FuncText(str(name)[1:], _RegionText(params, tuple(eqns), ()), rtype, ret)

    vardef = param = vardefs = outs = args = dims = tuple

    def eqn(self, c):
        outs, op, args, *rest = c
        params = next((x for x in rest if isinstance(x, _Params)), _Params())
        loc = next((x for x in rest if isinstance(x, SourceLoc)), UNKNOWN_LOC)
        regions = tuple(x for x in rest if isinstance(x, _RegionText))
        return _EqnText(outs, op, args, params, loc, regions)

    def region(self, c):
        return _RegionText(c[0], tuple(c[1:-1]), c[-1])

    def params(self, c):
        seen = set()
        for key, _ in c:
            if str(key) in seen:
                raise _error(f"duplicate parameter '{key}'", key.line, key.column)
            seen.add(str(key))
        return _Params(sorted(((str(k), v) for k, v in c), key=lambda kv: kv[0]))

    def loc(self, c):
        file, function = _string(c[0]), _string(c[2]) if len(c) > 2 else ""
        return SourceLoc(file, int(c[1]), function)

    ret_var = staticmethod(lambda c: c[0])

    @v_args(meta=True)
    def ret_tuple(self, meta, c):
        return _Nest(c, meta.line, meta.column)

    # types
    def tensor_type(self, c):
        name, dims = c
        for d in dims:
            if int(d) < 0:
                raise _error(f"negative dimension {d} in type", d.line, d.column)
        return TensorType(tuple(int(d) for d in dims), _dtype(name))

    ft_type = staticmethod(lambda c: FractalTensorType(c[0]))

    @v_args(meta=True)
    def ft_empty(self, meta, c):
        raise _error("'ft<>' needs an element type, e.g. ft<f32[4]>", meta.line, meta.column)

    tuple_type = staticmethod(lambda c: TupleType(tuple(c)))

    # parameter values (children are tokens or already-built values)
    v_none = staticmethod(lambda c: None)
    v_true = staticmethod(lambda c: True)
    v_false = staticmethod(lambda c: False)
    v_inf = staticmethod(lambda c: float("inf"))
    v_ninf = staticmethod(lambda c: float("-inf"))
    v_nan = staticmethod(lambda c: float("nan"))
    v_ellipsis = staticmethod(lambda c: Ellipsis)
    v_int = staticmethod(lambda c: int(c[0]))
    v_float = staticmethod(lambda c: float(c[0]))
    v_str = staticmethod(lambda c: _string(c[0]))
    v_dtype = staticmethod(lambda c: _dtype(c[0]))
    v_type = staticmethod(lambda c: c[0])
    v_slice = staticmethod(lambda c: Slice(*c))
    v_tuple = tuple

    @v_args(meta=True)
    def v_array(self, meta, c):
        t, data = c
        if not isinstance(t, TensorType):
            raise _error(f"array<{t}>: an array type must be a tensor type like f32[2,2]",
                         meta.line, meta.column)
        return Const(_FORM.array(data, t.shape, t.dtype, f"array<{t}>"))


# --- pass 2: scopes -----------------------------------------------------------------------

class _Resolver:
    """Turns name tokens into `Var`s: a use sees the innermost enclosing definition."""

    def __init__(self, known_ops: frozenset[str] | None):
        self.known_ops = known_ops

    def program(self, f: _FuncText) -> Program:
        params, eqns, scope = self.scoped(f.body, ChainMap())
        results: list[Var] = []
        out_tree = self.ret(f.ret, f.result_type, scope, results)
        return Program(f.name, Region(params, eqns, tuple(results)), out_tree)

    def region(self, r: _RegionText, outer: ChainMap) -> Region:
        params, eqns, scope = self.scoped(r, outer)
        return Region(params, eqns, tuple(self.use(scope, tok) for tok in r.results))

    def scoped(self, r: _RegionText, outer: ChainMap):
        """A region's params and eqns, and the scope at its end (where results are read)."""
        scope = outer.new_child()
        params = tuple(self.define(scope, tok, t) for tok, t in r.params)
        return params, tuple(self.eqn(e, scope) for e in r.eqns), scope

    def eqn(self, e: _EqnText, scope: ChainMap) -> Eqn:
        if self.known_ops is not None and str(e.op) not in self.known_ops:
            raise _error(f"unknown op '{e.op}'", e.op.line, e.op.column)
        inputs = tuple(self.use(scope, tok) for tok in e.args)
        regions = tuple(self.region(r, scope) for r in e.regions)  # bodies don't see the outputs
        outputs = tuple(self.define(scope, tok, t) for tok, t in e.outs)
        return Eqn(str(e.op), inputs, outputs, tuple(e.params), regions, e.loc)

    def ret(self, node: Any, t: Any, scope: ChainMap, results: list[Var]) -> Any:
        """Resolve the `return` tree against the `->` type; returns the out_tree."""
        if isinstance(node, Token):
            v = self.use(scope, node)
            if v.type != t:
                raise _error(f"result %{v.name} has type {v.type} but the signature says {t}",
                             node.line, node.column)
            results.append(v)
            return None
        if not isinstance(t, TupleType) or len(t.elems) != len(node):
            raise _error(f"return value is a {len(node)}-tuple but the signature says {t}",
                         node.line, node.column)
        return tuple(self.ret(n, et, scope, results) for n, et in zip(node, t.elems))

    @staticmethod
    def define(scope: ChainMap, tok: Token, t: Any) -> Var:
        v = Var(str(tok)[1:], t)
        scope[v.name] = v
        return v

    @staticmethod
    def use(scope: ChainMap, tok: Token) -> Var:
        v = scope.get(str(tok)[1:])
        if v is None:
            raise _error(f"unknown variable {tok}", tok.line, tok.column)
        return v

