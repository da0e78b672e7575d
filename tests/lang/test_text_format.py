"""The program IR text form: golden output, exact print/parse round trips, parse errors."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fractal.lang.errors import UNKNOWN_LOC, ParseError, SourceLoc
from fractal.lang.ir import Const, Eqn, Program, Region, Slice, Var, make_params
from fractal.lang.parser import parse_program
from fractal.lang.printer import print_param_value, print_program, print_type
from fractal.lang.types import (DTYPES, FractalTensorType, TensorType, TupleType, bool_, float16,
                                float32, float64, int64)

F14 = TensorType((1, 4), float32)


def rnn_program() -> Program:
    xs, w = Var("xs", FractalTensorType(F14)), Var("w", TensorType((4, 4), float32))
    h0, hs = Var("0", F14), Var("1", FractalTensorType(F14))
    h, x, y, z, o = (Var(str(i), F14) for i in range(2, 7))
    cell = Region((h, x), (
        Eqn("matmul", (h, w), (y,), loc=SourceLoc("rnn.py", 6, "cell")),
        Eqn("add", (y, x), (z,), loc=SourceLoc("rnn.py", 6, "cell")),
        Eqn("tanh", (z,), (o,), loc=SourceLoc("rnn.py", 6, "cell")),
    ), (o,))
    return Program("rnn", Region((xs, w), (
        Eqn("full", (), (h0,), make_params(dtype=float32, shape=(1, 4), value=0.0),
            loc=SourceLoc("rnn.py", 8, "rnn")),
        Eqn("scan", (h0, xs), (hs,), make_params(n_state=1, reverse=False), (cell,),
            SourceLoc("rnn.py", 9, "rnn")),
    ), (hs,)))


RNN_TEXT = """\
func @rnn(%xs: ft<f32[1,4]>, %w: f32[4,4]) -> ft<f32[1,4]> {
  %0: f32[1,4] = full() {dtype=f32, shape=(1, 4), value=0.0}  loc("rnn.py":8:"rnn")
  %1: ft<f32[1,4]> = scan(%0, %xs) {n_state=1, reverse=false}  loc("rnn.py":9:"rnn") {
    ^(%2: f32[1,4], %3: f32[1,4]):
      %4: f32[1,4] = matmul(%2, %w)  loc("rnn.py":6:"cell")
      %5: f32[1,4] = add(%4, %3)  loc("rnn.py":6:"cell")
      %6: f32[1,4] = tanh(%5)  loc("rnn.py":6:"cell")
      yield %6
  }
  return %1
}"""


def test_golden_rnn():
    p = rnn_program()
    assert print_program(p) == RNN_TEXT
    assert str(p) == RNN_TEXT
    assert parse_program(RNN_TEXT) == p


def test_golden_multi_output_regions_and_tuples():
    a, b = Var("a", TensorType((2,), float64)), Var("b.1", TensorType((), int64))
    p0, p1 = Var("p", TensorType((), int64)), Var("q", TensorType((), int64))
    r1 = Region((p0,), (), (p0,))
    r2 = Region((), (), (a,))
    eqn = Eqn("split", (a,), (b, Var("c", FractalTensorType(TupleType((TensorType((), int64),))))),
              make_params(axis=-1, c=Const(np.array([[True, False]])), e=Ellipsis, f=float("-inf"),
                          n=None, s=Slice(None, 3, None), t=TupleType(()), u=(1,), v=(), w="x\"y"),
              (r1, r2), UNKNOWN_LOC)
    p = Program("f_2", Region((a,), (eqn,), (b, a)), ((None,), None))
    text = print_program(p)
    assert text == """\
