"""Tile programs every C++ emitter must run as the pointwise executor does, one per op kind and
control form, each with what its outputs must show beyond that agreement.  The CUDA emulation's
tests (tests/backends/cuda/test_emitter.py) and the native backend's
(tests/backends/native/test_emitter.py) run each through their own `run_both`:

    spec = specs.reductions("max")
    spec.check(run_both(spec.program, spec.inputs, spec.rtol, spec.atol))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from tests.backends.cpu.programs import program, tile

RNG = np.random.default_rng(0)


def data(shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


@dataclass
class Spec:
    program: object
    inputs: dict
    check: Callable[[dict], None]   # of the backend's outputs (already equal to the pointwise executor's)
    rtol: float = 1e-5
    atol: float = 1e-5


def gemm(dtype: str) -> Spec:
    """Transposes, `+=` and a product bigger than one tile."""
    np_dtype = {"f32": np.float32, "f64": np.float64, "i32": np.int32}[dtype]
    p = program(tile(f"""  buffer a: {dtype}[40,37] global input
  buffer b: {dtype}[37,70] global input
  buffer c: {dtype}[40,70] global output
  buffer d: {dtype}[70,40] global output""", """  stage mm() device {
    c[0:40, 0:70] = gemm(a[0:40, 0:37], b[0:37, 0:70])
    c[0:40, 0:70] += gemm(a[0:40, 0:37], b[0:37, 0:70])
    d[0:70, 0:40] = gemm(b[0:37, 0:70].T, a[0:40, 0:37].T)
  }"""))
    a, b = (RNG.integers(-3, 4, s).astype(np_dtype) for s in ((40, 37), (37, 70)))

    def check(out):
        np.testing.assert_allclose(out["c"], 2 * (a @ b), rtol=1e-5)
        np.testing.assert_allclose(out["d"], (a @ b).T, rtol=1e-5)
    return Spec(p, {"a": a, "b": b}, check, 1e-5, 1e-4)


def reductions(combiner: str) -> Spec:
    """Kept and dropped axes, an empty reduction, a long row, NaN propagation."""
    p = program(tile("""  buffer x: f32[3,70,5] global input
  buffer k: f32[3,1,5] global output
  buffer d: f32[3,70] global output
  buffer e: f32[3,5] global output""", f"""  stage r(i in 0:3) device {{
    k[i, 0:1, 0:5] = reduce_{combiner}(x[i, 0:70, 0:5], axes=[0])
    d[i, 0:70] = reduce_{combiner}(x[i, 0:70, 0:5], axes=[1])
    e[i, 0:5] = reduce_{combiner}(x[i, 0:0, 0:5], axes=[0])
  }}"""))
    x = data((3, 70, 5))
    x[1, 3, 2] = np.nan

    def check(out):
        fn = {"add": np.add, "max": np.maximum, "min": np.minimum}[combiner]
        np.testing.assert_allclose(out["d"], fn.reduce(x, axis=2), rtol=1e-5, atol=1e-5)
        assert np.isnan(out["k"][1, 0, 2])  # NaN propagates, as in NumPy
        assert np.all(out["e"] == {"add": 0.0, "max": -np.inf, "min": np.inf}[combiner])
    return Spec(p, {"x": x}, check)


def segment_max() -> Spec:
    """Segments, an empty one among them (its row is the identity)."""
    offsets = np.array([0, 2, 2, 7], np.int64)
    p = program(tile("""  buffer x: f64[7,40] global input
  buffer off: i64[4] global const
  buffer y: f64[3,40] global output""", """  stage s() device {
    y[0:3, 0:40] = segment_max(x[0:7, 0:40], off[0:4])
  }"""), off=offsets)
    x = data((7, 40), np.float64)

    def check(out):
        np.testing.assert_array_equal(out["y"][1], -np.inf)
        np.testing.assert_array_equal(out["y"][2], x[2:7].max(axis=0))
    return Spec(p, {"x": x}, check)


def gather_scatter(axis: int) -> Spec:
    """Negative indices, and one past the end: padding (zeros read, nothing written)."""
    rows = "0:2, 0:5" if axis == 0 else "0:3, 0:2"
    p = program(tile("""  buffer x: f32[3,4,6] global input
  buffer idx: i32[3,2] global input
  buffer g: f32[3,3,5] global output
  buffer t: f32[3,4,6] global output""", f"""  stage k(i in 0:3) device {{
    g[i, {rows}] = gather(x[i, 0:3, 0:5], idx[i, 0:2], axis={axis})
    t[i, 0:3, 0:5] = scatter(g[i, {rows}], idx[i, 0:2], axis={axis})
  }}"""))
    size = 3 if axis == 0 else 5
    idx = np.array([[0, -1], [size, 1], [2, -size]], np.int32)  # `size`: padding

    def check(out):
        pad = out["g"][1, 0] if axis == 0 else out["g"][1, :, 0]
        np.testing.assert_array_equal(pad, 0.0)
    return Spec(p, {"x": data((3, 4, 6)), "idx": idx}, check)


def copies() -> Spec:
    """A transpose, a reshape, a conversion and a broadcast element-wise `where`."""
    p = program(tile("""  buffer x: f32[2,3,4] global input
  buffer s: f32[4] global input
  buffer t: f32[4,3,2] global output
  buffer r: f32[6,4] global output
  buffer n: i32[2,3,4] global output
  buffer w: f32[2,3,4] global output""", """  stage c() device {
    t[0:4, 0:3, 0:2] = copy(x[0:2, 0:3, 0:4], perm=[2, 1, 0])
    r[0:6, 0:4] = copy(x[0:2, 0:3, 0:4])
    n[0:2, 0:3, 0:4] = convert(x[0:2, 0:3, 0:4])
    w[0:2, 0:3, 0:4] = where(gt(x[0:2, 0:3, 0:4], s[0:4]), exp(x[0:2, 0:3, 0:4]), mul(s[0:4], 2.0))
  }"""))
    x, s = data((2, 3, 4)) * 3, data(4)

    def check(out):
        np.testing.assert_array_equal(out["t"], x.transpose(2, 1, 0))
        np.testing.assert_array_equal(out["n"], x.astype(np.int32))
    return Spec(p, {"x": x, "s": s}, check)


def shift(n: int) -> Spec:
    """NumPy semantics: `y[1:n] = y[0:n-1] + 1` reads the old y (a shift), in any order."""
    p = program(tile(f"""  buffer x: f32[{n}] global input
  buffer y: f32[{n}] global output""", f"""  stage s() device {{
    y[0:{n}] = copy(x[0:{n}])
    y[1:{n}] = add(y[0:{n - 1}], 1.0)
  }}"""))
    x = data(n)

    def check(out):
        np.testing.assert_array_equal(out["y"], np.concatenate([x[:1], x[:n - 1] + 1]))
    return Spec(p, {"x": x}, check)


def overlapping_gather_scatter(n: int) -> Spec:
    """NumPy semantics: a scatter (and a gather) whose source overlaps its destination reads
    the whole source first: `y[1:n+1] = scatter(y[0:n], [0, 1, ...])` shifts y by one."""
    p = program(tile(f"""  buffer x: f32[{n + 1}] global input
  buffer idx: i32[{n}] global input
  buffer y: f32[{n + 1}] global output
  buffer g: f32[{n + 1}] global output""", f"""  stage s() device {{
    y[0:{n + 1}] = copy(x[0:{n + 1}])
    y[1:{n + 1}] = scatter(y[0:{n}], idx[0:{n}], axis=0)
    g[0:{n + 1}] = copy(x[0:{n + 1}])
    g[1:{n + 1}] = gather(g[0:{n}], idx[0:{n}], axis=0)
  }}"""))
    x, idx = data(n + 1), np.arange(n, dtype=np.int32)

    def check(out):
        np.testing.assert_array_equal(out["y"], np.concatenate([x[:1], x[:n]]))
        np.testing.assert_array_equal(out["g"], np.concatenate([x[:1], x[:n]]))
    return Spec(p, {"x": x, "idx": idx}, check)


def loops_ifs_polygons() -> Spec:
    """A loop of step 2 over an `if` whose arms are polygon stages, then a loop counting down."""
    p = program(tile("""  buffer x: f32[6,6] global input
  buffer y: f32[6,6] global output""", """  for s in 0:4 step 2 sequential host {
    if s < 2 {
      stage tri(i in 0:6, j in i:6) device {
        y[i, j] = add(x[i, j], 1.0)
      }
    } else {
      stage low(i in 1:6, j in 0:i) device {
        y[i, j] = mul(x[i, j], 2.0)
      }
    }
  }
  for s in 3:-1 step -1 sequential host {
    stage back(i in 0:1) device {
      y[s, 0] = add(y[s, 0], 1.0)
    }
  }"""))
    x = data((6, 6))

    def check(out):
        want = np.triu(x + 1) + np.tril(x * 2, -1)
        want[:4, 0] += 1
        np.testing.assert_allclose(out["y"], want, rtol=1e-6)
    return Spec(p, {"x": x}, check)
