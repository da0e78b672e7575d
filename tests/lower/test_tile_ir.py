"""The tile IR: index expressions, the golden printed examples, exact print/parse round trips
of random well-formed programs and of const buffers' data, parse errors, and every `verify()`
rule (one negative case per message, plus an exactness check of the static bounds check by
brute force)."""

from __future__ import annotations

import dataclasses
import itertools
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fractal.lang.errors import FractalError, ParseError, VerifyError
from fractal.lang.tensor_ops import UNARY
from fractal.backends.pointwise import stage_points
from fractal.lang.types import DTYPES, float16, float32, float64, int32, int64
from fractal.lower import tile_ir
from fractal.lower.tile_affine import Aff, FloorDiv, Max, Min, Mod, aff, amax, amin, floordiv, mod
from fractal.lower.tile_ir import (ROLES, Binary, Buffer, Const, Convert, Copy, Dim, Elementwise, Gather,
                                   Gemm, If, Load, Loop, Reduce, Region, Scatter, Stage, TileProgram, Unary,
                                   Where)
from fractal.lower.tile_parser import parse_index, parse_region, parse_tile_program
from fractal.lower.tile_printer import header, print_tile_program

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def v(name: str) -> Aff:
    return Aff(((name, 1),))


# --- the golden examples (tile_ir's docstring) ---------------------------------------------

def docstring_programs() -> list[str]:
    """The text of each program printed in tile_ir's docstring (its `::` blocks)."""
    texts = []
    for block in tile_ir.__doc__.split("::\n\n")[1:]:
        lines = []
        for line in block.splitlines():
            if line and not line.startswith("    "):
                break
            lines.append(line[4:])
        texts.append("\n".join(lines).rstrip())
    return texts


def reg(buffer, *axes) -> Region:
    """A region from per-axis entries: an index, or `(start, size)` for a range."""
    return Region(buffer, [a[0] if isinstance(a, tuple) else a for a in axes],
                  [a[1] if isinstance(a, tuple) else None for a in axes])


def lstm_program() -> TileProgram:
    """The docstring's wavefront LSTM, built with the constructors."""
    s, l, t = v("s"), v("l"), v("t")
    active = (amax(0, s - 5), amin(2, s + 1))
    gate = lambda lo: Unary("sigmoid", Load(reg("g", l, (0, 4), (lo, 8))))  # noqa: E731
    c_new = reg("c", l, s - l + 1, (0, 4), (0, 8))
    return TileProgram("lstm_wavefront", [
        Buffer("x", (6, 4, 8), float32, role="input"),
        Buffer("w", (2, 8, 32), float32, role="input"),
        Buffer("u", (2, 8, 32), float32, (0, 2, 1), role="input"),
        Buffer("h", (3, 7, 4, 8), float32, role="output"),
        Buffer("c", (2, 7, 4, 8), float32, role="temp"),
        Buffer("g", (2, 4, 32), float32, level="shared", role="temp"),
    ], [
        Stage("init", [("l", 0, 2)], [
            Elementwise(reg("h", l + 1, 0, (0, 4), (0, 8)), Const(0)),
            Elementwise(reg("c", l, 0, (0, 4), (0, 8)), Const(0))]),
        Stage("load_x", [("t", 0, 6)], [Copy(reg("x", t, (0, 4), (0, 8)), reg("h", 0, t + 1, (0, 4), (0, 8)))]),
        Loop("s", 0, 7, body=[
            Stage("gates", [Dim("l", *active)], [
                Gemm(reg("h", l, s - l + 1, (0, 4), (0, 8)), reg("w", l, (0, 8), (0, 32)),
                     reg("g", l, (0, 4), (0, 32))),
                Gemm(reg("h", l + 1, s - l, (0, 4), (0, 8)), reg("u", l, (0, 8), (0, 32)), reg("g", l, (0, 4), (0, 32)),
                     accumulate=True)]),
            Stage("cell", [Dim("l", *active)], [
                Elementwise(c_new, Binary("add", Binary("mul", gate(8), Load(reg("c", l, s - l, (0, 4), (0, 8)))),
                                          Binary("mul", gate(0), Unary("tanh", Load(reg("g", l, (0, 4), (24, 8))))))),
                Elementwise(reg("h", l + 1, s - l + 1, (0, 4), (0, 8)),
                            Binary("mul", gate(16), Unary("tanh", Load(c_new))))]),
        ]),
    ])


def embed_program() -> TileProgram:
    """The docstring's embedding lookup: const ids and a const table (transposed layout)."""
    table = np.array([[0.0, 1.0], [0.5, -0.5], [0.125, np.inf], [-2.0, np.nan]], np.float32)
    return TileProgram("embed", [
        Buffer("ids", (5,), int64, role="const", data=np.array([3, 0, 2, 2, 1])),
        Buffer("table", (4, 2), float32, (1, 0), role="const", data=table),
        Buffer("y", (5, 2), float32, role="output"),
    ], [Stage("embed", [], [Gather(reg("table", (0, 4), (0, 2)), reg("ids", (0, 5)), reg("y", (0, 5), (0, 2)))])])


@pytest.mark.parametrize("k, build, stages", [(0, lstm_program, ["init", "load_x", "gates", "cell"]),
                                              (1, embed_program, ["embed"])], ids=["lstm", "embed"])
def test_golden_examples_print_parse_and_verify(k, build, stages):
    """Each docstring text is exactly what the printer gives for the constructed program,
    parses back to it, and passes verify (the LSTM's `s - l` indices need the exact bounds
    check; the lookup's const data prints as literals, nan and inf included)."""
    p, text = build(), docstring_programs()[k]
    assert str(p) == text
    assert parse_tile_program(text) == p
    assert p.verify() is p
    assert [st_.name for st_ in p.stages()] == stages


def test_region_shapes_and_buffer_strides():
    """Index axes drop out of a region's shape, ranges (even of size 1) stay; a layout
    lists axes outermost first, so (0, 2, 1) makes axis 1 contiguous."""
    r = parse_region("h[l + 1, s - l, 0:4, 2:3]")
    assert r.size == (None, None, 4, 1) and r.shape == (4, 1) and r.stride == (1, 1, 1, 1)
    assert parse_region("x[0:8:2, i]").shape == (4,)
    assert parse_region("x[0:7:2]") == parse_region("x[0:8:2]")  # a Python slice: ceil(7 / 2) elements
    assert Buffer("u", (2, 8, 32), float32, (0, 2, 1)).strides == (256, 1, 8)
    assert Buffer("u", (2, 8, 32), float32).strides == (256, 32, 1)
    p = lstm_program()
    g = p.body[2].body[0].body[1]
    assert g.reads == (g.a, g.b, g.c) and g.writes == (g.c,)
    assert str(g) == "g[l, 0:4, 0:32] += gemm(h[l + 1, s - l, 0:4, 0:8], u[l, 0:8, 0:32])"
    assert p.buffer("h").shape == (3, 7, 4, 8) and str(p.buffer("u")).endswith("layout(0,2,1)")
    with pytest.raises(KeyError):
        p.buffer("nope")


