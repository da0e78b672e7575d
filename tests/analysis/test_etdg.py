"""The ETDG itself: buffers, blocks and their nesting, ops, access maps, text and drawings.

* Buffers: program inputs are named after the function's parameters (`params.w`),
  combinators add intermediate (map results) and state (scan/fold/reduce) buffers.
* Blocks nest like the program (`parent` / `children`), ops belong to blocks.
* Accesses carry exact isl maps; a few are compared with hand-written maps
  (`isl.Map(expected).is_equal(...)`), and every access operator of the
  language is checked against the interpreter: the points of the map (iteration
  -> element read) are exactly the elements the interpreter puts at those
  iterations, each input element carrying a unique value that identifies it.
* `str(etdg)` is stable and complete, `to_dot()` is DOT with one cluster per
  block, `to_svg()` needs Graphviz, `_repr_html_` falls back to text.
* `ft.explain` says what is parallel, what carries what, the wavefront and the reuse.
"""

from __future__ import annotations

import functools
import html
import re
import shutil

import islpy as isl
import numpy as np
import pytest

import fractal as ft
from examples import zoo


@functools.lru_cache(maxsize=None)
def zoo_analysis(name: str, overrides: tuple = ()):
    m = zoo.load(name)
    return ft.analyze(m.model, *m.inputs(dict(m.CONFIGS["small"], **dict(overrides))))


def lstm():
    """Stacked LSTM, depth 3 (so that "layer > 0" is more than one layer), length 4, batch 2."""
    return zoo_analysis("stacked_lstm", (("depth", 3), ("length", 4), ("batch", 2)))


def reads(etdg, buffer, block=None):
    return [a for a in etdg.accesses if a.kind == "read" and a.buffer == buffer
            and (block is None or a.block == block)]


def writes(etdg, buffer):
    return [a for a in etdg.accesses if a.kind == "write" and a.buffer == buffer]


def union(accesses) -> isl.Map:
    maps = [isl.Map(a.map) for a in accesses]
    assert maps, "no access"
    out = maps[0]
    for m in maps[1:]:
        out = out.union(m)
    return out


def same_map(got: isl.Map, expected: str) -> bool:
    """Equal as relations (dim names and the way isl prints them do not matter)."""
    return got.is_equal(isl.Map(expected))


# -- buffers ----------------------------------------------------------------------------------


def test_input_buffers_are_named_after_the_parameters():
    """`model(batch, params: LSTMParams)`: batch, params.w, params.u, params.b, with their list extents;
    the batch is ragged at the time level only (3 sequences, lengths up to 4)."""
    g = lstm().etdg
    inputs = {b.name: b for b in g.buffers if b.kind == "input"}
    assert set(inputs) == {"batch", "params.w", "params.u", "params.b"}
    assert inputs["batch"].extents == (2, 4) and inputs["batch"].ragged == (False, True)
    assert all(inputs[f"params.{p}"].extents == (3,) for p in "wub")
    assert inputs["params.w"].leaf.shape == (8, 32)      # [H, 4H], H = 8
    assert inputs["params.b"].leaf.shape == (1, 32)


def test_state_buffers_of_the_stacked_lstm():
    """The scan's two states, h and c, one element per (layer, sample, step); the fold's state
    (the batch list) is an alias of the layer's h outputs, so it has no buffer of its own."""
    g = lstm().etdg
    states = [b for b in g.buffers if b.kind == "state"]
    assert len(states) == 2
    assert all(b.extents == (3, 2, 4) and b.leaf.shape == (1, 8) for b in states)
    assert {b.kind for b in g.buffers} == {"input", "state"}
    for b in states:  # written once, by the block, at its own iteration
        (w,) = writes(g, b.name)
        assert same_map(isl.Map(w.map), "{ [l, b, t] -> [l, b, t] : 0 <= l < 3 and 0 <= b < 2 and 0 <= t < 4 }")


