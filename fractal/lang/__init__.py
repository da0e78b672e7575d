"""The fractal language: types, values, combinators, tracing, program IR, interpreter."""

# Modules that register themselves: the ops fill the op table, and the traced tensor class is
# what tracing wraps tensor variables in (`fractal.lang.tracing.Tracer`'s `traces=`).
from . import access_ops, tensor_ops, tensor_tracer  # noqa: F401
from .api import (abs, astype, concat, concatenate, cos, dilate, elu, enumerate, exp, flatten, full, gather,
                  gelu, interleave, join, layer_norm, length, log, log1p, log_sigmoid, logsumexp, matmul, max,
                  maximum, mean, min, minimum, ones, product, relu, repeat, reshape, reverse, shifted_window,
                  sigmoid, sin, slices, softmax, softplus, split, sqrt, stack, sum, tanh, transpose, where,
                  window, zeros, zip)
from .combinators import fold, map, reduce, scan
from .errors import (ArgumentError, CudaCompileError, DeviceError, FractalError, FractalTypeError, LengthError, ParseError,
                     ResourceError, ShapeError, SourceLoc, TraceError, UnsupportedError, VerifyError)
from .function import Function, function
from .ir import Const, Eqn, Program, Region, Slice, Var
from .types import (FractalTensorType, Tensor, TensorType, TupleType, bool_, float16, float32, float64,
                    int32, int64)
from .values import FractalTensor, fractal, from_numpy
from . import parser as _parser
from .verify import known_ops as _known_ops


def parse_program(text: str, known_ops=None) -> Program:
    """Parse program text (what `str(program)` prints) back into a `Program`.

    Op names outside the op table (`fractal.lang.verify.known_ops()`) are a `ParseError`
    with their line and column; pass `known_ops=` to accept a different set of names."""
    return _parser.parse_program(text, _known_ops() if known_ops is None else known_ops)


__all__ = ['ArgumentError',
           'Const',
           'Eqn',
           'FractalError',
           'FractalTensor',
           'FractalTensorType',
           'FractalTypeError',
           'Function',
           'LengthError',
           'ParseError',
           'Program',
           'Region',
           'ResourceError',
           'ShapeError',
           'Slice',
           'SourceLoc',
           'Tensor',
           'TensorType',
           'TraceError',
           'TupleType',
           'Var',
           "UnsupportedError", "VerifyError", "CudaCompileError", "DeviceError",
           'abs',
           'astype',
           'bool_',
           'concat',
           'concatenate',
           'cos',
           'dilate',
           'elu',
           'enumerate',
           'exp',
           'flatten',
           'float16',
           'float32',
           'float64',
           'fold',
           'fractal',
           'from_numpy',
           'full',
           'function',
           'gather',
           'gelu',
           'int32',
           'int64',
           'interleave',
           'join',
           'layer_norm',
           'length',
           'log',
           'log1p',
           'log_sigmoid',
           'logsumexp',
           'map',
           'matmul',
           'max',
           'maximum',
           'mean',
           'min',
           'minimum',
           'ones',
           'parse_program',
           'product',
           'reduce',
           'relu',
           'repeat',
           'reshape',
           'reverse',
           'scan',
           'shifted_window',
           'sigmoid',
           'sin',
           'slices',
           'softmax',
           'softplus',
           'split',
           'sqrt',
           'stack',
           'sum',
           'tanh',
           'transpose',
           'where',
           'window',
           'zeros',
           'zip']