# --- index expressions ----------------------------------------------------------------------

@pytest.mark.parametrize("expr, text", [
    (2 * v("i") + v("j") - 1, "2*i + j - 1"),
    (amax(0, v("m") - 63), "max(0, m - 63)"),
    (floordiv(v("q"), 4), "floor(q / 4)"),
    (mod(v("q"), 4), "q mod 4"),
    (v("i") + 2 * mod(v("q"), 4), "i + 2*(q mod 4)"),
    (floordiv(v("i") + 3, 4), "floor((i + 3) / 4)"),
    (mod(mod(v("q"), 4), 2), "(q mod 4) mod 2"),
    (v("s") - v("l") + 1, "s - l + 1"),
    (-2 * v("i") - 3, "-2*i - 3"),
    (-mod(v("q"), 3), "-(q mod 3)"),
    (amin(5, v("s") + 1, v("t")), "min(5, s + 1, t)"),
    (aff(-7), "-7"),
])
def test_index_printing(expr, text):
    """Indices print in the documented spellings and parse back to the same canonical Aff."""
    assert str(expr) == text
    assert parse_index(text) == expr


def test_index_canonical_form_and_folding():
    """Equal expressions compare equal however they are built; the helpers fold constants,
    the constructors never do; bad nodes are rejected when built."""
    assert parse_index("j + i") == parse_index("i + j") and parse_index("2*(i + 1) - i") == parse_index("i + 2")
    assert parse_index("i - i") == aff(0) and aff("i").vars() == {"i"} and aff("i") == parse_index("i")
    assert amax(1, 3) == aff(3) and amin(v("i")) == v("i") and floordiv(aff(7), 2) == aff(3)
    assert floordiv(v("i"), 1) == v("i") and mod(v("i"), 1) == aff(0) and mod(aff(-7), 3) == aff(2)
    assert v("i") // 2 == floordiv(v("i"), 2) and v("i") % 2 == mod(v("i"), 2)
    assert str(aff(Max((aff(3), aff(5))))) == "max(3, 5)"  # unfolded: prints and parses as written
    assert parse_index("max(3, 5)") == aff(Max((3, 5)))
    for bad in (lambda: Max((aff(1),)), lambda: FloorDiv(v("i"), 0), lambda: Mod(v("i"), -2)):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(TypeError):
        Aff(((3.5, 1),))


def test_aff_takes_a_variable_name_but_never_parses_index_text():
    """Node constructors normalise their indices with `aff`, so `aff` must not run the parser:
    index text is `parse_index`'s."""
    assert aff("s_1") == v("s_1") and Loop("t", 0, "n").stop == v("n")
    with pytest.raises(TypeError, match=r"aff takes a variable name, not index text; parse text with "
                                        r"fractal.lower.parse_index\('2\*i \+ 1'\)"):
        aff("2*i + 1")
    with pytest.raises(TypeError, match="'max' is a keyword of index text, not a variable name"):
        aff("max")
    with pytest.raises(TypeError, match="aff takes a variable name, not index text"):
        Stage("s", [("i", 0, "n - 1")], [])


VARS = ("i", "j", "k")


@st.composite
def indices(draw, names=VARS, depth=0):
    """Random (quasi-)affine indices over `names`: sums, max/min, floor division, mod."""
    e = aff(draw(st.integers(-4, 4)))
    for n in names:
        e = e + draw(st.sampled_from([0, 0, 1, -1, 2, -3])) * v(n)
    if depth < 2:
        kind = draw(st.sampled_from(["", "", "floor", "mod", "max", "min"]))
        coeff = draw(st.sampled_from([1, 1, -1, 2]))
        sub = draw(indices(names, depth + 1))
        if kind in ("floor", "mod"):
            e = e + coeff * aff((FloorDiv if kind == "floor" else Mod)(sub, draw(st.integers(1, 4))))
        elif kind:
            args = (sub, draw(indices(names, depth + 1)))
            e = e + coeff * aff((Max if kind == "max" else Min)(args))
    return e


@SETTINGS
@given(indices(), st.fixed_dictionaries({n: st.integers(-6, 6) for n in VARS}),
       st.fixed_dictionaries({n: st.tuples(st.integers(-5, 5), st.integers(0, 4)) for n in VARS}))
def test_index_properties(e, env, boxes):
    """Text round trips exactly; substitution agrees with evaluation; interval `bounds`
    contain the value at every point of the box (checked at its corners and `env` clipped)."""
    assert parse_index(str(e)) == e and str(parse_index(str(e))) == str(e)
    assert e.substitute(env) == aff(e.evaluate(env))
    shifted = e.substitute({"i": v("j") + 1})
    assert shifted.evaluate(env) == e.evaluate({**env, "i": env["j"] + 1})
    ranges = {n: (lo, lo + w) for n, (lo, w) in boxes.items()}
    lo, hi = e.bounds(ranges)
    for corner in itertools.product(*(ranges[n] for n in VARS)):
        assert lo <= e.evaluate(dict(zip(VARS, corner))) <= hi
    clipped = {n: min(max(env[n], a), b) for n, (a, b) in ranges.items()}
    assert lo <= e.evaluate(clipped) <= hi


# --- random well-formed programs -------------------------------------------------------------

KEYWORDISH = ["input", "output", "step", "in", "for", "T", "axis", "axes", "tile", "layout", "where",
              "exp", "shared", "host", "stage", "if", "else", "buffer", "const", "temp", "sequential"]
FLOATS = [float16, float32, float64]
ARITH = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "mod", "floordiv"]
COMPARE = ["eq", "ne", "lt", "le", "gt", "ge"]


SMALL, COEFF, DIVISOR = st.integers(-3, 3), st.sampled_from([0, 1, 1, -1, 2]), st.integers(1, 4)
QUASI_KIND = st.sampled_from(["", "", "", "floor", "mod", "max", "min"])