def test_intermediate_buffers_are_map_results():
    """bigru (2 layers): the concat map writes an intermediate [1, 2H] per (sample, layer, step);
    the two scans write their h states; the fold's output is that intermediate."""
    g = zoo_analysis("bigru", (("depth", 2),)).etdg
    (inter,) = [b for b in g.buffers if b.kind == "intermediate"]
    assert inter.extents == (3, 2, 5) and inter.leaf.shape == (1, 8)
    (w,) = writes(g, inter.name)
    assert w.block == 3
    assert len([b for b in g.buffers if b.kind == "state"]) == 2
    names = {b.name for b in g.buffers}
    assert set(g.outputs) <= names, "the outputs must be buffers of the graph"
    assert inter.name in g.outputs


@pytest.mark.parametrize("name", zoo.MODELS)
def test_every_access_names_a_buffer_of_the_graph(name):
    """No access (nor output) refers to a buffer the graph does not list (aliases are resolved);
    every non-input buffer is written by exactly one block."""
    g = zoo_analysis(name).etdg
    names = {b.name for b in g.buffers}
    assert len(names) == len(g.buffers)
    assert {a.buffer for a in g.accesses} <= names
    assert set(g.outputs) <= names and g.outputs
    for b in g.buffers:
        writers = {a.block for a in writes(g, b.name)}
        if b.kind == "input" or b.kind == "const":
            assert not writers
        elif writers:
            assert len(writers) == 1


# -- blocks, nesting, ops -----------------------------------------------------------------------


def test_blocks_nest_like_the_program():
    """dilated_lstm: the batch map is block 0 with one child per layer, each with 3 dims."""
    g = zoo_analysis("dilated_lstm").etdg
    assert [b.id for b in g.blocks] == [0, 1, 2, 3]
    assert g.blocks[0].parent is None and g.blocks[0].children == (1, 2, 3)
    for b in g.blocks[1:]:
        assert b.parent == 0 and b.children == ()
        assert b.dims[:1] == g.blocks[0].dims
    assert g.subtree(0) == {0, 1, 2, 3} and g.subtree(2) == {2}


def test_ops_belong_to_their_block():
    """The LSTM cell's ops (2 GEMMs, 3 sigmoids, 2 tanh ...) are ops of the single block, in order;
    the block's location is the fold in the model's source."""
    g = lstm().etdg
    (blk,) = g.blocks
    assert blk.ops == tuple(range(len(g.ops)))
    kinds = [g.ops[i].op for i in blk.ops]
    assert kinds.count("matmul") == 2 and kinds.count("sigmoid") == 3 and kinds.count("tanh") == 2
    assert all(g.ops[i].block == 0 for i in blk.ops)
    assert blk.loc.file.endswith("stacked_lstm.py")
    assert all(a.op in blk.ops for a in g.accesses if a.kind == "read")


# -- access maps of the stacked LSTM, exactly -------------------------------------------------

DOM = "0 <= l < 3 and 0 <= b < 2 and 0 <= t < 4"


def test_lstm_reads_each_layers_weights():
    """Cell (l, b, t) reads W[l], U[l], b[l]: `{ [l, b, t] -> [l] }` on the whole domain."""
    g = lstm().etdg
    for p in ("params.w", "params.u", "params.b"):
        assert same_map(union(reads(g, p)), f"{{ [l, b, t] -> [l] : {DOM} }}"), p


def test_lstm_reads_the_batch_only_at_layer_0():
    g = lstm().etdg
    assert same_map(union(reads(g, "batch")), f"{{ [l, b, t] -> [b, t] : l = 0 and {DOM} }}")


def test_lstm_reads_the_previous_layer_and_the_previous_step():
    """Layer l > 0 reads h[l-1][b][t] (the fold's state, element by element, not the whole
    previous layer); step t > 0 reads h and c of step t-1.  Both are carried-state reads."""
    g = lstm().etdg
    h_and_c = [b.name for b in g.buffers if b.kind == "state"]
    prev_layer = f"{{ [l, b, t] -> [l - 1, b, t] : l >= 1 and {DOM} }}"
    prev_step = f"{{ [l, b, t] -> [l, b, t - 1] : t >= 1 and {DOM} }}"
    layer_reads = [a for s in h_and_c for a in reads(g, s) if same_map(isl.Map(a.map), prev_layer)]
    assert len({a.buffer for a in layer_reads}) == 1, "only h feeds the next layer"
    h = layer_reads[0].buffer
    for s in h_and_c:
        expected = isl.Map(prev_step).union(isl.Map(prev_layer)) if s == h else isl.Map(prev_step)
        assert union(reads(g, s)).is_equal(expected), s
        assert all(a.carried and not a.data_dependent for a in reads(g, s))


