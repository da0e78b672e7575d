"""The CUDA dialect's text compiles with nvcc for sm_80: every op on every dtype it is defined
for (half and bfloat16 included), random trees, conversions between every pair of dtypes,
index expressions and region offsets, each in
a `__global__` kernel of one translation unit (one nvcc run); skipped without nvcc."""

from __future__ import annotations

import random
import subprocess

import pytest

from fractal.backends.codegen import (BINARY_OPS, CUDA, UNARY_OPS, cast, emit_expr, index_expr, index_prelude, offset,
                                      prelude, store)
from fractal.lang.errors import FractalTypeError
from fractal.lower.tile_expr import Binary, Load, Unary

from .cxx import NVCC
from .strategies import random_tree, whole
from .test_address import CASES as REGIONS
from .test_index import INDICES, VARS

DTYPES = ("float16", "bfloat16", "float32", "float64", "int32", "int64", "bool")
PAIRS = tuple((d, d) for d in DTYPES) + (("float16", "float32"), ("bfloat16", "float16"), ("int32", "float64"),
                                         ("int64", "int32"), ("bool", "float16"), ("float32", "float64"))


def element_kernels():
    """(name, source, helpers) of a kernel per op and dtype pair it is defined for, and per random tree."""
    x, y = Load(whole("x")), Load(whole("y"))
    trees = [(f"{op}_{xd}_{yd}", xd, yd, Unary(op, x) if op in UNARY_OPS else Binary(op, x, y))
             for op in (*UNARY_OPS, *BINARY_OPS)
             for xd, yd in (PAIRS if op in BINARY_OPS else ((d, d) for d in DTYPES))]
    rng = random.Random(18)
    trees += [(f"tree{k}_{xd}", xd, "float32", random_tree(rng, 3, True)) for k in range(40)
              for xd in ("float16", "bfloat16", "float32", "float64")[k % 4:k % 4 + 1]]
    for name, xd, yd, tree in trees:
        try:
            value = emit_expr(tree, xd, {"x": xd, "y": yd}, lambda r: f"{r.buffer}[i]", CUDA)
        except FractalTypeError:  # not defined for these dtypes (as in NumPy): nothing to compile
            continue
        out = store(value, value.dtype if value.dtype != "bool" else "float32", CUDA)
        c = CUDA.ctype
        yield name, (f'extern "C" __global__ void k_{name}(const {c[xd]}* x, const {c[yd]}* y, {c[out.dtype]}* out, '
                     f"long long n) {{\n  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;\n"
                     f"  if (i < n) out[i] = {out.text};\n}}\n"), out.helpers


def cast_kernels():
    c = CUDA.ctype
    for src in DTYPES:
        for dst in DTYPES:
            yield (f'extern "C" __global__ void cast_{src}_{dst}(const {c[src]}* x, {c[dst]}* out) '
                   f"{{ out[threadIdx.x] = {cast('x[threadIdx.x]', src, dst, CUDA).text}; }}\n")


def index_kernels():
    args = ", ".join(f"long long {v}" for v in VARS)
    for k, x in enumerate(INDICES):
        yield f'extern "C" __global__ void idx{k}(long long* out, {args}) {{ out[threadIdx.x] = {index_expr(x)}; }}\n'
    for k, (buf, r) in enumerate(REGIONS):
        evars = ("threadIdx.x", "threadIdx.y", "blockIdx.x", "blockIdx.y")[:len(r.shape)]
        names = {f"e{a}": v for a, v in enumerate(evars)}
        text = offset(r, buf, tuple(names), names)
        yield f'extern "C" __global__ void off{k}(float* b, long long t) {{ b[{text}] = 1.0f; }}\n'


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed: the CUDA text cannot be compiled")
def test_cuda_text_compiles_with_nvcc_for_sm_80(tmp_path):
    kernels = list(element_kernels())
    assert len(kernels) > 300
    source = (prelude(CUDA, [h for _, _, hs in kernels for h in hs]) + index_prelude(CUDA)
              + "".join(s for _, s, _ in kernels) + "".join(cast_kernels())
              + "".join(index_kernels()))
    src = tmp_path / "dialect.cu"
    src.write_text(source)
    run = subprocess.run([NVCC, "-std=c++17", "-arch=sm_80", "--cubin", "-o", str(tmp_path / "dialect.cubin"),
                          str(src)], capture_output=True, text=True)
    assert run.returncode == 0, f"nvcc failed on {src}:\n{run.stderr[:4000]}"
    assert (tmp_path / "dialect.cubin").stat().st_size > 0
