"""Sequential loops that are scans (`d(r) = op(d(r - 1), x(r))`) run as one accumulate, or as
one ufunc call per step for wide steps (`scan`), with exactly the step-by-step results: for
every op and operand order, dtype, layout, stage box, direction and stride of r; loops that
only look like scans (overlapping steps, `maximum(x, prev)`, other bodies) run step by step."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractal.backends.cpu import CpuExecutable
from fractal.backends.cpu import scan
from fractal.backends.cpu.scan import match_scan
from fractal.lower import parse_tile_program
from fractal.lower.tile_affine import Aff

from fractal.backends.pointwise import run_pointwise


def program(text: str):
    return parse_tile_program(text).verify()


def loops(p):
    return [s for s in p.body if type(s).__name__ == "Loop"]


def same_as_steps(p, inputs, narrow=None):
    """Batched runs (`scan.NARROW` set to `narrow`) equal the pointwise executor bit for bit."""
    old = scan.NARROW
    scan.NARROW = old if narrow is None else narrow
    try:
        exe, profile = CpuExecutable(p), {}
        want = run_pointwise(p, inputs)
        for _ in range(2):
            got = exe.run(inputs, profile=profile)
            for name in want:
                np.testing.assert_array_equal(got[name], want[name], err_msg=f"{name}\n{p}")
    finally:
        scan.NARROW = old
    return got, profile


def test_a_batch_norm_sum_is_one_accumulate():
    """conv2d's running sum over 500 rows: one `np.add.accumulate`, profiled under its stage."""
    p = program("""tile @t {
  buffer x: f32[500,1,8] global input
  buffer st: f32[501,1,8] global output
  for r in 0:500 sequential host {
    stage add23() device {
      st[r + 1, 0:1, 0:8] = add(st[r, 0:1, 0:8], x[r, 0:1, 0:8])
    }
  }
}""")
    assert match_scan(loops(p)[0])
    x = np.random.default_rng(0).standard_normal((500, 1, 8)).astype(np.float32)
    for narrow in (0, 10**9):  # a ufunc call per step; one accumulate
        got, profile = same_as_steps(p, {"x": x}, narrow)
        np.testing.assert_array_equal(got["st"][1:], np.add.accumulate(x, axis=0))
        assert set(profile) == {"add23"}


@pytest.mark.parametrize("expr, is_scan", [
    ("maximum(x[r, 0:3], st[r, 0:3])", False),  # maximum's NaN handling is not symmetric
    ("mul(x[r, 0:3], st[r, 0:3])", True),
    ("add(st[r, 0:3], st[r, 0:3])", False),  # x must read another buffer
    ("add(st[r + 1, 0:3], x[r, 0:3])", False),  # not the previous step
    ("sub(st[r, 0:3], x[r, 0:3])", False),
])
def test_what_counts_as_a_scan(expr, is_scan):
    p = program(f"""tile @t {{
  buffer x: f64[4,3] global input
  buffer st: f64[6,3] global output
  for r in 0:4 sequential host {{
    stage k() device {{
      st[r + 1, 0:3] = {expr}
    }}
  }}
}}""")
    assert bool(match_scan(loops(p)[0])) == is_scan
    same_as_steps(p, {"x": np.random.default_rng(1).standard_normal((4, 3))})


def test_a_ragged_reduction_is_one_accumulate_per_distinct_length(monkeypatch):
    """rnn_attention's softmax max over each sample's own source positions: the batch is
    sorted by length, so the box shrinks with r; the steps with one box are one phase."""
    p = program("""tile @t {
  buffer x: f32[6,4,1] global input
  buffer st: f32[7,4,1] global output
  for r in 0:6 sequential host active m < 1 + 2*min(1, max(0, 4 - r)) + min(1, max(0, 2 - r)) {
    stage maximum30(m in 0:1 + 2*min(1, max(0, 4 - r)) + min(1, max(0, 2 - r))) device {
      st[r + 1, m, 0:1] = maximum(st[r, m, 0:1], x[r, m, 0:1])
    }
  }
}""")
    assert match_scan(loops(p)[0])
    phases = []
    real = scan._accumulate
    monkeypatch.setattr(scan, "_accumulate", lambda fn, y, xs, nb: (phases.append(y.shape), real(fn, y, xs, nb)))
    x = np.random.default_rng(3).standard_normal((6, 4, 1)).astype(np.float32)
    got, _ = same_as_steps(p, {"x": x})
    assert phases[:3] == [(4, 3, 1), (3, 3, 1), (1, 3, 1)]  # lengths 6, 4, 4, 2: boxes of 4, 3, 1 points
    np.testing.assert_array_equal(got["st"][1:3, :4], np.maximum.accumulate(
        np.concatenate([np.zeros((1, 4, 1), np.float32), x[:2]]), axis=0)[1:])


