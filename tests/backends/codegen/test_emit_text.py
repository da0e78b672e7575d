"""The emitted text itself: the same tree in host C++ and CUDA differs only by the dialect
table; parentheses only where C++ precedence needs them; constants typed like the
interpreter types them; helpers defined once; and the errors for ops and dtypes it cannot emit."""

from __future__ import annotations

import re

import pytest

from fractal.backends.codegen import BINARY_OPS, CUDA, HOST, UNARY_OPS, emit_expr, prelude, store
from fractal.lang.errors import ArgumentError, FractalTypeError, UnsupportedError
from fractal.lang.tensor_ops import BINARY, UNARY
from fractal.lower.tile_expr import Binary, Const, Load, Unary, Where

from .strategies import whole

X, Y, K = Load(whole("x")), Load(whole("y")), Load(whole("k"))
DTYPES = {"x": "float32", "y": "float64", "k": "int32", "h": "float16", "b": "bfloat16"}


def text(e, want="float32", d=CUDA) -> str:
    return emit_expr(e, want, DTYPES, lambda r: f"{r.buffer}[i]", d).text


def test_every_op_of_tensor_ops_has_a_row_and_no_row_is_extra():
    assert set(UNARY_OPS) == set(UNARY)
    assert set(BINARY_OPS) == set(BINARY)


def test_cuda_and_host_differ_only_in_the_dialect_table():
    e = Binary("add", Unary("sigmoid", X), Const(1.0))
    assert text(e, d=CUDA) == "1.0f / (1.0f + expf(-x[i])) + 1.0f"
    assert text(e, d=HOST) == "1.0f / (1.0f + std::exp(-x[i])) + 1.0f"
    assert text(Unary("exp", Y), "float64", CUDA) == "exp(y[i])"


@pytest.mark.parametrize("tree, want, cxx", [
    (Binary("sub", X, Binary("sub", X, Const(2.0))), "float32", "x[i] - (x[i] - 2.0f)"),
    (Binary("sub", Binary("sub", X, Const(2.0)), X), "float32", "x[i] - 2.0f - x[i]"),
    (Binary("mul", Binary("add", X, X), X), "float32", "(x[i] + x[i]) * x[i]"),
    (Binary("add", Binary("mul", X, X), X), "float32", "x[i] * x[i] + x[i]"),
    (Binary("div", X, Binary("mul", X, X)), "float32", "x[i] / (x[i] * x[i])"),
    (Unary("neg", Unary("neg", X)), "float32", "-(-x[i])"),
    (Unary("neg", Binary("add", X, X)), "float32", "-(x[i] + x[i])"),
    (Binary("lt", Binary("add", X, X), X), "float32", "x[i] + x[i] < x[i]"),
])
def test_parentheses_only_where_precedence_needs_them(tree, want, cxx):
    assert text(tree, want) == cxx


def test_constants_take_their_siblings_dtype():
    assert text(Binary("add", K, Const(2.7)), "float64") == "k[i] + 2"       # int32 sibling: truncated
    assert text(Binary("add", Y, Const(0.1)), "float32") == "y[i] + 0.1"     # float64 sibling
    assert text(Binary("add", X, Const(0.1)), "float64") == "x[i] + 0.1f"    # float32 sibling
    assert text(Unary("exp", Const(1.0)), "float64") == "exp(1.0)"            # no sibling: the destination's
    assert text(Binary("gt", Const(1.0), Const(0.5))) == "1.0 > 0.5"          # constants compare as float64


def test_special_constants_are_spelled_by_the_dialect():
    assert text(Binary("add", X, Const(float("inf")))) == "x[i] + __int_as_float(0x7f800000)"
    assert text(Binary("add", X, Const(float("nan"))), d=HOST) == "x[i] + std::numeric_limits<float>::quiet_NaN()"
    assert text(Binary("add", Y, Const(float("-inf"))), d=HOST) == "y[i] + -std::numeric_limits<double>::infinity()"