def test_a_scan_output_read_by_another_block_is_not_a_carried_read():
    """bigru: the concat map reads the forward scan's states as a finished list (not the
    previous step's state of its own scan)."""
    g = zoo_analysis("bigru").etdg
    concat = g.blocks[3]
    state_reads = [a for a in g.block_accesses(concat.id) if a.kind == "read"]
    assert state_reads and not any(a.carried for a in state_reads)
    scan_reads = [a for a in g.block_accesses(1) if a.kind == "read" and a.buffer.startswith("state")]
    assert scan_reads and all(a.carried for a in scan_reads)


def test_reverse_scan_reads_its_input_backwards():
    """bigru: the backward scan's dim counts execution steps, so step q reads x[n-1-q]."""
    g = zoo_analysis("bigru").etdg
    assert g.blocks[2].dims[2].reverse
    assert same_map(union(reads(g, "batch", block=2)),
                    "{ [b, l, q] -> [b, 4 - q] : 0 <= b < 3 and l = 0 and 0 <= q < 5 }")
    assert same_map(union(reads(g, "batch", block=1)),
                    "{ [b, l, t] -> [b, t] : 0 <= b < 3 and l = 0 and 0 <= t < 5 }")


# -- every access operator: the map is exactly what the interpreter reads --------------------


class Encoded:
    """Input lists whose elements are [1]-tensors with unique values identifying (buffer, index)."""

    def __init__(self):
        self.lookup: dict[float, tuple[str, tuple]] = {}
        self.next = 1.0

    def _leaf(self, name, index):
        v = self.next
        self.next += 1.0
        self.lookup[v] = (name, index)
        return np.array([v])

    def list(self, name, n):
        return ft.fractal([self._leaf(name, (i,)) for i in range(n)])

    def nested(self, name, lengths):
        return ft.fractal([[self._leaf(name, (i, j)) for j in range(m)] for i, m in enumerate(lengths)],
                          type=ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1,), ft.float64]]])


def _leaves(x, prefix=()):
    if isinstance(x, ft.FractalTensor):
        for i in range(len(x)):
            yield from _leaves(x[i], prefix + (i,))
    else:
        yield prefix, float(np.asarray(x).reshape(-1)[0])


def interpreter_reads(enc: Encoded, result) -> set:
    """{(buffer, iteration, index)} from the values the program returned (0: a pad element)."""
    results = result if isinstance(result, tuple) else (result,)
    out = set()
    for r in results:
        for pos, v in _leaves(r):
            if v != 0.0 and v in enc.lookup:
                name, index = enc.lookup[v]
                out.add((name, pos, index))
    return out


def map_points(m: isl.Map) -> set:
    """{(iteration, element)}: every pair of the (bounded) map."""
    n_in, n = m.dim(isl.dim_type.in_), m.dim(isl.dim_type.in_) + m.dim(isl.dim_type.out)
    pts = []
    m.wrap().foreach_point(lambda p: pts.append(
        tuple(p.get_coordinate_val(isl.dim_type.set, k).to_python() for k in range(n))))
    return {(p[:n_in], p[n_in:]) for p in pts}


def etdg_reads(etdg, names) -> set:
    out = set()
    for name in names:
        for a in reads(etdg, name):
            assert not a.data_dependent, (name, a.map)
            out |= {(name, i, o) for i, o in map_points(isl.Map(a.map))}
    return out


def read_all(xs, depth):
    """Read every element of a list nested `depth` deep with one op each, keeping the nesting."""
    if depth == 1:
        return ft.map(lambda x: x * 1.0, xs)
    return ft.map(lambda inner: read_all(inner, depth - 1), xs)