class Gen:
    """Builds a random program whose regions are in bounds by construction: each start is
    shifted to be non-negative over the interval bounds of its loop variables, and each
    buffer is sized to the largest extent its regions reach (plus optional slack)."""

    def __init__(self, draw):
        self.draw, self.used, self.bufs = draw, set(), {}

    def name(self, prefix: str) -> str:
        pool = [n for n in KEYWORDISH if n not in self.used]
        name = self.draw(st.sampled_from(pool)) if pool and self.draw(st.integers(0, 4)) == 0 else \
            f"{prefix}{len(self.used)}"
        self.used.add(name)
        return name

    def index(self, ctx, nested=True) -> Aff:
        """A random index over (at most the two innermost of) the enclosing variables."""
        draw, names = self.draw, [n for n, _ in ctx][-2:]
        e = aff(draw(SMALL))
        for n in names:
            e = e + draw(COEFF) * v(n)
        kind = draw(QUASI_KIND) if names and nested else ""
        if kind in ("floor", "mod"):
            e = e + draw(COEFF) * aff((FloorDiv if kind == "floor" else Mod)(self.index(ctx, False), draw(DIVISOR)))
        elif kind:
            e = e + draw(COEFF) * aff((Max if kind == "max" else Min)((self.index(ctx, False), self.index(ctx, False))))
        return e

    def program(self) -> TileProgram:
        body = self.block([], 0)
        buffers = []
        for name, (dt, need, written) in self.bufs.items():
            role = self.draw(st.sampled_from(["output", "temp"] if written else list(ROLES)))
            shape = tuple(n + self.draw(st.integers(0, 1)) for n in need)
            data = const_data(self.draw, shape, dt) if role == "const" else None
            buffers.append(Buffer(name, shape, dt, tuple(self.draw(st.permutations(range(len(shape))))),
                                  self.draw(st.sampled_from(tile_ir.LEVELS)), role, data))
        return TileProgram(self.draw(st.sampled_from(["p", "model.layer_0", "0x"])), buffers, body)

    def block(self, ctx, depth):
        kinds = ["stage", "loop", "if_"] if depth < 2 else ["stage"]
        return [getattr(self, self.draw(st.sampled_from(kinds)))(ctx, depth)
                for _ in range(self.draw(st.integers(1, 2)))]

    def bounds(self, ctx, steps=(1, 1, 2, -1, -2)):
        """(start, stop, step) over the enclosing variables, and the variable's interval."""
        start = self.index(ctx, False)
        stop = start + self.draw(st.integers(0, 4))
        if self.draw(st.booleans()):
            stop = aff(Min((stop, aff(self.draw(st.integers(0, 5))))))
        step = self.draw(st.sampled_from(steps))
        if step < 0:
            start, stop = stop - 1, start - 1
        ranges = dict(ctx)
        (s0, s1), (t0, t1) = start.bounds(ranges), stop.bounds(ranges)
        lo, hi = (s0, t1 - 1) if step > 0 else (t0 + 1, s1)
        return start, stop, step, (lo, max(lo, hi))

    def loop(self, ctx, depth):
        var = self.name("i")
        start, stop, step, rng = self.bounds(ctx)
        kind, placement = self.draw(st.sampled_from(tile_ir.LOOP_KINDS)), self.draw(st.sampled_from(tile_ir.PLACEMENTS))
        active = None  # a ragged batch's live prefix: any parallel name, bounded over the loop variable
        if kind == "sequential" and self.draw(st.booleans()):
            point = sum((self.draw(st.integers(1, 3)) * v(self.name("m")) for _ in range(self.draw(st.integers(1, 2)))),
                        aff(0))
            active = (point, self.index(ctx + [(var, rng)], False))
        associative = kind == "sequential" and self.draw(st.booleans())   # a reduce's loop
        return Loop(var, start, stop, step, kind, placement, self.block(ctx + [(var, rng)], depth + 1), active,
                    associative)

    def stage(self, ctx, depth):
        dims, inner = [], list(ctx)
        for _ in range(self.draw(st.integers(0, 2))):  # nested like loops: bounds may read earlier dims
            start, stop, _, rng = self.bounds(inner if self.draw(st.booleans()) else ctx, steps=(1,))
            var = self.name("d")
            dims.append((var, start, stop))
            inner.append((var, rng))
        ops = [self.op(inner) for _ in range(self.draw(st.integers(1, 3)))]
        return Stage(self.name("k"), dims, ops, self.draw(st.sampled_from(tile_ir.PLACEMENTS)))

    def if_(self, ctx, depth):
        cond = (self.index(ctx), self.draw(st.sampled_from(tile_ir.COMPARISONS)), self.index(ctx))
        orelse = self.block(ctx, depth + 1) if self.draw(st.booleans()) else []
        return If(cond, self.block(ctx, depth + 1), orelse)

    def region(self, shape, dt, ctx, written=False) -> Region:
        rank = len(shape) + self.draw(st.integers(0, 1))
        kept = sorted(self.draw(st.permutations(range(rank)))[:len(shape)])
        sizes = iter(shape)
        starts, size, stride, need = [], [], [], []
        for axis in range(rank):
            e = self.index(ctx)
            lo, hi = e.bounds(dict(ctx))
            n = next(sizes) if axis in kept else None
            s = self.draw(st.sampled_from([1, 1, 2])) if n is not None else 1
            starts.append(e - lo)
            size.append(n)
            stride.append(s)
            need.append(hi - lo + ((n or 1) - 1) * s + 1)
        same = [b for b, (d, nd, _) in self.bufs.items() if d == dt and len(nd) == rank]
        name = self.draw(st.sampled_from(same)) if same and self.draw(st.booleans()) else self.name("b")
        d, old, w = self.bufs.get(name, (dt, [0] * rank, False))
        self.bufs[name] = (dt, [max(a, b) for a, b in zip(old, need)], w or written)
        return Region(name, starts, size, stride)

    def shape(self, lo=0, hi=3):
        return tuple(self.draw(st.lists(st.integers(1, 3), min_size=lo, max_size=hi)))

    def op(self, ctx):
        draw, kind = self.draw, self.draw(st.sampled_from(
            ["copy", "gemm", "elementwise", "elementwise", "reduce", "gather", "scatter", "convert"]))
        if kind in ("copy", "convert"):
            shape, a = self.shape(), draw(st.sampled_from(DTYPES))
            b = a if kind == "copy" else draw(st.sampled_from([d for d in DTYPES if d != a]))
            if kind == "copy" and draw(st.booleans()):  # a transposing / reshaping copy
                perm = tuple(draw(st.permutations(range(len(shape)))))
                out = tuple(shape[p] for p in perm)[::-1] if draw(st.booleans()) else tuple(shape[p] for p in perm)
                return Copy(self.region(shape, a, ctx), self.region(out, b, ctx, True), perm)
            return (Copy if kind == "copy" else Convert)(self.region(shape, a, ctx), self.region(shape, b, ctx, True))
        if kind == "gemm":
            (m, k, n), ta, tb = self.shape(3, 3), draw(st.booleans()), draw(st.booleans())
            dt = draw(st.sampled_from(FLOATS))
            c_dt = draw(st.sampled_from([d for d in FLOATS if np.can_cast(dt, d)]))
            return Gemm(self.region((k, m) if ta else (m, k), dt, ctx), self.region((n, k) if tb else (k, n), dt, ctx),
                        self.region((m, n), c_dt, ctx, True), draw(st.booleans()), ta, tb)
        if kind == "elementwise":
            shape, dt = self.shape(), draw(st.sampled_from(FLOATS))
            return Elementwise(self.region(shape, dt, ctx, True), self.expr(shape, dt, ctx, 2))
        if kind == "reduce":
            src = self.shape(1, 3)
            axes = tuple(sorted(set(draw(st.lists(st.integers(0, len(src) - 1), min_size=1, max_size=2)))))
            keep = draw(st.booleans())
            dst = tuple(1 if a in axes else d for a, d in enumerate(src) if keep or a not in axes)
            dt = draw(st.sampled_from(DTYPES))
            return Reduce(self.region(src, dt, ctx), self.region(dst, dt, ctx, True), axes,
                          draw(st.sampled_from(tile_ir.COMBINERS)))
        table, n, dt = self.shape(1, 3), draw(st.integers(1, 3)), draw(st.sampled_from(DTYPES))
        axis = draw(st.integers(0, len(table) - 1))
        rows = table[:axis] + (n,) + table[axis + 1:]
        index = self.region((n,), draw(st.sampled_from([int32, int64])), ctx)
        if kind == "gather":
            return Gather(self.region(table, dt, ctx), index, self.region(rows, dt, ctx, True), axis)
        return Scatter(self.region(rows, dt, ctx), index, self.region(table, dt, ctx, True), axis)

    def expr(self, shape, dt, ctx, depth):
        draw = self.draw
        kind = draw(st.sampled_from(["load", "const"] + (["unary", "binary", "where"] if depth else [])))
        if kind == "load":
            tail = shape[len(shape) - draw(st.integers(0, len(shape))):]
            return Load(self.region(tuple(d if draw(st.booleans()) else 1 for d in tail), dt, ctx))
        if kind == "const":
            return Const(draw(st.floats(allow_nan=False, width=draw(st.sampled_from([16, 32, 64])))))
        if kind == "unary":
            op = draw(st.sampled_from(sorted(set(UNARY) - {"logical_not"})))
            return Unary(op, self.expr(shape, dt, ctx, depth - 1))
        if kind == "binary":
            return Binary(draw(st.sampled_from(ARITH)), self.expr(shape, dt, ctx, depth - 1),
                          self.expr(shape, dt, ctx, depth - 1))
        cdt = draw(st.sampled_from(FLOATS))
        cond = Binary(draw(st.sampled_from(COMPARE)), self.expr(shape, cdt, ctx, depth - 1),
                      self.expr(shape, cdt, ctx, depth - 1))
        if draw(st.booleans()):
            cond = Unary("logical_not", cond)
        return Where(cond, self.expr(shape, dt, ctx, depth - 1), self.expr(shape, dt, ctx, depth - 1))


