"""Gathers and scatters over a stage box run as one `np.take` / one indexed assignment of
whole rows (`rows`) whenever the table's strides allow it and every index is in range, and
give the per-point (pointwise) executor's results either way: tables shared by every point or
one per point, stepping backwards, along a later axis, scatters into one shared table,
destinations that are not contiguous or not views, and indices out of range (negative
ones count from the end, as in NumPy; too large ones raise)."""

from __future__ import annotations

import numpy as np
import pytest

from fractal.backends.cpu import CpuExecutable, ops
from fractal.lang.errors import LengthError
from fractal.backends.cpu.rows import flat_rows, row_view
from fractal.lower import parse_tile_program

from fractal.backends.pointwise import run_pointwise
from .programs import with_data

RNG = np.random.default_rng(7)


def program(buffers: str, body: str, **data):
    """The verified program, `data` the contents of const buffers the text leaves out."""
    return with_data(parse_tile_program("tile @t {\n" + buffers + "\n" + body + "\n}"), data).verify()


def same_as_pointwise(p, inputs):
    """Runs `p` batched (twice, reusing the executable) and point by point; outputs must be equal."""
    exe = CpuExecutable(p)
    want = run_pointwise(p, inputs)
    for _ in range(2):
        got = exe.run(inputs)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    return got


@pytest.fixture
def row_calls(monkeypatch):
    """The calls of `flat_rows` by gathers and scatters: how often the row path ran."""
    calls, real = [], ops.flat_rows

    def spy(*args):
        calls.append(args)
        return real(*args)
    monkeypatch.setattr(ops, "flat_rows", spy)
    return calls


# --- row_view ---------------------------------------------------------------------------------------

def test_row_view_numbers_the_rows_of_every_lead_position():
    """Lead axes stepping by whole rows (backwards, or not at all) merge into one row axis:
    `rows[offsets[p] + i]` is `x[p][i]`, and `flat_rows` adds the indices to the offsets."""
    base = np.arange(20 * 4).reshape(20, 4)
    rs, cs = base.strides
    x = np.lib.stride_tricks.as_strided(base[12], (3, 2, 4, 4), (-2 * rs, 0, rs, cs))  # x[a, b, t] = base[12 - 2a + t]
    rows, offsets = row_view(x, 2)
    offsets = np.broadcast_to(offsets, (3, 2))
    for a, b, t in np.ndindex(3, 2, 4):
        np.testing.assert_array_equal(rows[offsets[a, b] + t], x[a, b, t])
    index = RNG.integers(0, 4, (3, 2, 5))
    flat = flat_rows(offsets, index, (3, 2), 2)
    np.testing.assert_array_equal(rows[flat], np.array([[x[a, b][index[a, b]] for b in range(2)] for a in range(3)]))


def test_row_view_needs_lead_strides_in_whole_rows():
    table = np.zeros((4, 6, 3))
    assert row_view(table[:, 1:5], 1) is not None  # lead stride 6 rows
    assert row_view(table.transpose(1, 0, 2), 1) is None  # lead stride 1/6 of a row
    shared = np.broadcast_to(table, (5,) + table.shape)
    rows, offsets = row_view(shared, 1)
    assert offsets is None and rows.shape == table.shape


# --- gathers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("index", [[[2, 0], [1, 1], [0, 2]], [[2, -1], [1, -3], [0, 2]]])
def test_gather_from_one_shared_table_and_from_one_table_per_point(index, row_calls):
    """`x[0:3, 0:4]` is the same table for every point (stride 0 over the box); `x[3 - i]`
    is one table per point, stepping backwards.  Negative indices fall back to the general
    path and count from the end, as in NumPy."""
    x, idx = RNG.standard_normal((4, 3, 4)).astype(np.float32), np.array(index)
    p = program("""  buffer x: f32[4,3,4] global input
  buffer idx: i64[3,2] global const
  buffer g: f32[3,2,4] global output
  buffer h: f32[3,3,2] global output""", """  stage k(i in 0:3) device {
    g[i, 0:2, 0:4] = gather(x[0, 0:3, 0:4], idx[i, 0:2], axis=0)
    h[i, 0:3, 0:2] = gather(x[3 - i, 0:3, 0:4], idx[i, 0:2], axis=1)
  }""", idx=idx)
    out = same_as_pointwise(p, {"x": x})
    for i in range(3):
        np.testing.assert_array_equal(out["g"][i], x[0][idx[i]])
        np.testing.assert_array_equal(out["h"][i], x[3 - i][:, idx[i]])
    assert len(row_calls) == (4 if (idx >= 0).all() else 0)


