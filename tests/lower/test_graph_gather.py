"""Gathers through ragged index lists and reductions of what they gather (graphs).

`ft.gather(h, idx)` with `idx` a node's list of neighbour indices, inside a `map` over the
neighbour lists, and an `ft.reduce` of the rows: the compiled program agrees with the
interpreter on random ragged graphs (isolated nodes, repeated and negative indices, several
combiners), and it is one gather of every neighbour row plus one segmented reduction, placed
before the node loop, not a copy of the node list per point nor a loop over neighbour slots.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fractal as ft
from fractal.lower import Gather, Stage

INDEX = ft.FractalTensor[ft.FractalTensor[ft.Tensor[(), np.int64]]]
COMBINE = {"add": (lambda a, b: a + b, 0.0), "maximum": (ft.maximum, -np.inf), "minimum": (ft.minimum, np.inf)}


def lists(degrees, rng, n_nodes, negative=False):
    """Neighbour lists of these degrees over `n_nodes` nodes (indices may count from the end)."""
    low = -n_nodes if negative else 0
    flat = rng.integers(low, max(n_nodes, 1), int(sum(degrees))).astype(np.int64) if n_nodes else \
        np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(degrees)]).astype(np.int64)
    return ft.FractalTensor.from_storage(INDEX, flat, (offsets,), range(len(degrees)))


def features(n, width, rng, dtype=np.float64):
    return ft.from_numpy(rng.standard_normal((n, 1, width)).astype(dtype)) if n else \
        ft.fractal([], type=ft.FractalTensor[ft.Tensor[(1, width), dtype]])


def aggregate(name):
    f, identity = COMBINE[name]

    def agg(h, nbrs):
        init = ft.full((1, h.type.elem.shape[1]), identity, h.type.elem.dtype)
        return ft.map(lambda idx: ft.reduce(f, ft.gather(h, idx), init), nbrs)
    return ft.function(agg, name=f"aggregate_{name}")


def compiled(f, *args):
    """The cpu backend's result (compiled explicitly: a call could fall back to the interpreter)."""
    return f.compile(*args).run(*args)


def assert_same(got, want):
    np.testing.assert_allclose(got.to_numpy(pad_value=0), want.to_numpy(pad_value=0), rtol=1e-12, atol=1e-12)


graphs = st.fixed_dictionaries({
    "nodes": st.integers(1, 7), "queries": st.integers(0, 6), "width": st.integers(1, 3),
    "degrees": st.lists(st.integers(0, 4), min_size=6, max_size=6), "negative": st.booleans(),
    "seed": st.integers(0, 2**16)})


@settings(max_examples=30, deadline=None)
@given(g=graphs, combiner=st.sampled_from(sorted(COMBINE)))
def test_segment_reductions_of_gathered_neighbours_agree_with_the_interpreter(g, combiner):
    rng = np.random.default_rng(g["seed"])
    h = features(g["nodes"], g["width"], rng)
    nbrs = lists(g["degrees"][:g["queries"]], rng, g["nodes"], g["negative"])
    f = aggregate(combiner)
    assert_same(compiled(f, h, nbrs), f.interpret(h, nbrs))


@settings(max_examples=20, deadline=None)
@given(g=graphs)
def test_the_gathered_lists_themselves_agree_with_the_interpreter(g):
    rng = np.random.default_rng(g["seed"])
    h = features(g["nodes"], g["width"], rng)
    nbrs = lists(g["degrees"][:g["queries"]], rng, g["nodes"], g["negative"])
    f = ft.function(lambda h, nbrs: ft.map(lambda idx: ft.gather(h, idx), nbrs), name="neighbours")
    out = compiled(f, h, nbrs)
    assert out.lengths() == nbrs.lengths()
    assert_same(out, f.interpret(h, nbrs))