def const_data(draw, shape, dt) -> np.ndarray:
    """Random contents of a const buffer: bools, small ints, or floats of any magnitude with
    inf, -inf, nan and -0.0 among them (small ones print as literals, the rest as base64)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if dt.kind == "b":
        return rng.random(shape) < 0.5
    if dt.kind == "i":
        return rng.integers(-5, 5, shape).astype(dt)
    with np.errstate(over="ignore"):
        values = (rng.standard_normal(shape) * 10.0 ** rng.integers(-9, 9, shape)).astype(dt)
    specials = np.array([np.inf, -np.inf, np.nan, -0.0], dt)
    return np.where(rng.random(shape) < 0.2, rng.choice(specials, shape), values).astype(dt)


@st.composite
def programs(draw):
    return Gen(draw).program()


@SETTINGS
@given(programs())
def test_random_programs_round_trip_and_verify(p):
    """Random well-formed programs (every op kind, nested loops with steps and min bounds,
    stages with dims bounded by earlier dims, ifs, quasi-affine indices, keyword-like names)
    print and parse back exactly, print stably, and pass verify (the structural rules: their
    stages' points may well meet, which the contract tests take up)."""
    text = print_tile_program(p)
    q = parse_tile_program(text)
    assert q == p
    assert str(q) == text
    p.verify(contract=False)



def brute_force_out_of_bounds(p: TileProgram) -> bool:
    """Runs every loop, if and stage point, and checks every region's index range."""
    shapes = {b.name: b.shape for b in p.buffers}

    def out(r, env):
        return any(not (0 <= s.evaluate(env) and s.evaluate(env) + ((n or 1) - 1) * k < shapes[r.buffer][a])
                   for a, (s, n, k) in enumerate(zip(r.start, r.size, r.stride)))

    def run(stmts, env):
        for s in stmts:
            if isinstance(s, Loop):
                for x in range(s.start.evaluate(env), s.stop.evaluate(env), s.step):
                    if run(s.body, {**env, s.var: x}):
                        return True
            elif isinstance(s, If):
                a, op, b = s.cond
                taken = eval(f"{a.evaluate(env)} {op} {b.evaluate(env)}")
                if run(s.then if taken else s.orelse, env):
                    return True
            elif any(any(out(r, inner) for op in s.body for r in op.reads + op.writes)
                     for inner in stage_points(s.dims, env)):
                return True
        return False

    return run(p.body, {})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.data())
def test_static_bounds_check_is_exact(p, data):
    """With buffers shrunk at random, verify() reports an out-of-bounds region exactly when
    running the loops finds one (interval arithmetic alone would over-report)."""
    def shrink(b: Buffer) -> Buffer:
        shape = tuple(max(0, n - data.draw(st.integers(0, 2))) for n in b.shape)
        cut = b.data.value[tuple(slice(0, n) for n in shape)] if b.data is not None else None
        return dataclasses.replace(b, shape=shape, data=cut)
    shrunk = [shrink(b) for b in p.buffers]
    p = dataclasses.replace(p, buffers=tuple(shrunk))
    expected = brute_force_out_of_bounds(p)
    if expected:
        with pytest.raises(VerifyError, match="out of bounds"):
            p.verify(contract=False)
    else:
        p.verify(contract=False)


# --- parse and print errors -------------------------------------------------------------------

def program_text(*ops: str, loop: str = "for i in 0:4 sequential host") -> str:
    body = "\n".join("      " + op for op in ops)
    return f"""tile @t {{
  buffer x: f32[4,8] global input
  buffer y: f32[4,8] global output
  buffer z: f64[4,8] global temp
  buffer h16: f16[4,8] global temp
  buffer w: f32[8,16] global input
  buffer o: f32[4,16] global temp
  buffer idx: i64[4] global const = [3, 1, 0, 2]
  buffer fidx: f32[4] global temp
  buffer m: i32[2,4] global temp
  buffer bo: bool[4,8] global temp
  {loop} {{
    stage s(j in 0:1) device {{
{body}
    }}
  }}
}}"""