def test_gather_into_a_strided_or_fancy_indexed_destination():
    """A dst that is not contiguous (every other column) gets a copy; a dst indexed by
    `i mod 3` is assigned through fancy indexing."""
    x, idx = RNG.standard_normal((50, 8)), RNG.integers(0, 50, (6, 4)).astype(np.int32)
    p = program("""  buffer x: f64[50,8] global input
  buffer idx: i32[6,4] global const
  buffer g: f64[6,4,16] global output
  buffer f: f64[3,4,8] global output""", """  stage k(i in 0:6) device {
    g[i, 0:4, 0:16:2] = gather(x[0:50, 0:8], idx[i, 0:4], axis=0)
  }
  stage m(i in 0:3) device {
    f[(i + 1) mod 3, 0:4, 0:8] = gather(x[0:50, 0:8], idx[i, 0:4], axis=0)
  }""", idx=idx)
    out = same_as_pointwise(p, {"x": x})
    np.testing.assert_array_equal(out["g"][:, :, 0::2], x[idx])
    np.testing.assert_array_equal(out["f"][(np.arange(3) + 1) % 3], x[idx[:3]])


def test_a_gathers_padding_index_reads_zeros_on_every_path(row_calls):
    """One past the end (5 rows: index 5) is the padding of a shorter list: its row reads
    zeros, on the row path (a table per point), with one shared index vector and through
    fancy indexing (a dst indexed by `i mod 3`), as the pointwise executor says."""
    x = RNG.standard_normal((5, 2)).astype(np.float32)
    idx = np.array([[0, 5, 3], [5, 5, 1], [4, 2, 5]], np.int64)
    p = program("""  buffer x: f32[5,2] global input
  buffer idx: i64[3,3] global const
  buffer shared: i64[3] global const = [2, 5, 0]
  buffer g: f32[3,3,2] global output
  buffer s: f32[3,3,2] global output
  buffer f: f32[3,3,2] global output""", """  stage k(i in 0:3) device {
    g[i, 0:3, 0:2] = gather(x[0:5, 0:2], idx[i, 0:3], axis=0)
    s[i, 0:3, 0:2] = gather(x[0:5, 0:2], shared[0:3], axis=0)
    f[(i + 1) mod 3, 0:3, 0:2] = gather(x[0:5, 0:2], idx[i, 0:3], axis=0)
  }""", idx=idx)
    out = same_as_pointwise(p, {"x": x})
    padded = np.concatenate([x, np.zeros((1, 2), np.float32)])
    np.testing.assert_array_equal(out["g"], padded[idx])
    np.testing.assert_array_equal(out["s"], np.broadcast_to(padded[[2, 5, 0]], (3, 3, 2)))
    np.testing.assert_array_equal(out["f"][(np.arange(3) + 1) % 3], padded[idx])
    assert row_calls, "the row path ran"


def test_an_index_out_of_range_raises_a_length_error():
    """Past the end and its padding (or before minus the length) is an error of the program's
    data, said as such (a compiled function adds the line of the `gather` it came from)."""
    for bad in ([1, 6], [-6, 0]):
        p = program(f"""  buffer x: f32[5,2] global input
  buffer idx: i64[2] global const = {bad}
  buffer g: f32[2,2] global output""", """  stage k() device {
    g[0:2, 0:2] = gather(x[0:5, 0:2], idx[0:2], axis=0)
  }""")
        with pytest.raises(LengthError, match="gather: an index is out of range for its list"):
            CpuExecutable(p).run({"x": np.zeros((5, 2), np.float32)})