@settings(max_examples=15, deadline=None)
@given(g=graphs)
def test_indices_computed_inside_the_map_gather_per_point_from_one_layout(g):
    """Index lists made inside the node map (shifted by one) are padded per point, their padding
    slots masked; the node list is still laid out once."""
    rng = np.random.default_rng(g["seed"])
    h = features(g["nodes"], g["width"], rng)
    nbrs = lists(g["degrees"][:g["queries"]], rng, g["nodes"])
    zero = np.zeros((1, g["width"]))
    f = ft.function(lambda h, nbrs: ft.map(lambda idx: ft.reduce(
        lambda a, b: a + b, ft.gather(h, ft.map(lambda i: i - 1, idx)), zero), nbrs), name="shifted")
    assert_same(compiled(f, h, nbrs), f.interpret(h, nbrs))


def test_eager_gather_through_a_list_of_indices():
    h = features(4, 2, np.random.default_rng(8))
    nbrs = lists([3, 0], np.random.default_rng(9), 4, negative=True)
    first = ft.gather(h, nbrs[0])
    want = h.to_numpy()[nbrs[0].to_numpy()]
    np.testing.assert_array_equal(first.to_numpy(), want)
    assert len(ft.gather(h, nbrs[1])) == 0


def test_a_graph_layer_is_one_gather_and_one_segment_reduce_before_the_node_loop():
    rng = np.random.default_rng(0)
    h, nbrs = features(5, 2, rng), lists([2, 0, 3, 1, 0], rng, 5)
    program = aggregate("add").compile(h, nbrs).tile_ir
    text = str(program)
    assert text.count("segment_add(") == 1 and "sequential" not in text
    (first,) = [s for s in program.body if isinstance(s, Stage) and "segment_add(" in str(s)]
    gathers = [op for op in first.body if isinstance(op, Gather) and op.src.buffer == "in_h_0"]
    assert len(gathers) == 1 and gathers[0].dst.shape[0] == 6  # every neighbour row, once, no padding


def test_max_of_no_neighbours_is_the_initial_value():
    h, nbrs = features(3, 2, np.random.default_rng(1)), lists([0, 2, 0], np.random.default_rng(2), 3)
    out = compiled(aggregate("maximum"), h, nbrs).to_numpy()
    assert np.all(out[[0, 2]] == -np.inf) and np.all(np.isfinite(out[1]))


def test_a_fold_keeps_its_order_and_its_loop():
    """Only `reduce` declares its function associative: a fold of the same body is not re-associated."""
    rng = np.random.default_rng(3)
    h, nbrs = features(4, 2, rng), lists([3, 1, 0, 2], rng, 4)
    f = ft.function(lambda h, nbrs: ft.map(
        lambda idx: ft.fold(lambda a, b: a + b, ft.gather(h, idx), ft.zeros((1, 2), np.float64)), nbrs), name="folded")
    assert "segment_" not in str(f.compile(h, nbrs).tile_ir)
    assert_same(compiled(f, h, nbrs), f.interpret(h, nbrs))


@settings(max_examples=15, deadline=None)
@given(g=graphs, batch=st.integers(1, 3))
def test_graphs_of_a_batch_each_with_its_own_nodes_gather_per_graph(g, batch):
    """A map over graphs: each point's node list differs (laid out per graph), the index lists are
    padded to the longest and their padding slots read nothing."""
    rng = np.random.default_rng(g["seed"])
    hs = ft.fractal([[rng.standard_normal((1, g["width"])) for _ in range(g["nodes"] + b)] for b in range(batch)])
    nbrs = ft.fractal([[[np.int64(i) for i in rng.integers(0, g["nodes"] + b, d)] for d in g["degrees"]]
                       for b in range(batch)], type=ft.FractalTensor[INDEX])
    zero = np.zeros((1, g["width"]))

    @ft.function
    def per_graph(hs, nbrs):
        return ft.map(lambda h, ns: ft.map(lambda idx: ft.reduce(lambda a, b: a + b, ft.gather(h, idx), zero), ns),
                      hs, nbrs)
    assert_same(compiled(per_graph, hs, nbrs), per_graph.interpret(hs, nbrs))