@pytest.mark.parametrize("text, message", [
    (program_text().replace("sequential host", "sideways host"), r"line 12, column 16: unexpected 'sideways'"
                                                                 r".*'parallel', 'sequential'"),
    (program_text("y[i:j, 0:8] = copy(x[i, 0:8])"), r"line 14, column 9: range i:j must have a constant length of 0 or more"),
    (program_text("y[i, 4:0] = copy(x[i, 0:8])"), r"constant length of 0 or more, not -4"),
    (program_text().replace("f64[4,8]", "f8[4,8]"), r"line 4, column 13: unknown dtype 'f8'"),
    (program_text("y[i, 0:8] = add(x[i, 0:8])  # fine", "y[i, 0:8] = tanh(x[i, 0:8], x[i, 0:8], x[i, 0:8])"),
     r"line 15.*'tanh' with 3 argument\(s\): only where"),
    (program_text("y[i, 0:8] = where(bo[i, 0:8], x[i, 0:8])"), r"'where' with 2 argument"),
    (program_text("y[i, 0:8] = add(1.0, 2.0, 3.0, 4.0)"), r"ops take 1 or 2"),
    (program_text("y[floor(i / 0), 0:8] = 0.0"), r"the divisor must be positive, got 0"),
    (program_text("y[i mod 0, 0:8] = 0.0"), r"the divisor must be positive, got 0"),
    (program_text("y[i, 0:8] = 1"), r"unexpected '1'; expected one of: .*float"),
    (program_text("y[i, 0:8] = copy(x[i, 0:8]"), r"line 15, column 5: unexpected '}'"),
    (program_text().rsplit("}", 1)[0], r"unexpected end of input"),
    (program_text("y[i, 0:8] = x[i, 0:8] $"), r"unexpected text '\$'"),
    (program_text().replace("sequential host", "sequential host active j <= 2"),
     r"line 12, column 41: an active bound is written 'active j < \.\.\.', not <="),
    (program_text().replace("= [3, 1, 0, 2]", "= [3, 1, 0]"),
     r"line 8, column 37: buffer idx: literal has 3 element\(s\), expected 4"),
    (program_text().replace("= [3, 1, 0, 2]", '= b64"AAAA"'), r"buffer idx: base64 data has 3 bytes, expected 32"),
    (program_text().replace("= [3, 1, 0, 2]", "= [3, 1 0, 2]"), r"line 8, column 43: unexpected '0'"),
])
def test_parse_errors(text, message):
    """Malformed text raises ParseError naming the line and column and what went wrong."""
    with pytest.raises(ParseError, match=message) as e:
        parse_tile_program(text)
    assert isinstance(e.value, FractalError) and e.value.loc.line > 0


def test_keywords_are_names_where_a_name_stands_and_reserved_words_are_not():
    """Words like `input` or `step` name buffers and variables; reserved words are rejected
    by the printer (and verify) because the grammar would read them as keywords."""
    text = program_text("output[in, 0:8] = copy(x[in, 0:8])", loop="for in in 0:4 step 1 sequential host")
    text = text.replace("buffer y:", "buffer output:")
    p = parse_tile_program(text)
    assert parse_tile_program(str(p)) == p and p.verify()
    for bad in ("max", "inf", "copy", "reduce_add", "2x", "a-b"):
        with pytest.raises(ValueError, match="cannot print"):
            print_tile_program(dataclasses.replace(p, buffers=(Buffer(bad, (1,), float32),)))
    with pytest.raises(ValueError, match="where"):
        str(Elementwise(parse_region("y[0, 0:8]"), Unary("where", Const(1.0))))
    with pytest.raises(ValueError, match="index axis"):
        str(Region("y", (0, 0), (None, 8), (2, 1)))


def const_program(array: np.ndarray) -> TileProgram:
    return TileProgram("c", [Buffer("c", array.shape, array.dtype, role="const", data=array)], [])


def nan_with_payload() -> np.ndarray:
    a = np.array([np.nan, 1.0], np.float16)
    a.view(np.uint16)[0] = 0x7E01  # a NaN that the literal `nan` would not reproduce
    return a


@pytest.mark.parametrize("array, text", [
    (np.array([0, 2, 1, 3]), "buffer c: i64[4] global const = [0, 2, 1, 3]"),
    (np.array([[-7], [2**31 - 1]], np.int32), "buffer c: i32[2,1] global const = [[-7], [2147483647]]"),
    (np.array([[True, False, True]]), "buffer c: bool[1,3] global const = [[true, false, true]]"),
    (np.array([0.5, -0.0, 1e-300, np.inf, -np.inf, np.nan]),
     "buffer c: f64[6] global const = [0.5, -0.0, 1e-300, inf, -inf, nan]"),
    (np.array([0.1], np.float32), "buffer c: f32[1] global const = [0.10000000149011612]"),  # the f32 value
    (np.array(2.5, np.float16), "buffer c: f16[] global const = 2.5"),
    (np.zeros((2, 0), np.int64), "buffer c: i64[2,0] global const = []"),
    (np.arange(65, dtype=np.int32), 'buffer c: i32[65] global const = b64"AAAAAAEAAAACAAAA'),
    (np.where(np.arange(80) % 7 == 0, np.nan, np.arange(80) * -1e30).astype(np.float32).reshape(8, 10),
     'buffer c: f32[8,10] global const = b64"AADAf'),
    (np.arange(65) % 3 == 0, 'buffer c: bool[65] global const = b64"AQAAAQAAAQ'),
    (nan_with_payload(), 'buffer c: f16[2] global const = b64"AX4APA=="'),
])
def test_const_data_round_trips_as_literals_and_base64(array, text):
    """A const buffer's data prints in the program IR's constant format: literals up to 64
    elements (ints, bools, floats as the repr of the stored value, inf, -inf, nan, a bare
    scalar when 0-d, [] when empty), else little-endian base64 (also for a NaN with a
    payload); it reads back to the same bits and an equal program."""
    p = const_program(array)
    printed = str(p)
    assert printed.splitlines()[1].startswith("  " + text)
    q = parse_tile_program(printed)
    assert q == p and str(q) == printed and q.verify() is q
    got = q.buffers[0].data.value
    assert got.dtype == array.dtype and got.shape == array.shape and got.tobytes() == array.tobytes()
    assert not got.flags.writeable


def test_data_that_is_not_of_the_buffers_type_does_not_print():
    """The text gives the data the buffer's dtype and shape, so other data cannot print
    (verify reports it; messages elide data as ` = ...`)."""
    p = const_program(np.zeros(3, np.int64))
    wrong = dataclasses.replace(p, buffers=(dataclasses.replace(p.buffers[0], dtype=int32),))
    with pytest.raises(ValueError, match=r"cannot print buffer 'c': its data is int64\[3\], not int32\[3\]"):
        str(wrong)
    assert header(wrong.buffers[0]) == "buffer c: i32[3] global const = ..."


def test_special_floats_and_comments():
    """Constants print as Python's repr (inf, -inf, nan, exponents); `#` starts a comment."""
    for value in (float("inf"), float("-inf"), 1e-07, -2.5e+300, -0.0):
        p = parse_tile_program(program_text(f"y[i, 0:8] = {value!r}"))
        assert p.body[0].body[0].body[0].expr == Const(value) and str(Const(value).value) == repr(value)
    p = parse_tile_program(program_text("y[i, 0:8] = nan  # not a number"))
    assert np.isnan(p.body[0].body[0].body[0].expr.value) and "= nan" in str(p)


# --- verify: one case per message ----------------------------------------------------------------

def op_case(op: str, message: str):
    return pytest.param(lambda: parse_tile_program(program_text(op)), message, id=message[:40])


def replace_first_op(new_op):
    p = parse_tile_program(program_text("y[i, 0:8] = copy(x[i, 0:8])"))
    stage = dataclasses.replace(p.body[0].body[0], body=(new_op,))
    return dataclasses.replace(p, body=(dataclasses.replace(p.body[0], body=(stage,)),))


def replace_buffer(which, **changes):
    p = parse_tile_program(program_text("y[i, 0:8] = copy(x[i, 0:8])"))
    return dataclasses.replace(p, buffers=tuple(dataclasses.replace(b, **changes) if b.name == which else b
                                                for b in p.buffers))