def test_mixed_dtypes_promote_like_numpy():
    assert text(Binary("mul", X, Y), "float64") == "static_cast<double>(x[i]) * y[i]"
    assert text(Unary("exp", K), "float64") == "exp(static_cast<double>(k[i]))"  # an int exp is float64
    assert text(Binary("div", K, K), "float64") == "static_cast<double>(k[i]) / static_cast<double>(k[i])"
    assert text(Where(Binary("lt", X, Const(0.0)), K, Const(3.0)), "float32") == "x[i] < 0.0f ? k[i] : 3"


def test_an_operand_read_twice_becomes_a_helper_defined_once():
    e = emit_expr(Unary("gelu", Unary("gelu", X)), "float32", DTYPES, lambda r: "x[i]", CUDA)
    assert e.text == "fl_gelu_float32(fl_gelu_float32(x[i]))"
    assert prelude(CUDA, e.helpers) == CUDA.includes() + (
        "static __device__ __forceinline__ float fl_gelu_float32(float x) { return 0.5f * x * (1.0f + "
        "tanhf(0.7978846f * (x + 0.044715f * (x * x * x)))); }\n")


def test_half_precision_computes_in_float_and_rounds_when_stored():
    h = Load(whole("h"))
    for d, cxx in ((CUDA, "__float2half(fl_softplus_float32(__half2float(h[i])))"),
                   (HOST, "static_cast<_Float16>(fl_softplus_float32(static_cast<float>(h[i])))")):
        assert store(emit_expr(Unary("softplus", h), "float16", DTYPES, lambda r: "h[i]", d), "float16", d).text == cxx
    b = emit_expr(Binary("mul", Load(whole("b")), Const(3.14159)), "bfloat16", DTYPES, lambda r: "b[i]", CUDA)
    assert store(b, "bfloat16", CUDA).text == "__float2bfloat16(__bfloat162float(b[i]) * 3.140625f)"


def test_storing_to_bool_is_nonzero():
    value = emit_expr(Binary("add", X, X), "float32", DTYPES, lambda r: "x[i]", HOST)
    assert store(value, "bool", HOST).text == "x[i] + x[i] != 0.0f"


def test_an_unknown_op_is_named():
    with pytest.raises(UnsupportedError, match=re.escape("the C++ emitter has no rule for the element-wise op 'erf'")):
        text(Unary("erf", X))


def test_a_binary_op_used_as_unary_is_unknown_there():
    with pytest.raises(UnsupportedError, match="no rule for the element-wise op 'add'"):
        text(Unary("add", X))


def test_an_op_numpy_does_not_define_for_the_dtypes_is_refused():
    with pytest.raises(FractalTypeError, match="sub is not defined for bool and bool operands"):
        text(Binary("sub", Binary("lt", X, X), Binary("lt", X, X)))


def test_an_op_without_a_row_for_the_operand_kind_is_refused(monkeypatch):
    monkeypatch.setitem(UNARY_OPS, "relu", {"f": "fl_maximum({x}, {c:0})"})
    with pytest.raises(FractalTypeError, match="relu is not defined for int32 operands"):
        text(Unary("relu", K), "int32")


def test_a_result_dtype_without_a_scalar_type_is_refused():
    with pytest.raises(FractalTypeError, match=re.escape("the C++ emitter has no scalar type for int8")):
        text(Binary("pow", Binary("lt", X, X), Binary("lt", X, X)), "int32")  # NumPy: bool ** bool is int8


def test_a_dtype_without_a_scalar_type_is_refused():
    with pytest.raises(FractalTypeError, match=re.escape("the C++ emitter has no scalar type for complex64")):
        emit_expr(X, "complex64", DTYPES, lambda r: "x[i]", CUDA)


def test_a_constant_with_no_integer_value_is_refused():
    with pytest.raises(FractalTypeError, match="the constant inf has no int32 value"):
        text(Binary("add", K, Const(float("inf"))), "int32")


def test_a_load_of_a_buffer_without_a_dtype_is_refused():
    with pytest.raises(ArgumentError, match=re.escape("the expression loads buffer z, which has no dtype in ['x', 'y']")):
        emit_expr(Load(whole("z")), "float32", {"x": "float32", "y": "float32"}, lambda r: "z[i]", HOST)