# op name -> (program, inputs(enc) -> args, the input buffers it reads); each program ends
# in maps whose element ops read exactly the elements the access operator selects
ACCESS_PROGRAMS = {
    "index": (lambda xss: read_all(xss[1], 1), lambda e: (e.nested("xss", [3, 4, 4]),), ["xss"]),
    "index_negative": (lambda xss: read_all(xss[-1], 1), lambda e: (e.nested("xss", [4, 4, 4]),), ["xss"]),
    "slice": (lambda xs: read_all(xs[1:7:2], 1), lambda e: (e.list("xs", 8),), ["xs"]),
    "slice_negative_step": (lambda xs: read_all(xs[6:0:-2], 1), lambda e: (e.list("xs", 8),), ["xs"]),
    "reverse": (lambda xs: read_all(ft.reverse(xs), 1), lambda e: (e.list("xs", 6),), ["xs"]),
    "gather": (lambda xs: read_all(ft.gather(xs, [3, 0, 3, -1]), 1), lambda e: (e.list("xs", 6),), ["xs"]),
    "window": (lambda xs: read_all(ft.window(xs, 3, stride=2, dilation=2, padding=1), 2),
               lambda e: (e.list("xs", 9),), ["xs"]),
    "window_of_lists": (lambda xss: read_all(ft.window(xss, 2, stride=1, dilation=2), 3),
                        lambda e: (e.nested("xss", [2, 2, 2, 2, 2]),), ["xss"]),
    "window_causal": (lambda xs: read_all(ft.window(xs, 3, dilation=2, padding=(4, 0)), 2),
                      lambda e: (e.list("xs", 6),), ["xs"]),
    "window_of_lists_padded": (lambda xss: read_all(ft.window(xss, 2, padding=(1, 2)), 3),
                               lambda e: (e.nested("xss", [2, 2, 2]),), ["xss"]),
    "shifted_window": (lambda xs: read_all(ft.shifted_window(xs, 3, dilation=2), 2),
                       lambda e: (e.list("xs", 5),), ["xs"]),
    "dilate": (lambda xs: read_all(ft.dilate(xs, 3), 2), lambda e: (e.list("xs", 7),), ["xs"]),
    "interleave": (lambda xss: read_all(ft.interleave(xss), 1), lambda e: (e.nested("xss", [2, 2, 2]),), ["xss"]),
    "dilate_interleave": (lambda xs: read_all(ft.interleave(ft.dilate(xs, 3)), 1),
                          lambda e: (e.list("xs", 8),), ["xs"]),
    "join": (lambda xs, ys: read_all(ft.join(xs, ys), 1), lambda e: (e.list("xs", 3), e.list("ys", 2)),
             ["xs", "ys"]),
    "flatten": (lambda xss: read_all(ft.flatten(xss), 1), lambda e: (e.nested("xss", [4, 4, 4]),), ["xss"]),
    "split": (lambda xs: read_all(ft.split(xs, 3), 2), lambda e: (e.list("xs", 7),), ["xs"]),
    "product": (lambda xs, ys: ft.map(lambda row: ft.map(lambda p: (p[0] * 1.0, p[1] * 1.0), row),
                                      ft.product(xs, ys)),
                lambda e: (e.list("xs", 3), e.list("ys", 2)), ["xs", "ys"]),
    "repeat": (lambda xs: read_all(ft.repeat(xs, 3), 2), lambda e: (e.list("xs", 4),), ["xs"]),
    "zip": (lambda xs, ys: ft.map(lambda p: (p[0] * 1.0, p[1] * 1.0), ft.zip(xs, ys)),
            lambda e: (e.list("xs", 4), e.list("ys", 4)), ["xs", "ys"]),
    "enumerate": (lambda xs: ft.map(lambda p: p[1] * 1.0, ft.enumerate(xs)),
                  lambda e: (e.list("xs", 5),), ["xs"]),
}


def _function(body, n_args):
    # a named function per arity, so that ft.function sees real parameter names
    if n_args == 1:
        def prog(xs):
            return body(xs)
    else:
        def prog(xs, ys):
            return body(xs, ys)
    return ft.function(prog)