@pytest.mark.parametrize("k", [1, 3])
def test_indices_as_a_tensor_per_point_read_one_layout_of_a_shared_list(k):
    """`gather(h, i)` with a 1-D index tensor per point of a map: h is not copied per point."""
    rng = np.random.default_rng(4)
    h = features(40, 2, rng)
    idx = ft.from_numpy(rng.integers(-40, 40, (30, k)).astype(np.int64))
    f = ft.function(lambda h, idx: ft.map(lambda i: ft.gather(h, i), idx), name="rows_of")
    program = f.compile(h, idx).tile_ir
    assert max(b.shape[0] for b in program.buffers) <= max(40, 30 * k)  # no 30 x 40 copy of h
    assert_same(compiled(f, h, idx), f.interpret(h, idx))


def test_a_graph_of_2000_nodes_compiles_to_buffers_linear_in_its_edges():
    """The issue's GraphSAGE (2,000 nodes, average degree 8) copied the node list at every
    point (64.8 GiB); its buffers now hold a few rows per edge and node."""
    rng = np.random.default_rng(5)
    n, width = 2000, 8
    h, nbrs = features(n, width, rng, np.float32), lists(rng.poisson(8, n), rng, n)
    program = aggregate("add").compile(h, nbrs)
    edges = len(nbrs.compact()[0])
    total = sum(int(np.prod(b.shape)) for b in program.tile_ir.buffers)
    assert total <= 4 * (edges + n) * width
    flat, (offsets,) = nbrs.compact()
    want = np.add.reduceat(np.concatenate([h.to_numpy()[flat, 0], np.zeros((1, width), np.float32)]), offsets[:-1])
    want[np.diff(offsets) == 0] = 0
    np.testing.assert_allclose(program.run(h, nbrs).to_numpy()[:, 0], want, rtol=1e-5, atol=1e-5)


def test_a_gather_per_neighbour_of_a_shared_node_list_does_not_copy_it_per_point():
    """The issue's form: a map over each node's neighbours gathering one row each through a
    1-element index tensor; each of the 300 x max-degree points read the one node list."""
    rng = np.random.default_rng(10)
    n, width = 300, 4
    h, nbrs = features(n, width, rng), lists(rng.poisson(8, n), rng, n)
    zero = np.zeros((1, width))
    f = ft.function(lambda h, nbrs: ft.map(lambda idx: ft.reduce(lambda a, b: a + b, ft.map(
        lambda i: ft.gather(h, ft.reshape(i, (1,)))[0], idx), zero), nbrs), name="per_neighbour")
    program = f.compile(h, nbrs)
    edges, longest = len(nbrs.compact()[0]), max(nbrs.lengths())
    assert sum(int(np.prod(b.shape)) for b in program.tile_ir.buffers) <= 8 * (n * longest + edges) * width
    assert_same(program.run(h, nbrs), aggregate("add").interpret(h, nbrs))


# -- errors -----------------------------------------------------------------------------------

def test_a_neighbour_index_out_of_range_is_a_length_error_at_the_gather_line():
    h = features(3, 2, np.random.default_rng(6))
    bad = ft.FractalTensor.from_storage(INDEX, np.array([0, 3], np.int64), (np.array([0, 1, 2]),), range(2))

    @ft.function
    def neighbours(h, nbrs):
        return ft.map(lambda idx: ft.gather(h, idx), nbrs)  # <- gather
    line = next(i + 1 for i, text in enumerate(open(__file__).read().splitlines()) if text.endswith("# <- gather"))
    for run in (lambda: neighbours(h, bad), lambda: neighbours.interpret(h, bad)):
        with pytest.raises(ft.LengthError, match="out of range") as info:
            run()
        assert info.value.loc.file.endswith("test_graph_gather.py") and info.value.loc.line == line


def test_float_index_lists_are_a_type_error():
    h = features(3, 2, np.random.default_rng(7))
    floats = ft.fractal([[np.float64(0.0)], [np.float64(1.0)]])
    with pytest.raises(ft.FractalTypeError, match="list of integer scalars"):
        ft.function(lambda h, n: ft.map(lambda idx: ft.gather(h, idx), n), name="float_idx")(h, floats)