# --- scatters ---------------------------------------------------------------------------------------

def test_scatter_into_one_table_per_point_and_into_one_shared_table(row_calls):
    """conv2d's window scatter (a table per point, points 3 rows apart) and grid_rnn's
    (every point writes its own rows of one shared table, stride 0 over the box)."""
    src = RNG.standard_normal((4, 2, 5)).astype(np.float32)
    shared = RNG.permutation(8).reshape(4, 2)
    p = program("""  buffer src: f32[4,2,5] global input
  buffer idx: i64[4,2] global const = [[0, 2], [1, 0], [2, 1], [1, 2]]
  buffer shared_idx: i64[4,2] global const
  buffer t: f32[12,5] global output
  buffer s: f32[8,5] global output""", """  stage k(i in 0:4) device {
    t[3*i:3*i + 3, 0:5] = scatter(src[i, 0:2, 0:5], idx[i, 0:2], axis=0)
    s[0:8, 0:5] = scatter(src[i, 0:2, 0:5], shared_idx[i, 0:2], axis=0)
  }""", shared_idx=shared)
    idx = p.buffer("idx").data.value
    out = same_as_pointwise(p, {"src": src})
    for i in range(4):
        np.testing.assert_array_equal(out["t"][3 * i + idx[i]], src[i])
        np.testing.assert_array_equal(out["s"][shared[i]], src[i])
    assert len(row_calls) == 4  # two ops, two runs


def test_scatter_along_a_later_axis(row_calls):
    """Along axis 1 of a row-major table the rows are single elements (the row path); in a
    column-major layout the lead axis steps by less than a row (the general path)."""
    p = program("""  buffer src: f64[3,4,2] global input
  buffer idx: i32[3,2] global const = [[4, 0], [1, 3], [2, 0]]
  buffer t: f64[3,4,5] global output
  buffer c: f64[3,4,5] global output layout(0,2,1)""", """  stage k(i in 0:3) device {
    t[i, 0:4, 0:5] = scatter(src[i, 0:4, 0:2], idx[i, 0:2], axis=1)
    c[i, 0:4, 0:5] = scatter(src[i, 0:4, 0:2], idx[i, 0:2], axis=1)
  }""")
    src = RNG.standard_normal((3, 4, 2))
    out = same_as_pointwise(p, {"src": src})
    for name in "tc":
        np.testing.assert_array_equal(out[name][0][:, [4, 0]], src[0])
        np.testing.assert_array_equal(out[name][2][:, [2, 0]], src[2])
    assert len(row_calls) == 2  # t only, on two runs


def test_a_scatter_skips_its_padding_entries(row_calls):
    """An index one past the end (5 along an axis of 5) is padding: it writes nothing (a ragged
    list shorter than its batch's longest), on the row path's table (only the other rows
    assigned, as conv2d's window scatters need) and the general path's."""
    p = program("""  buffer src: f64[3,4,2] global input
  buffer idx: i32[3,2] global const = [[4, 0], [1, 5], [5, 5]]
  buffer t: f64[3,4,5] global output
  buffer c: f64[3,4,5] global output layout(0,2,1)""", """  stage k(i in 0:3) device {
    t[i, 0:4, 0:5] = scatter(src[i, 0:4, 0:2], idx[i, 0:2], axis=1)
    c[i, 0:4, 0:5] = scatter(src[i, 0:4, 0:2], idx[i, 0:2], axis=1)
  }""")
    src = RNG.standard_normal((3, 4, 2))
    out = same_as_pointwise(p, {"src": src})
    for name in "tc":
        np.testing.assert_array_equal(out[name][0][:, [4, 0]], src[0])
        np.testing.assert_array_equal(out[name][1][:, 1], src[1][:, 0])
        assert (out[name][1][:, [0, 2, 3, 4]] == 0).all() and (out[name][2] == 0).all()
    assert len(row_calls) == 2  # t on the row path, on two runs