@pytest.mark.parametrize("op", sorted(ACCESS_PROGRAMS))
def test_access_operator_map_is_exactly_what_the_interpreter_reads(op):
    body, make, names = ACCESS_PROGRAMS[op]
    enc = Encoded()
    args = make(enc)
    f = _function(body, len(args))
    g = ft.analyze(f, *args).etdg
    # the buffers are the parameters, renamed to the names the encoder used
    params = [b.name for b in g.buffers if b.kind == "input"]
    assert params == ["xs", "ys"][:len(args)]
    renamed = {"xs": names[0], "ys": names[-1]}
    got = {(renamed[b], i, o) for b, i, o in etdg_reads(g, params)}
    want = interpreter_reads(enc, f(*args))
    assert want, "the program reads something"
    assert got == want, f"{op}: map-only {sorted(got - want)[:5]}, interpreter-only {sorted(want - got)[:5]}"


def test_window_map_follows_the_definition():
    """Element (w, k) of window(xs, size, stride, dilation, padding) reads position
    w*stride + k*dilation - before when that is in range, and nothing otherwise (padding
    `p` is `(p, p)`; a causal window pads before only)."""
    for n, size, stride, dilation, padding in [(9, 3, 2, 2, 1), (7, 2, 1, 3, 0), (5, 3, 1, 1, 2), (6, 4, 3, 1, 1),
                                               (6, 3, 1, 2, (4, 0)), (5, 2, 2, 1, (0, 3)), (4, 3, 1, 1, (1, 2))]:
        enc = Encoded()
        xs = enc.list("xs", n)

        @ft.function
        def f(xs):
            return read_all(ft.window(xs, size, stride=stride, dilation=dilation, padding=padding), 2)

        (a,) = reads(ft.analyze(f, xs).etdg, "xs")
        before, after = padding if isinstance(padding, tuple) else (padding, padding)
        count = (n + before + after - dilation * (size - 1) - 1) // stride + 1
        want = {((w, k), (w * stride + k * dilation - before,)) for w in range(count) for k in range(size)
                if 0 <= w * stride + k * dilation - before < n}
        assert map_points(isl.Map(a.map)) == want, (n, size, stride, dilation, padding)


def test_ragged_lists_are_over_approximated_by_the_longest():
    """Extents are maximum lengths: xss[-1] of a ragged xss is iterated up to the longest inner
    list, so the map may name elements the interpreter never reads (the dim says it is ragged);
    everything the interpreter reads is in the map."""
    enc = Encoded()
    xss = enc.nested("xss", [3, 4, 2])

    @ft.function
    def f(xss):
        return read_all(xss[-1], 1)

    g = ft.analyze(f, xss).etdg
    (a,) = reads(g, "xss")
    assert same_map(isl.Map(a.map), "{ [i] -> [2, i] : 0 <= i < 4 }")
    assert g.blocks[0].dims[0].ragged
    want = interpreter_reads(enc, f(xss))
    assert want == {("xss", (i,), (2, i)) for i in range(2)}
    assert {(i, o) for _, i, o in want} <= map_points(isl.Map(a.map))


def test_enumerate_positions_are_a_const_buffer():
    """ft.enumerate's positions are a constant list read at the same iteration."""
    enc = Encoded()
    xs = enc.list("xs", 5)

    @ft.function
    def f(xs):
        return ft.map(lambda p: p[0] * 2, ft.enumerate(xs))

    g = ft.analyze(f, xs).etdg
    (const,) = [b for b in g.buffers if b.kind == "const"]
    assert const.extents == (5,)
    assert same_map(union(reads(g, const.name)), "{ [i] -> [i] : 0 <= i < 5 }")
    assert [int(v[()]) if np.ndim(v) == 0 else int(v) for v in f(xs)] == [0, 2, 4, 6, 8]