def with_body(*stmts):
    return dataclasses.replace(parse_tile_program(program_text("y[i, 0:8] = 0.0")), body=stmts)


LOOP = parse_tile_program(program_text("y[i, 0:8] = 0.0")).body[0]
STAGE = LOOP.body[0]
COPY = Copy(parse_region("x[i, 0:8]"), parse_region("y[i, 0:8]"))

VERIFY_CASES = [
    # names and buffers
    pytest.param(lambda: dataclasses.replace(with_body(), name="a b"), "program name 'a b'", id="program name"),
    pytest.param(lambda: replace_buffer("x", name="max"), "buffer name 'max' is a reserved word", id="reserved"),
    pytest.param(lambda: replace_buffer("x", name="x.y"), "buffer name 'x.y' is not an identifier", id="ident"),
    pytest.param(lambda: replace_buffer("z", name="x"), "buffer 'x' is declared twice", id="twice"),
    pytest.param(lambda: replace_buffer("z", dtype=np.int8), "dtype int8 is not supported", id="dtype"),
    pytest.param(lambda: replace_buffer("z", shape=(-1, 8)), "has a negative dimension", id="negative dim"),
    pytest.param(lambda: parse_tile_program(program_text("y[i, 0:8] = 0.0").replace("temp", "temp layout(0,0)", 1)),
                 "layout (0, 0) is not a permutation of its 2 axes", id="layout"),
    pytest.param(lambda: replace_buffer("z", level="l2"), "level 'l2' is not one of global, shared", id="level"),
    pytest.param(lambda: replace_buffer("z", role="scratch"), "role 'scratch' is not one of input", id="role"),
    pytest.param(lambda: replace_buffer("idx", data=None), "buffer idx: a const buffer must declare its data",
                 id="const without data"),
    pytest.param(lambda: replace_buffer("idx", data=np.zeros(3, np.int64)),
                 "buffer idx: its data is i64[3], not i64[4] like the buffer", id="data shape"),
    pytest.param(lambda: replace_buffer("idx", data=np.zeros(4, np.int32)),
                 "buffer idx: its data is i32[4], not i64[4] like the buffer", id="data dtype"),
    pytest.param(lambda: replace_buffer("z", data=np.zeros((4, 8))),
                 "buffer z: a temp buffer has no data (only const buffers do)\n  in: buffer z: f64[4,8] global temp = ...",
                 id="data of a temp"),
    # statements and scoping
    pytest.param(lambda: with_body(COPY), "a copy must be inside a stage", id="op outside stage"),
    pytest.param(lambda: with_body("for"), "not a statement: str", id="not a statement"),
    pytest.param(lambda: with_body(dataclasses.replace(LOOP, body=(dataclasses.replace(LOOP, body=()),))),
                 "loop variable i shadows an enclosing variable", id="shadow loop"),
    pytest.param(lambda: with_body(dataclasses.replace(LOOP, var="floor")), "loop variable 'floor' is a reserved word",
                 id="reserved var"),
    pytest.param(lambda: with_body(dataclasses.replace(LOOP, stop=v("n"))), "index n uses n, which is not in scope",
                 id="loop bound scope"),
    op_case("y[k, 0:8] = 0.0", "index k uses k, which is not in scope"),
    pytest.param(lambda: with_body(dataclasses.replace(LOOP, step=0)), "loop step must not be 0", id="step"),
    pytest.param(lambda: with_body(dataclasses.replace(LOOP, kind="vector")), "loop kind 'vector' is not one of",
                 id="kind"),
    pytest.param(lambda: with_body(dataclasses.replace(LOOP, placement="gpu")), "placement 'gpu' is not one of host",
                 id="placement"),
    pytest.param(lambda: with_body(dataclasses.replace(LOOP, body=(STAGE, STAGE))), "stage name 's' is used twice",
                 id="stage twice"),
    pytest.param(lambda: with_body(dataclasses.replace(LOOP, body=(dataclasses.replace(STAGE, dims=[("i", 0, 2)]),))),
                 "stage variable i shadows an enclosing variable", id="stage shadow"),
    pytest.param(lambda: with_body(dataclasses.replace(
        LOOP, body=(dataclasses.replace(STAGE, dims=[("j", 0, v("j2")), ("j2", 0, 2)]),))),
        "the bounds of stage variable j read j2, a later dim of the stage", id="stage dim reads a later dim"),
    pytest.param(lambda: with_body(dataclasses.replace(
        LOOP, body=(dataclasses.replace(STAGE, dims=[("j", 0, 2), ("j2", 0, v("j2") + 1)]),))),
        "the bounds of stage variable j2 read j2 itself", id="stage dim reads itself"),
    pytest.param(lambda: with_body(dataclasses.replace(
        LOOP, body=(dataclasses.replace(STAGE, dims=[("j", 0, v("k"))]),))),
        "index k uses k, which is not in scope", id="stage bound scope"),
    pytest.param(lambda: with_body(dataclasses.replace(STAGE, body=(LOOP,))), "a stage holds only tile ops, not a Loop",
                 id="stage body"),
    pytest.param(lambda: with_body(If((0, "=<", 1), ())), "comparison '=<' is not one of", id="comparison"),
    pytest.param(lambda: with_body(dataclasses.replace(LOOP, kind="parallel", active=(v("j"), 2))),
                 "only a sequential loop has active points", id="active on a parallel loop"),
    pytest.param(lambda: with_body(dataclasses.replace(LOOP, kind="parallel", associative=True)),
                 "only a sequential loop is associative", id="associative parallel loop"),
    pytest.param(lambda: with_body(dataclasses.replace(LOOP, active=(v("j") - v("k") + 1, 2))),
                 "the active point j - k + 1 must be a sum of parallel variables with positive coefficients",
                 id="active point"),
    pytest.param(lambda: with_body(dataclasses.replace(LOOP, active=(2 * v("j") + v("i"), 2))),
                 "the active point must not use the loop's own variable i", id="active own var"),
    pytest.param(lambda: with_body(dataclasses.replace(LOOP, active=(v("min"), 2))),
                 "active variable 'min' is a reserved word", id="active reserved"),
    pytest.param(lambda: with_body(dataclasses.replace(LOOP, active=(v("j"), v("j")))),
                 "index j uses j, which is not in scope", id="active bound scope"),
    # regions
    op_case("q[i, 0:8] = 0.0", "unknown buffer 'q'"),
    op_case("y[i, 0, 0:8] = 0.0", "has 3 indices for the 2-d buffer y"),
    pytest.param(lambda: replace_first_op(Copy(COPY.src, Region("y", (0, 0), (None, 8), (1,)))),
                 "region of y has 2 starts, 2 sizes and 1 strides", id="strides"),
    pytest.param(lambda: replace_first_op(Copy(COPY.src, Region("y", (0, 0), (None, -1)))),
                 "axis 1 has size -1, sizes must not be negative", id="size"),
    pytest.param(lambda: replace_first_op(Copy(COPY.src, Region("y", (0, 0), (None, 8), (1, 0)))),
                 "axis 1 has stride 0, strides must be positive", id="stride"),
    pytest.param(lambda: replace_first_op(Copy(COPY.src, Region("y", (0, 0), (None, 8), (2, 1)))),
                 "index axis 0 has stride 2 (only range axes are strided)", id="index stride"),
    pytest.param(lambda: replace_first_op(Copy("x", "y")), "expected a Region, got 'x'", id="not a region"),
    op_case("y[i, j + 1:j + 9] = 0.0", "region y[i, j + 1:j + 9] is out of bounds: at i = 3, j = 0, axis 1 reaches 1..8"),
    op_case("y[2*i - 3, 0:8] = 0.0", "at i = 0, j = 0, axis 0 reaches index -3, outside 0..3 of y"),
    # ops
    op_case("y[i, 0:8] = copy(x[0:2, 0:8])", "copy from shape (2, 8) to shape (8,): sizes 16 and 8 differ"),
    op_case("y[i, 0:8] = copy(x[i, 0:8], perm=[1])", "copy perm [1] is not a permutation of the source axes of (8,)"),
    op_case("y[i, 0:8] = convert(m[0:2, i])", "source shape (2,) differs from destination shape (8,)"),
    op_case("z[i, 0:8] = copy(x[i, 0:8])", "source dtype f32 differs from destination dtype f64"),
    op_case("m[0:2, i] = reduce_add(x[0:2, 0:8], axes=[1])", "source dtype f32 differs from destination dtype i32"),
    op_case("z[0:4, 0:8] = gather(x[0:4, 0:8], idx[0:4], axis=0)", "source dtype f32 differs from destination"),
    op_case("y[0:4, 0:8] = scatter(z[0:4, 0:8], idx[0:4], axis=0)", "source dtype f64 differs from destination"),
    op_case("x[i, 0:8] = 0.0", "writes x, a read-only input buffer"),
    op_case("y[i, 0:8] = convert(x[i, 0:8])", "convert between equal dtypes (f32): use copy"),
    op_case("o[i, 0:16] = gemm(x[i, 0:8], w[0:8, 0:16])", "gemm operand a must be 2-d, got shape (8,)"),
    op_case("o[0:4, 0:16] = gemm(x[0:4, 0:8], w[0:8, 0:16].T)", r"gemm inner dimensions differ: [4,8] @ [16,8]"),
    op_case("o[0:4, 0:8] += gemm(x[0:4, 0:8], w[0:8, 0:16])", r"gemm result [4,16] does not match c of shape (4, 8)"),
    op_case("o[0:4, 0:16] = gemm(z[0:4, 0:8], w[0:8, 0:16])", "gemm operands have different dtypes f64 and f32"),
    op_case("h16[0:4, 0:8] = gemm(x[0:4, 0:4], x[0:4, 0:8])", "gemm accumulates f32 operands into f16"),
    op_case("y[0:4, 0:8] = exp(x[0:4, 0:3])", "operand x[0:4, 0:3] of shape (4, 3) does not broadcast"),
    op_case("y[i, 0:8] = exp(z[i, 0:8])", "the expression has dtype f64 but y is f32 (insert a convert)"),
    op_case("y[i, 0:8] = erf(x[i, 0:8])", "unknown unary op 'erf'"),
    op_case("y[i, 0:8] = atan2(x[i, 0:8], 1.0)", "unknown binary op 'atan2'"),
    op_case("y[i, 0:8] = where(x[i, 0:8], x[i, 0:8], 0.0)", "where condition has dtype f32, not bool"),
    op_case("y[i, 0:8] = add(x[i, 0:8], z[i, 0:8])", "operands of add have different dtypes f32 and f64"),
    pytest.param(lambda: replace_first_op(Elementwise(COPY.dst, 1.0)), "not an element expression: 1.0", id="expr"),
    pytest.param(lambda: replace_first_op(Reduce(parse_region("x[0:4, 0:8]"), parse_region("y[0, 0:4]"), (1,), "prod")),
                 "reduce combiner 'prod' is not one of add, max, min", id="combiner"),
    op_case("y[0, 0:4] = reduce_max(x[0:4, 0:8], axes=[2])", "reduce axes [2] must be increasing axes of"),
    op_case("y[0, 0:4] = reduce_max(x[0:4, 0:8], axes=[])", "reduce axes [] must be increasing"),
    op_case("y[0, 0:8] = reduce_min(x[0:4, 0:8], axes=[1])", "gives (4,) (or (4, 1)), not the destination shape (8,)"),
    op_case("y[0:4, 0:8] = gather(x[0:4, 0:8], m[0:2, 0:4], axis=0)", "gather index m[0:2, 0:4] must be 1-d"),
    op_case("y[0:4, 0:8] = gather(x[0:4, 0:8], fidx[0:4], axis=0)", "gather index fidx has dtype f32, not i32 or i64"),
    op_case("y[0:4, 0:8] = scatter(x[0:4, 0:8], idx[0:4], axis=2)", "scatter axis 2 is not an axis of the shape (4, 8)"),
    op_case("y[0:2, 0:8] = gather(x[0:4, 0:8], idx[0:4], axis=0)", "gather along axis 0 of (4, 8) with 4 indices "
                                                                   "needs shape (4, 8), not (2, 8)"),
]


