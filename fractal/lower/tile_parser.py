"""Read the tile IR text form (see `fractal.lower.tile_printer`) back into its dataclasses.

`parse_tile_program(print_tile_program(t)) == t` for every printable program `t`; mistakes
raise `ParseError` with the line and column (brackets nested more than `MAX_NESTING` deep too),
and text that is not a `str` a `FractalTypeError`.  `parse_index("2*i + max(0, j - 1)")` and
`parse_region("h[l, 0:4, 0:8]")` build pieces from text (what `aff(str)` uses).
A range `lo:hi` must have a constant length `hi - lo` of 0 or more; with a stride `lo:hi:s`
it has `ceil((hi - lo) / s)` elements, like a Python slice (the printer always writes
`hi = lo + size*s`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, v_args
from lark.visitors import Transformer_NonRecursive

from fractal.lang.array_text import GRAMMAR_DIR
from fractal.lang.text_form import TextForm

from .tile_affine import Aff, FloorDiv, Max, Min, Mod
from .tile_ir import (Active, Binary, Buffer, Const, Convert, Copy, Dim, Elementwise, Gather, Gemm, If, Load,
                      Loop, Reduce, Region, Scatter, SegmentReduce, Stage, TileProgram, Unary, Where)

_GRAMMAR = Path(__file__).with_name("tile_ir.lark")


def parse_tile_program(text: str) -> TileProgram:
    """Parse one `tile @name { ... }`."""
    return _parse(text, "program")


def parse_index(text: str) -> Aff:
    return _parse(text, "index")


def parse_region(text: str) -> Region:
    return _parse(text, "region")


@lru_cache(maxsize=None)
def _parser() -> Lark:
    return Lark(_GRAMMAR.read_text(encoding="utf-8"), parser="lalr", start=["program", "index", "region"],
                maybe_placeholders=False, propagate_positions=True, import_paths=[GRAMMAR_DIR])


def _parse(text: str, start: str):
    out = _FORM.parse(text, f"parse_{'tile_program' if start == 'program' else start}", _Build(), start)
    return aff(out) if start == "index" else out


def aff(x) -> Aff:
    return x if isinstance(x, Aff) else Aff(((x, 1),))


_FORM = TextForm("<tile IR text>", _parser, {"CMP": "comparison"})
_error = _FORM.error


class _Build(Transformer_NonRecursive):  # (deep expressions do not recurse in Python)
    # program, buffers, statements
    def program(self, c):
        bufs = tuple(x for x in c[1:] if isinstance(x, Buffer))
        return TileProgram(str(c[0])[1:], bufs, tuple(x for x in c[1:] if not isinstance(x, Buffer)))

    def buffer(self, c):
        name, dt, shape, level, role, *rest = c
        layout = rest.pop(0) if rest and isinstance(rest[0], tuple) else ()
        dtype = _FORM.dtype(dt)
        data = _FORM.array(rest[0], shape, dtype, f"buffer {name}") if rest else None
        return Buffer(str(name), shape, dtype, layout, level, role, data)

    ints = staticmethod(lambda c: tuple(int(t) for t in c))
    layout = staticmethod(lambda c: c[0])
    level = role = kind = placement = associative = reduce_kw = segment_kw = staticmethod(lambda c: str(c[0]))
    block = tuple
    step = staticmethod(lambda c: -int(c[1]) if len(c) == 2 else int(c[0]))

    def loop(self, c):
        var, start, stop, *rest = c
        active = rest.pop(-2) if isinstance(rest[-2], Active) else None
        associative = "associative" in rest[:-1]
        rest = [x for x in rest if x != "associative"]
        step = rest[0] if len(rest) == 4 else 1
        kind, placement, body = rest[-3:]
        return Loop(str(var), aff(start), aff(stop), step, kind, placement, body, active, associative)

    def active(self, c):
        point, cmp, bound = c
        if str(cmp) != "<":
            raise _error(f"an active bound is written 'active {aff(point)} < ...', not {cmp}", cmp.line, cmp.column)
        return Active(aff(point), aff(bound))

    def stage(self, c):
        name, *rest = c
        dims = tuple(x for x in rest if isinstance(x, Dim))
        return Stage(str(name), dims, tuple(rest[len(dims) + 1:]), rest[len(dims)])

    dim = staticmethod(lambda c: Dim(str(c[0]), aff(c[1]), aff(c[2])))

    def cond(self, c):
        return If((aff(c[0]), str(c[1]), aff(c[2])), c[3], c[4] if len(c) > 4 else ())

    # tile ops
    copy = staticmethod(lambda c: Copy(c[1], c[0], c[2] if len(c) > 2 else ()))
    convert = staticmethod(lambda c: Convert(c[1], c[0]))
    gemm = staticmethod(lambda c: Gemm(c[1][0], c[2][0], c[0], False, c[1][1], c[2][1]))
    gemm_acc = staticmethod(lambda c: Gemm(c[1][0], c[2][0], c[0], True, c[1][1], c[2][1]))
    operand = staticmethod(lambda c: (c[0], len(c) > 1))
    reduce = staticmethod(lambda c: Reduce(c[2], c[0], c[3], c[1][len("reduce_"):]))
    segment_reduce = staticmethod(lambda c: SegmentReduce(c[2], c[3], c[0], c[1][len("segment_"):]))
    gather = staticmethod(lambda c: Gather(c[1], c[2], c[0], int(c[3])))
    scatter = staticmethod(lambda c: Scatter(c[1], c[2], c[0], int(c[3])))
    elementwise = staticmethod(lambda c: Elementwise(c[0], c[1]))

    # element expressions
    load = staticmethod(lambda c: Load(c[0]))
    const = staticmethod(lambda c: Const(float(c[0])))
    inf = staticmethod(lambda c: Const(float("inf")))
    ninf = staticmethod(lambda c: Const(float("-inf")))
    nan = staticmethod(lambda c: Const(float("nan")))

    def call(self, c):
        name, *args = c
        if str(name) == "where" or len(args) == 3:
            if str(name) != "where" or len(args) != 3:
                raise _error(f"'{name}' with {len(args)} argument(s): only where(cond, a, b) takes 3",
                             name.line, name.column)
            return Where(*args)
        if len(args) > 3:
            raise _error(f"'{name}' with {len(args)} arguments: ops take 1 or 2", name.line, name.column)
        return Unary(str(name), args[0]) if len(args) == 1 else Binary(str(name), *args)

    # regions
    def region(self, c):
        name, *axes = c
        return Region(str(name), tuple(a for a, _, _ in axes), tuple(n for _, n, _ in axes),
                      tuple(s for _, _, s in axes))

    at = staticmethod(lambda c: (aff(c[0]), None, 1))

    @v_args(meta=True)
    def span(self, meta, c):
        lo, hi = aff(c[0]), aff(c[1])
        stride = int(c[2]) if len(c) > 2 else 1
        length = hi - lo
        if not length.is_const or length.const < 0:
            raise _error(f"range {lo}:{hi} must have a constant length of 0 or more, not {length}",
                         meta.line, meta.column)
        if stride <= 0:
            raise _error(f"range {lo}:{hi}:{stride} must have a positive stride", meta.line, meta.column)
        return lo, -(-length.const // stride), stride

    # indices
    var = staticmethod(lambda c: str(c[0]))
    num = staticmethod(lambda c: Aff((), int(c[0])))
    scaled = staticmethod(lambda c: int(c[0]) * aff(c[1]))
    max = staticmethod(lambda c: Max(tuple(aff(x) for x in c)))
    min = staticmethod(lambda c: Min(tuple(aff(x) for x in c)))

    def floordiv(self, c):
        return FloorDiv(aff(c[0]), _divisor(c[1]))

    def modexp(self, c):
        return Mod(aff(c[0]), _divisor(c[1]))

    def sum(self, c):
        out, sign = Aff(), 1
        for x in c:
            if isinstance(x, Token) and x.type in ("PLUS", "MINUS"):
                sign = 1 if x.type == "PLUS" else -1
            else:
                out, sign = out + sign * aff(x), 1
        return out


def _divisor(tok: Token) -> int:
    if int(tok) <= 0:
        raise _error(f"the divisor must be positive, got {tok}", tok.line, tok.column)
    return int(tok)