func @f_2(%a: f64[2]) -> ((i64[],), f64[2]) {
  %b.1: i64[], %c: ft<(i64[],)> = split(%a) {axis=-1, c=array<bool[1,2]>[[true, false]], e=..., \
f=-inf, n=none, s=slice(none, 3, none), t=type(()), u=(1,), v=(), w="x\\"y"}  loc("<unknown>":0) {
    ^(%p: i64[]):
      yield %p
  } {
    ^():
      yield %a
  }
  return ((%b.1,), %a)
}"""
    assert parse_program(text) == p


def test_print_type_and_values():
    assert print_type(TensorType((), bool_)) == "bool[]"
    assert print_type(TupleType((FractalTensorType(FractalTensorType(TensorType((3,), float16))),))) \
        == "(ft<ft<f16[3]>>,)"
    assert print_param_value(np.float32(0.5)) == "0.5"
    assert print_param_value(np.int64(3)) == "3"
    assert print_param_value(np.True_) == "true"
    assert print_param_value(1e20) == "1e+20"
    assert print_param_value(float("nan")) == "nan"
    assert print_param_value(Const(np.zeros((0, 3), np.float32))) == "array<f32[0,3]>[]"
    assert print_param_value(Const(np.array(2.5, np.float16))) == "array<f16[]>2.5"
    big = print_param_value(Const(np.arange(65, dtype=np.int32)))
    assert big.startswith('array<i32[65]> b64"')


def test_printer_rejects_unprintable():
    x = Var("x", F14)
    with pytest.raises(ValueError, match="variable name"):
        print_program(Program("f", Region((Var("a b", F14),), (), (x,))))
    with pytest.raises(ValueError, match="results"):
        print_program(Program("f", Region((x,), (), (x, x))))
    with pytest.raises(ValueError, match="leaves"):
        print_program(Program("f", Region((x,), (), (x,)), (None, None)))
    with pytest.raises(TypeError, match="cannot print parameter value"):
        print_param_value([1, 2])


def test_keywords_are_names_outside_values():
    t = F14
    x, y = Var("x", t), Var("y", t)
    eqn = Eqn("type", (x,), (y,), make_params(none=None, true=True, loc=1, ft=float32, array=2))
    p = Program("func", Region((x,), (eqn,), (y,)))
    assert parse_program(print_program(p)) == p


def test_float16_nan_payload_uses_base64():
    a = np.array([np.nan, 1.0], np.float16)
    a.view(np.uint16)[0] = 0x7E01  # a NaN that the literal `nan` would not reproduce
    c = Const(a)
    text = print_param_value(c)
    assert "b64" in text
    p = _one_param_program(c)
    assert parse_program(print_program(p)) == p


# --- random programs ---------------------------------------------------------------------

_DTYPE = st.sampled_from(DTYPES)
_TENSOR_TYPES = st.builds(TensorType, st.lists(st.integers(0, 5), max_size=3).map(tuple), _DTYPE)


@st.composite
def _types(draw, depth=2):
    """Tensor, ft<...> and tuple types (a hand-rolled recursion: st.recursive is slow here)."""
    kind = draw(st.integers(0, 4)) if depth > 0 else 0
    if kind <= 2:
        return draw(_TENSOR_TYPES)
    if kind == 3:
        return FractalTensorType(draw(_types(depth - 1)))
    return TupleType(tuple(draw(_types(depth - 1)) for _ in range(draw(st.integers(0, 3)))))


def _consts():
    shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=10).filter(
        lambda s: math.prod(s) <= 120)
    return st.builds(Const, st.sampled_from(DTYPES).flatmap(
        lambda dt: hnp.arrays(dt, shapes)))


@st.composite
def _values(draw, allow_nan: bool, depth=2):
    """Every kind of parameter value, tuples nested up to `depth`."""
    if depth > 0 and draw(st.integers(0, 5)) == 0:
        return tuple(draw(_values(allow_nan, depth - 1)) for _ in range(draw(st.integers(0, 3))))
    return draw(_SCALARS_NAN if allow_nan else _SCALARS)


def _scalars(allow_nan: bool):
    opt_int = st.none() | st.integers(-10, 10)
    return st.one_of(
        st.none(), st.booleans(), st.integers(), st.integers(-2**70, 2**70),
        st.floats(allow_nan=allow_nan), st.text(), _DTYPE, _types(),
        st.builds(Slice, opt_int, opt_int, opt_int), st.just(Ellipsis), _consts())


_SCALARS, _SCALARS_NAN = _scalars(False), _scalars(True)

# Built once: constructing strategies inside `draw` loops makes generation very slow.
_TYPES = _types()
_VALUES = {False: _values(False), True: _values(True)}
_KEYS = st.sampled_from(["none", "true", "type", "loc", "ft", "array", "f32", "nan"]) | st.from_regex(
    r"[A-Za-z_][A-Za-z_0-9]{0,5}", fullmatch=True)
_OPS = st.sampled_from(["add", "matmul", "scan", "map", "nn.linear", "none", "loc", "yield",
                        "return", "func", "type", "inf", "b64", "x_1"])
_FILES = st.sampled_from(['model.py', 'a "quoted" \\path\\f.py', "<unknown>", ""]) | st.text(max_size=8)
_LOCS = st.just(UNKNOWN_LOC) | st.builds(SourceLoc, _FILES, st.integers(-1, 10**6),
                                         st.sampled_from(["", "cell", 'we"ird\\']) | st.text(max_size=5))
_NAME_STYLE = st.sampled_from(["{}", "x{}", "params.w_{}", "_{}", "t{}.", "9.{}"])


@st.composite
def programs(draw, allow_nan=False):
    counter = [0]
    values = _VALUES[allow_nan]

    def fresh_var() -> Var:
        counter[0] += 1
        return Var(draw(_NAME_STYLE).format(counter[0]), draw(_TYPES))

    def region(scope: list[Var], region_params: tuple[Var, ...], depth: int, min_results: int) -> Region:
        scope = scope + list(region_params)
        eqns = []
        n_eqns = draw(st.integers(0 if scope else 1, 3))
        for _ in range(n_eqns):
            inputs = tuple(draw(st.lists(st.sampled_from(scope), max_size=3))) if scope else ()
            n_regions = 0 if depth >= 3 else draw(st.sampled_from([0, 0, 1, 1, 2]))
            regions = tuple(region(scope, tuple(fresh_var() for _ in range(draw(st.integers(0, 2)))),
                                   depth + 1, 1) for _ in range(n_regions))
            outputs = tuple(fresh_var() for _ in range(draw(st.integers(1, 3))))
            params = make_params(**draw(st.dictionaries(_KEYS, values, max_size=3)))
            eqns.append(Eqn(draw(_OPS), inputs, outputs, params, regions, draw(_LOCS)))
            scope = scope + list(outputs)
        results = tuple(draw(st.lists(st.sampled_from(scope), min_size=min_results, max_size=3)))
        return Region(region_params, tuple(eqns), results)

    params = tuple(fresh_var() for _ in range(draw(st.integers(0, 3))))
    body = region([], params, 0, 0)
    n = len(body.results)
    out_tree = None if n == 1 and draw(st.booleans()) else _tree(draw, n, 0)
    name = draw(st.from_regex(r"[A-Za-z_0-9][A-Za-z_0-9.]{0,6}", fullmatch=True))
    return Program(name, body, out_tree)


def _tree(draw, n: int, depth: int):
    """A tuple nesting with `n` None leaves (empty tuples thrown in)."""
    items: list = []
    while n > 0:
        k = draw(st.integers(1, n))
        if k == 1 and (depth >= 3 or draw(st.booleans())):
            items.append(None)
        elif depth < 3:
            items.append(_tree(draw, k, depth + 1))
        else:
            items.extend([None] * k)
        n -= k
    if depth < 3 and draw(st.integers(0, 4)) == 0:
        items.insert(draw(st.integers(0, len(items))), ())
    return tuple(items)


_SETTINGS = settings(max_examples=100, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_SETTINGS
@given(programs())
def test_round_trip(p):
    text = print_program(p)
    q = parse_program(text)
    assert q == p
    # == can't see True vs 1 vs 1.0 or 0.0 vs -0.0; the printed text can.
    assert print_program(q) == text


@_SETTINGS
@given(programs(allow_nan=True))
def test_round_trip_text_with_nan(p):
    text = print_program(p)
    assert print_program(parse_program(text)) == text


@settings(max_examples=100, deadline=None)
@given(_consts())
def test_const_round_trip(c):
    p = _one_param_program(c)
    q = parse_program(print_program(p))
    assert q == p
    assert q.body.eqns[0].params[0][1].value.shape == c.value.shape


def test_const_is_a_read_only_copy_compared_by_dtype_shape_and_bytes():
    """Equal bits are equal (NaN too), -0.0 is not 0.0, dtypes and shapes must agree; the
    same object compares without reading its bytes; the hash is kept, but not pickled
    (hashes of bytes differ between processes)."""
    data = np.array([np.nan, 0.0, 1.5])
    a = Const(data)
    data[2] = 7.0
    assert not a.value.flags.writeable and a.value[2] == 1.5
    assert a == Const(np.array([np.nan, 0.0, 1.5])) and hash(a) == hash(Const(a.value))
    assert a != Const(np.array([np.nan, -0.0, 1.5])) and a != Const(a.value.astype(np.float32))
    assert a != Const(a.value.reshape(3, 1)) and a != a.value

    class Unread(np.ndarray):
        def tobytes(self, order="C"):
            raise AssertionError("the bytes were read")
    same = Const(np.zeros(4))
    object.__setattr__(same, "value", same.value.view(Unread))
    assert same == same
    with pytest.raises(AssertionError, match="the bytes were read"):
        assert same == Const(np.zeros(4))
    hash(a)
    assert "_hash" in vars(a) and "_hash" not in vars(pickle.loads(pickle.dumps(a)))
    assert pickle.loads(pickle.dumps(a)) == a


@settings(max_examples=100, deadline=None)
@given(st.floats() | st.floats(width=32) | st.floats(width=16))
def test_float_param_round_trip(f):
    got = parse_program(print_program(_one_param_program(f))).body.eqns[0].params[0][1]
    assert type(got) is float
    assert np.array(got).tobytes() == np.array(f).tobytes() or (math.isnan(f) and math.isnan(got))


def _one_param_program(value) -> Program:
    y = Var("y", F14)
    return Program("p", Region((), (Eqn("c", (), (y,), make_params(v=value)),), (y,)))


# --- parse errors ---------------------------------------------------------------------------

def _wrap(eqn_line: str, ret: str = "%y", sig: str = "f32[2]") -> str:
    return f"func @f(%x: f32[2]) -> {sig} {{\n  {eqn_line}\n  return {ret}\n}}"


@pytest.mark.parametrize("text, message", [
    (_wrap("%y: f32[2] = add(%x, %x)) loc(\"a.py\":1)"),
     r"line 2, column 27: unexpected '\)'; expected one of: .*'loc'.*'\{'"),
    ("func @f() -> f32[2] {\n  %y: f32[2] = c() $\n  return %y\n}",
     r"line 2, column 20: unexpected text '\$'"),
    (_wrap("%y: f32[2] = add(%x, %z)"), r"unknown variable %z at line 2, column 24"),
    (_wrap("%y: f32[2] = neg(%x)", ret="%q"), r"unknown variable %q at line 3"),
    (_wrap("%y: f8[2] = neg(%x)"), r"unknown dtype 'f8' \(expected one of f16, f32, f64, i32, i64, bool\)"),
    (_wrap("%y: f32[2] = full() {dtype=float}"), r"unknown dtype 'float' .* at line 2, column 30"),
    (_wrap("%y: f32[2] = neg(%x)", sig="ft<>"), r"'ft<>' needs an element type.* at line 1, column 24"),
    (_wrap("%y: f32[-2] = neg(%x)"), r"negative dimension -2"),
    (_wrap("%y: f32[2] = c() {a=array<f32[2,2]>[1.0, 2.0, 3.0]}"),
     r"array<f32\[2,2\]>: literal has 3 element\(s\), expected 4 at line 2"),
    (_wrap("%y: f32[2] = c() {a=array<f32[2,2]>[1.0, 2.0, 3.0, 4.0]}"),
     r"array<f32\[2,2\]>: literal is nested as \[4\]"),
    (_wrap("%y: f32[2] = c() {a=array<f32[2,2]>[[1.0], [2.0, 3.0, 4.0]]}"), r"ragged array literal"),
    (_wrap("%y: f32[2] = c() {a=array<i32[2]>[1, 2.5]}"), r"element 2.5 is not an integer"),
    (_wrap("%y: f32[2] = c() {a=array<bool[1]>[1]}"), r"element 1 is not true or false"),
    (_wrap("%y: f32[2] = c() {a=array<f32[1]>[true]}"), r"element true is not a number"),
    (_wrap("%y: f32[2] = c() {a=array<i32[1]>[3000000000]}"), r"element 3000000000 does not fit i32"),
    (_wrap("%y: f32[2] = c() {a=array<f16[1]>[1e10]}"), r"element 10000000000.0 overflows f16"),
    (_wrap(f"%y: f32[2] = c() {{a=array<f64[1]>[{10**400}]}}"), r"element 10+ overflows f64"),
    (_wrap("%y: f32[2] = c() {a=array<f32[2]>[1.0, foo]}"),
     r"unexpected 'foo'; expected one of: '-inf', 'false', 'inf', 'nan', 'true', '\[', float, integer"),
    (_wrap('%y: f32[2] = c() {a=array<f32[2]> b64"AAAA"}'), r"base64 data has 3 bytes, expected 8"),
    (_wrap('%y: f32[2] = c() {a=array<f32[1]> b64"AAA"}'), r"invalid base64 data"),
    (_wrap("%y: f32[2] = c() {a=array<ft<f32[1]>>[]}"), r"an array type must be a tensor type"),
    (_wrap("%y: f32[2] = c() {a=1, a=2}"), r"duplicate parameter 'a' at line 2"),
    (_wrap('%y: f32[2] = c() {s="\\q"}'), r"bad string literal"),
    (_wrap("%y: f32[2] = neg(%x)", sig="f32[3]"),
     r"result %y has type f32\[2\] but the signature says f32\[3\] at line 3"),
    (_wrap("%y: f32[2] = neg(%x)", ret="(%y, %x)", sig="(f32[2],)"),
     r"return value is a 2-tuple but the signature says \(f32\[2\],\)"),
    ("func @f(%x: f32[2]) -> f32[2] {\n  %y: f32[2] = map(%x) {\n    ^(%a: f32[2]):\n      yield %a\n",
     r"line 4, column 13: unexpected end of input \(2 unclosed '\{': unterminated region"),
    ("func @f(%x: f32[2]) -> f32[2] {\n  %y: f32[2] = map(%x) {\n    ^(%a: f32[2]):\n"
     "      %b: f32[2] = neg(%a)\n  }\n  return %y\n}",
     r"line 5, column 3: unexpected '\}'; expected one of: %variable, .*'yield'"),
])
def test_parse_errors(text, message):
    with pytest.raises(ParseError, match=message) as info:
        parse_program(text)
    assert info.value.loc.file == "<program text>" and info.value.loc.line >= 1


def test_region_scope_does_not_leak():
    text = ("func @f(%x: f32[2]) -> f32[2] {\n  %y: f32[2] = map(%x) {\n    ^(%a: f32[2]):\n"
            "      yield %a\n  }\n  return %a\n}")
    with pytest.raises(ParseError, match=r"unknown variable %a at line 6"):
        parse_program(text)


def test_region_does_not_see_own_outputs():
    text = ("func @f(%x: f32[2]) -> f32[2] {\n  %y: f32[2] = map(%x) {\n    ^(%a: f32[2]):\n"
            "      yield %y\n  }\n  return %y\n}")
    with pytest.raises(ParseError, match=r"unknown variable %y at line 4"):
        parse_program(text)


def test_unknown_op_with_known_ops():
    assert parse_program(RNN_TEXT, known_ops=None) == rnn_program()
    ops = {"full", "scan", "matmul", "add", "tanh"}
    assert parse_program(RNN_TEXT, known_ops=ops) == rnn_program()
    with pytest.raises(ParseError, match=r"unknown op 'tanh' at line 7, column 22"):
        parse_program(RNN_TEXT, known_ops=ops - {"tanh"})


def test_loc_is_optional_when_parsing():
    p = parse_program("func @f(%x: f32[2]) -> f32[2] {\n  %y: f32[2] = neg(%x) {k=1}\n  return %y\n}")
    assert p.body.eqns[0].loc == UNKNOWN_LOC and p.body.eqns[0].params == (("k", 1),)