def test_gather_with_traced_indices_is_data_dependent():
    """Indices known only at run time: the access may read any element, and says so."""
    enc = Encoded()
    xs = enc.list("xs", 6)
    idx = np.array([3, 0, 5, 3], dtype=np.int64)

    @ft.function
    def f(xs, idx):
        return read_all(ft.gather(xs, idx), 1)

    g = ft.analyze(f, xs, idx).etdg
    (a,) = reads(g, "xs")
    assert a.data_dependent
    assert same_map(isl.Map(a.map), "{ [q] -> [g] : 0 <= q < 4 and 0 <= g < 6 }")
    got = interpreter_reads(enc, f(xs, idx))
    assert got == {("xs", (q,), (int(i),)) for q, i in enumerate(idx)}
    assert {(i, o) for _, i, o in got} <= map_points(isl.Map(a.map))
    assert "data-dependent" in str(g)
    assert "data-dependent" in str(ft.explain(f, xs, idx)).lower()
    static = ft.function(lambda xs: read_all(ft.gather(xs, [3, 0]), 1))
    assert not any(a.data_dependent for a in ft.analyze(static, xs).etdg.accesses)


# -- text, DOT, SVG, HTML ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["stacked_lstm", "transformer_block", "conv2d"])
def test_text_is_stable_and_complete(name):
    """Two analyses of the same program print the same; the text names every block and buffer."""
    m = zoo.load(name)
    args = m.inputs("small")
    g1, g2 = ft.analyze(m.model, *args).etdg, ft.analyze(m.model, *args).etdg
    text = str(g1)
    assert text == str(g2)
    assert text.startswith(f"etdg @{g1.name}")
    for b in g1.buffers:
        assert f"buffer {b.name}:" in text
    for blk in g1.blocks:
        assert re.search(rf"^  block {blk.id}: ", text, re.M), blk.id
    for a in g1.accesses:
        assert f"{a.kind:<5} {a.buffer} {a.map}" in text


def test_dot_has_a_cluster_per_block():
    g = zoo_analysis("dilated_lstm").etdg
    dot = g.to_dot()
    assert dot.startswith("digraph")
    assert dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}")
    for blk in g.blocks:
        assert f"subgraph cluster_{blk.id} " in dot
    for b in g.buffers:
        assert f'"{b.name}" [shape=' in dot
    # clusters nest: the layer blocks are drawn inside the batch block's cluster
    start = dot.index("subgraph cluster_0 ")
    assert all(dot.index(f"subgraph cluster_{c} ") > start for c in (1, 2, 3))
    edges = re.findall(r'^  "[^"]+" -> "[^"]+" \[', dot, re.M)   # (maps contain "->" too)
    assert len(edges) == len(g.accesses)


def test_dot_marks_the_outputs():
    g = lstm().etdg
    assert g.outputs
    for out in g.outputs:
        assert f'"{out}" [shape=doublecircle' in g.to_dot()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_svg_when_graphviz_is_installed():
    g = lstm().etdg
    svg = g.to_svg()
    assert svg is not None and "<svg" in svg and "</svg>" in svg
    assert g._repr_html_() == svg


def test_html_falls_back_to_text_without_graphviz(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    g = lstm().etdg
    assert g.to_svg() is None
    assert g._repr_html_() == f"<pre>{html.escape(str(g))}</pre>"


def test_explain_reports_parallelism_dependences_wavefront_and_reuse():
    m = zoo.load("stacked_lstm")
    args = m.inputs("small")
    report = ft.explain(m.model, *args)
    text = str(report)
    (b,) = ft.analyze(m.model, *args).blocks
    names = [d.name for d in b.dims]
    assert "parallel" in text and names[1] in text              # the batch map is parallel
    for v in b.dependences:                                      # both carried vectors
        assert str(v) in text
    assert "wavefront" in text and f"{names[0]} + {names[2]}" in text and str(b.wavefront.steps) in text
    assert "reuse" in text
    for w in ("params.w", "params.u", "params.b"):
        assert w in text
    page = report._repr_html_()
    assert page.startswith("<") and html.escape(names[0]) in page and "wavefront" in page


def test_explain_says_when_no_dimension_carries_anything():
    """b2b_gemm's reduces are re-associable; sliding window attention has no dependence at all."""
    m = zoo.load("b2b_gemm")
    text = str(ft.explain(m.model, *m.inputs("small"))).lower()
    assert "re-associable" in text
    m = zoo.load("sliding_window_attention")
    text = str(ft.explain(m.model, *m.inputs("small"))).lower()
    assert "wavefront" not in text and "no dependence" in text