@pytest.mark.parametrize("build, message", VERIFY_CASES)
def test_verify_rejects(build, message):
    """Each broken program fails verify with its own message, followed by the statement
    (errors about the program itself have none)."""
    with pytest.raises(VerifyError) as e:
        build().verify()
    assert message in str(e.value)
    assert ("\n  in: " in str(e.value)) == (not message.startswith("program name"))


def test_verify_bounds_use_steps_conditions_and_quasi_affine_indices():
    """The exact bounds check follows loop steps, `if` conditions and floor/mod indices,
    where interval arithmetic on the loop ranges would report errors."""
    ok = [
        program_text("y[i, 0:8] = 0.0", loop="for i in 0:8 step 2 sequential host").replace("f32[4,8] global output",
                                                                                           "f32[7,8] global output"),
        program_text("y[i - j, 0:8] = 0.0", loop="for i in 3:-1 step -1 sequential host").replace(
            "stage s(j in 0:2)", "stage s(j in 0:min(2, i + 1))"),
        program_text("y[2*floor(i / 2) - i + 1, 0:8] = 0.0", loop="for i in 0:6 sequential host"),
        program_text("y[i + (j mod 2) - j, 0:8] = 0.0", loop="for i in 0:4 sequential host"),
    ]
    for text in ok:  # each has an index whose interval over the loop box leaves 0..len - 1
        parse_tile_program(text).verify()
    base = with_body()
    loop = Loop("n", 0, 10, body=[If((v("n"), "<", 4), [dataclasses.replace(STAGE, name="g",
                                     body=(Elementwise(Region("y", (v("n"), 0), (None, 8)), Const(0)),))])])
    dataclasses.replace(base, body=(loop,)).verify()  # an `if` guarding an index
    with pytest.raises(VerifyError, match="at n = 4, j = 0, axis 0 reaches index 4"):
        dataclasses.replace(base, body=(dataclasses.replace(loop, body=(
            dataclasses.replace(loop.body[0], cond=(v("n"), "<=", 4)),)),)).verify()
    # a loop that never runs checks nothing
    dataclasses.replace(base, body=(dataclasses.replace(loop, start=5, stop=5),)).verify()