def test_loops_with_more_than_one_scan_step_or_a_stride_run_step_by_step():
    p = program("""tile @t {
  buffer x: f64[8,3] global input
  buffer st: f64[9,3] global output
  for r in 0:8 step 2 sequential host {
    stage k() device {
      st[r + 1, 0:3] = add(st[r, 0:3], x[r, 0:3])
    }
  }
  for r in 0:8 sequential host {
    stage k2(i in 0:3) device {
      st[r + 1, i] = add(st[r, i], x[r, i])
      st[r + 1, i] = mul(st[r + 1, i], 2.0)
    }
  }
}""")
    assert not any(match_scan(lp) for lp in loops(p))
    same_as_steps(p, {"x": np.random.default_rng(2).standard_normal((8, 3))})


# --- random scans ---------------------------------------------------------------------------------

@st.composite
def scans(draw):
    """A scan loop over a random box, tail, layouts, op, operand order and r coefficients;
    `overlap` steps share elements (the loop must run step by step)."""
    dt = draw(st.sampled_from(["f32", "f64", "i32"]))
    op = draw(st.sampled_from(["add", "mul", "maximum", "minimum"]))
    x_first = op in ("add", "mul") and draw(st.booleans())
    dims = draw(st.lists(st.integers(1, 3), max_size=2))
    ext = dims + [1] * (2 - len(dims))
    tail = [draw(st.integers(1, 3)) for _ in range(2)]
    lo, n = draw(st.integers(0, 2)), draw(st.integers(0, 5))
    # the first dim's bounds may depend on r (a ragged batch: shrinking; or any other way)
    hi = draw(st.sampled_from(["", "max(0, {k} - r)", "max(0, r - {k})", "({k} - r) mod 3", "floor((r + {k}) / 2)"]))
    first = (f"min({ext[0]}, {hi.format(k=draw(st.integers(0, 6)))})" if hi else f"{ext[0]}")
    first_lo = draw(st.sampled_from(["0", "min(1, r)", "min(1, max(0, 2 - r))"])) if hi else "0"
    c, cx = draw(st.sampled_from([1, 2, -1])), draw(st.sampled_from([1, 0, -1, 2]))
    overlap = draw(st.integers(0, 5)) == 0
    if overlap:
        c = 1
    rs = range(lo - 1, lo + n)  # prev(lo) .. d(lo + n - 1)
    off = -min(c * r for r in rs)
    size0 = max(c * r for r in rs) + off + (2 if overlap else 1)
    xs = range(lo, lo + max(n, 1))
    offx = -min(cx * r for r in xs)
    sizex = max(cx * r for r in xs) + offx + (2 if overlap else 1)
    rev = draw(st.booleans())  # the first dim stepping backwards
    dvars = [f"d{k}" if k < len(dims) else "0" for k in range(2)]
    if rev and dims:
        dvars[0] = f"{ext[0] - 1} - d0"
    xvars = [v if draw(st.booleans()) else "0" for v in dvars]  # x may ignore a dim (broadcast)
    ranges = f"0:{tail[0]}, 0:{tail[1]}"

    def region(buf, coeff, offset, index):
        at = Aff((("r", coeff),), offset)
        lead = f"{at}:{at + 2}" if overlap else str(at)
        return f"{buf}[{lead}, {index[0]}, {index[1]}, {ranges}]"

    prev = region("st", c, off - c, dvars)
    xreg = region("x", cx, offx, xvars)
    body = f"{op}({xreg}, {prev})" if x_first else f"{op}({prev}, {xreg})"
    box = ", ".join(f"d{k} in {first_lo if k == 0 else 0}:{first if k == 0 else e}" for k, e in enumerate(dims))
    lx = draw(st.permutations(range(5)))
    ls = draw(st.permutations(range(5)))
    text = f"""tile @t {{
  buffer x: {dt}[{sizex},{ext[0]},{ext[1]},{tail[0]},{tail[1]}] global input layout({",".join(map(str, lx))})
  buffer st: {dt}[{size0},{ext[0]},{ext[1]},{tail[0]},{tail[1]}] global output layout({",".join(map(str, ls))})
  for r in {lo}:{lo + n} sequential host {{
    stage k({box}) device {{
      {region("st", c, off, dvars)} = {body}
    }}
  }}
}}"""
    return text, overlap, draw(st.sampled_from([0, 4, 10**9]))


@settings(max_examples=60, deadline=None)
@given(scans())
def test_random_scans_equal_running_step_by_step(case):
    text, overlap, narrow = case
    p = program(text)
    assert bool(match_scan(loops(p)[0]))  # overlapping steps are caught when the loop runs
    shape = next(b.shape for b in p.buffers if b.name == "x")
    dtype = next(b.dtype for b in p.buffers if b.name == "x")
    x = np.random.default_rng(5).integers(-3, 4, shape).astype(dtype)
    same_as_steps(p, {"x": x}, narrow)