def test_an_empty_region_touches_nothing_and_round_trips():
    """A range of 0 elements (a traced gather of no index, a zero-size tensor) is a region: it
    prints, parses back and verifies wherever it starts (it reaches no element), and an op on
    it does nothing."""
    from fractal.backends.cpu import CpuExecutable
    text = """tile @empty {
  buffer x: f32[3,0] global input
  buffer y: f32[3,4] global output
  stage k(i in 0:3) device {
    y[i, 4:4] = copy(x[i, 0:0])
    y[i, 0:4] = 1.0
  }
}"""
    p = parse_tile_program(text).verify()
    assert str(p) == text
    out = CpuExecutable(p).run({"x": np.zeros((3, 0), np.float32)})["y"]
    assert (out == 1.0).all()


WAVEFRONT_STEP = """tile @t {
  buffer h: f32[3,4,5,3,4] global output
  for w in 0:8 sequential host {
    stage cell(f in max(0, w - 5):min(3, w + 1), i in max(0, w - f - 4):min(4, w - f + 1), m in 0:3) device {
      h[f, i, w - f - i, m, 0:4] = 1.0
    }
  }
}"""


def test_stage_dims_bounded_by_earlier_dims_round_trip_and_verify():
    """A wavefront step's polygon (`i`'s bounds read the earlier dim `f`, `j = w - f - i` in
    the region) prints and parses back unchanged, is not rectangular, and verifies."""
    p = parse_tile_program(WAVEFRONT_STEP)
    assert str(p) == WAVEFRONT_STEP and p.verify() is p
    stage = next(p.stages())
    assert stage.dims[1].start.vars() == {"w", "f"} and not stage.rectangular
    assert parse_tile_program(program_text("y[i, 0:8] = 0.0")).body[0].body[0].rectangular


def test_verify_bounds_of_a_polygon_are_exact():
    """In-bounds checking runs over the polygon, not its bounding box: `j = w - f - i` stays
    in 0..4 over the points (it would reach -3..9 over the box of f, i), and an axis one
    element short is reported at a point of the polygon."""
    short = WAVEFRONT_STEP.replace("f32[3,4,5,3,4]", "f32[3,4,4,3,4]")
    with pytest.raises(VerifyError, match=r"axis 2 reaches index 4, outside 0..3") as e:
        parse_tile_program(short).verify()
    w, f, i, m = map(int, re.search(r"at w = (\d+), f = (\d+), i = (\d+), m = (\d+),", str(e.value)).groups())
    assert max(0, w - 5) <= f < min(3, w + 1) and max(0, w - f - 4) <= i < min(4, w - f + 1) and w - f - i == 4
    triangle = program_text("y[i + j, 0:8] = 0.0").replace("stage s(j in 0:1)", "stage s(j in 0:4 - i)")
    parse_tile_program(triangle).verify()  # i + j <= 3: the box would reach 6
    with pytest.raises(VerifyError, match="axis 0 reaches index 4"):
        parse_tile_program(triangle.replace("0:4 - i", "0:5 - i")).verify()


@SETTINGS
@given(programs())
def test_var_ranges_cover_every_point_that_runs(p):
    """`rewrite.var_ranges` is sound: every value a loop or stage variable takes (stage dims
    bounded by earlier dims included) lies in its range."""
    from fractal.lower.rewrite import var_ranges
    ranges, seen = var_ranges(p.body), {}

    def run(stmts, env):
        for s in stmts:
            if isinstance(s, Loop):
                for x in range(s.start.evaluate(env), s.stop.evaluate(env), s.step):
                    seen.setdefault(s.var, set()).add(x)
                    run(s.body, {**env, s.var: x})
            elif isinstance(s, If):
                a, op, b = s.cond
                run(s.then if eval(f"{a.evaluate(env)} {op} {b.evaluate(env)}") else s.orelse, env)
            else:
                for point in stage_points(s.dims, env):
                    for d in s.dims:
                        seen.setdefault(d.var, set()).add(point[d.var])
    run(p.body, {})
    for var, values in seen.items():
        lo, hi = ranges[var]
        assert lo <= min(values) and max(values) <= hi, var


@pytest.mark.parametrize("op, loop, message", [
    ("y[0, 0:8] = add(y[0, 0:8], x[i, 0:8])", "for i in 0:4 parallel host",
     "the iterations of parallel loop i are not independent (instances i differing by"),
    ("y[i, 0:8] = copy(x[i, 0:8])\n      y[(i + 1) mod 4, 0:4] = copy(x[i, 0:4])", "for i in 0:4 parallel host",
     "writes y[i, 0:8], writes y[(i + 1) mod 4, 0:4]"),
    ("y[0, 0:8] = copy(x[i, 0:8])", "for i in 0:4 sequential host", None),  # in order: allowed
])
def test_a_parallel_loops_iterations_must_not_meet(op, loop, message):
    """The contract: a parallel loop's iterations touch no element in common that one of
    them writes; the message gives two meeting instances and the accesses that meet."""
    p = parse_tile_program(program_text(op, loop=loop))
    if message is None:
        p.verify()
        return
    with pytest.raises(VerifyError) as e:
        p.verify()
    assert message in str(e.value) and "\n  in: for i in 0:4 parallel host" in str(e.value)


@pytest.mark.parametrize("active, meets", [(" active m < 2 - r", False), ("", True)])
def test_a_dead_points_reads_do_not_count_against_a_parallel_loop(active, meets):
    """A sequential loop's `active` hint names the live points of a sorted ragged batch: a
    dead point computes what no one reads, so what it reads (here the other iteration's row,
    where the affine index fitted to the live points lands) cannot break independence; its
    writes still count.  Without the hint the same read meets the other iteration's write."""
    p = parse_tile_program(f"""tile @t {{
  buffer x: f64[2,4] global input
  buffer y: f64[4,4] global temp
  buffer z: f64[4,4] global output
  for m in 0:2 parallel host {{
    stage w(k in 0:2) device {{ y[2*m + k, 0:4] = copy(x[m, 0:4]) }}
    for r in 0:2 sequential host{active} {{
      stage s() device {{ z[m + 2*r, 0:4] = copy(y[m - r + 1, 0:4]) }}
    }}
  }}
}}""")
    if not meets:
        p.verify()
        return
    with pytest.raises(VerifyError, match="iterations of parallel loop m are not independent"):
        p.verify()



def test_an_if_holds_by_its_comparison_of_the_bound_variables():
    from fractal.lower.tile_ir import If
    for op, want in (("<", [True, False, False]), ("<=", [True, True, False]), ("==", [False, True, False]),
                     ("!=", [True, False, True]), (">=", [False, True, True]), (">", [False, False, True])):
        assert [If(("i", op, 2), ()).holds({"i": i}) for i in (1, 2, 3)] == want
