"""The ETDG analysis of every zoo model (`small` configuration), checked as structure.

For each model the expected analysis is written down block by block and
*derived from the model's program* (the comments say how): the combinator
nest gives the dims (kind, extent = the longest list of the small inputs),
the scan/fold/reduce states and the reads of other iterations' results give
the dependence distance vectors, the dims that carry none are parallel, a
wavefront exists when two or more dims carry dependences that one hyperplane
can order, reduce dims (and only they) are re-associable, and an input buffer
is reused along a dim when two iterations differing only there read a common
element of it.

Conventions (fractal/analysis/analysis.py): blocks are in pre-order, a child
block's dims extend its parent's, a vector's carrying dim is its first
non-zero component, dims of reverse scans count steps in execution order.
Each analysis is computed once per module (cached), a few tens of ms each.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pytest

import fractal as ft
from examples import zoo


@functools.lru_cache(maxsize=None)
def analysis(name: str, overrides: tuple = ()):
    """The analysis of zoo model `name` at its small configuration (with size `overrides`)."""
    m = zoo.load(name)
    cfg = dict(m.CONFIGS["small"], **dict(overrides))
    return ft.analyze(m.model, *m.inputs(cfg))


@dataclass(frozen=True)
class B:
    """The expected analysis of one block."""

    dims: tuple                      # ((kind, extent), ...), outermost first
    parent: int | None               # index (pre-order) of the enclosing block
    deps: frozenset = frozenset()    # distance vectors, internal and external
    parallel: tuple = ()
    wavefront: tuple | None = None   # (hyperplane, steps)
    reuse: dict = field(default_factory=dict)  # input buffer -> dims along which it is re-read
    external: frozenset = frozenset()

    @property
    def reassociable(self):          # exactly the reduce dims, never a fold or a scan
        return tuple(k for k, (kind, _) in enumerate(self.dims) if kind == "reduce")


def deps(*vectors):
    return frozenset(vectors)


def along(names, dims):
    return {n: dims for n in names}


LSTM_W = ("params.w", "params.u", "params.b")
GRID_W = tuple(f"params.{c}.{p}" for c in "xy" for p in ("i2h", "h2h", "b"))
ENC = ("p.encoder.w", "p.encoder.b_i", "p.encoder.u", "p.encoder.b_h")
DEC = ("p.decoder.w", "p.decoder.b_i", "p.decoder.u", "p.decoder.b_h")
FWD = tuple(f"params.fwd.{p}" for p in ("w_i", "b_i", "w_h", "b_h"))
BWD = tuple(f"params.bwd.{p}" for p in ("w_i", "b_i", "w_h", "b_h"))
HEAD_W = ("p.wq", "p.bq", "p.wk", "p.bk", "p.wv", "p.bv", "p.wo")
FFN_W = ("p.ln2_w", "p.ln2_b", "p.w1", "p.b1", "p.w2", "p.b2")

EXPECTED = {
    # stacked_lstm small: depth D=2, length L=5, batch B=3.
    # fold(layers) { map(batch) { scan(time) { cell } } }: each body holds only the next combinator
    # (plus zip/glue), so the nest is ONE block (fold, map, scan).  The fold carries the batch list;
    # step t of layer l reads step t of layer l-1 -> (1,0,0); the scan carries h, c -> (0,0,1);
    # nothing crosses samples, so batch is parallel.  Hyperplane layer + time: 1 + (D-1) + (L-1)
    # = D + L - 1 = 6 steps.  Every cell of layer l reads W[l], U[l], b[l]: reused along batch and
    # time, not along layers.
    "stacked_lstm": [
        B((("fold", 2), ("map", 3), ("scan", 5)), None, deps((1, 0, 0), (0, 0, 1)), (1,),
          ((1, 0, 1), 6), along(LSTM_W, (1, 2))),
    ],
    # dilated_lstm small: depth 3 (dilations 1, 2, 4), length 6, batch 2.
    # map(batch) { per layer k: interleave(map(sub in dilate(seq, 2**k)) { scan(sub) }) }: the batch
    # body holds three maps, so block 0 is the batch map alone and each layer is a child block
    # (batch, sub-sequence map over the d = 2**k sub-lists, scan over ceil(6/d) steps).  Each
    # scan carries its state -> (0,0,1); the sub-sequences are independent -> dim 1 parallel.
    # Layer k+1 reads layer k's output at the same sample only (zero over the shared batch dim,
    # so no vector).  Layer k's cells all read W[k]: reused along batch, sub-sequence (when there
    # are several) and time; block 0 sees them reused along the batch.
    "dilated_lstm": [
        B((("map", 2),), None, deps(), (0,), None, along(LSTM_W, (0,))),
        B((("map", 2), ("map", 1), ("scan", 6)), 0, deps((0, 0, 1)), (0, 1), None, along(LSTM_W, (0, 2))),
        B((("map", 2), ("map", 2), ("scan", 3)), 0, deps((0, 0, 1)), (0, 1), None, along(LSTM_W, (0, 1, 2))),
        B((("map", 2), ("map", 4), ("scan", 2)), 0, deps((0, 0, 1)), (0, 1), None, along(LSTM_W, (0, 1, 2))),
    ],
    # grid_rnn small: depth 2, S=3, T=4, batch 3.
    # map(batch) holds zero_row = map(trg) (block 1) and fold(layers) { scan(rows) { scan(cols) } }
    # (block 2, one chain).  Cell (d,i,j) reads (d-1,i,j) through the fold state (the grid),
    # (d,i-1,j) through the row scan's state and (d,i,j-1) through the column scan's state:
    # (0,1,0,0), (0,0,1,0), (0,0,0,1).  Batch is parallel; the hyperplane d + i + j (0 on batch)
    # gives 1 + 1 + 2 + 3 = 7 steps.  Layer 0 reads grid[i][j] = (src[i], trg[j]) = product:
    # src[i] is re-read along j (dim 3), trg[j] along i (dim 2); weights of layer d are re-read
    # along batch, rows and columns, not along layers.  zero_row reads nothing.
    "grid_rnn": [
        B((("map", 3),), None, deps(), (0,), None, along(GRID_W, (0,))),
        B((("map", 3), ("map", 4)), 0, deps(), (0, 1), None, {}),
        B((("map", 3), ("fold", 2), ("scan", 3), ("scan", 4)), 0,
          deps((0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1)), (0,), ((0, 1, 1, 1), 7),
          {**along(GRID_W, (0, 2, 3)), "src": (3,), "trg": (2,)}),
    ],
    # b2b_gemm small: M/TM = 2 row blocks, N/TN = 4 column panels, K/TK = 2 K blocks.
    # map(a rows) { reduce(n) { acc + reduce(k){...} @ c[n] } }: the N reduce's body has ops beside
    # the inner reduce, so the inner reduce is a child block.  Each reduce carries its accumulator:
    # (0,1) in block 0, (0,0,1) in block 1; the inner reduce at (m,n) does not read the outer
    # accumulator, so n is parallel inside block 1.  Both reduce dims are re-associable.
    # a[m][k] is re-read for every n; b[n][k] and c[n] for every m.
    "b2b_gemm": [
        B((("map", 2), ("reduce", 4)), None, deps((0, 1)), (0,), None, {"a": (1,), "b": (0,), "c": (0,)}),
        B((("map", 2), ("reduce", 4), ("reduce", 2)), 0, deps((0, 0, 1)), (0, 1), None, {"a": (1,), "b": (0,)}),
    ],
    # flash_attention small: batch 2, heads 2, 12/3 = 4 query (and key) blocks.
    # map(batch){ map(heads){ map(query blocks){ o/l of reduce(kv blocks) } } }: the reduce sits
    # beside the o/l ops, so it is a child block.  Only the online-softmax state is carried,
    # (0,0,0,1), re-associable.  Every query block reads all k, v blocks of its head (reuse along
    # the query-block dim); the reduce re-reads its query block at every step.
    "flash_attention": [
        B((("map", 2), ("map", 2), ("map", 4)), None, deps(), (0, 1, 2), None, {"k": (2,), "v": (2,)}),
        B((("map", 2), ("map", 2), ("map", 4), ("reduce", 4)), 0, deps((0, 0, 0, 1)), (0, 1, 2), None,
          {"k": (2,), "v": (2,), "q": (3,)}),
    ],
    # bigbird small: batch 2, 24/4 = 6 blocks, window 3.
    # map(batch) { concat ops (global blocks); map(query blocks) { 2 x map(window) + ops } }.
    # No state anywhere: everything parallel.  Query blocks i and i+1 share window blocks (and all
    # share the global ones): k, v reused along the query-block dim.  The inner maps (kv[j] of the
    # window) compute nothing: the stack in block 1 reads the blocks, so they read nothing.
    "bigbird": [
        B((("map", 2),), None, deps(), (0,), None, {}),
        B((("map", 2), ("map", 6)), 0, deps(), (0, 1), None, {"k": (1,), "v": (1,)}),
        B((("map", 2), ("map", 6), ("map", 3)), 1, deps(), (0, 1, 2), None, {}),
        B((("map", 2), ("map", 6), ("map", 3)), 1, deps(), (0, 1, 2), None, {}),
    ],
    # transformer_block small: batch 2, length 6, heads 2 (pre-norm).
    # map(batch) holds: LN1 map (1); heads map (2) with the q, k, v maps (3, 4, 5) and the query
    # map (6) whose attend has scores map (7), max reduce (8), exp map (9), sum reduce (10),
    # weighted-sum reduce (11); the residual map x + bo (12); the reduce over heads whose body is a
    # map over tokens (13: one chain, reduce x map); the FFN map (14).  The only carried states are
    # the reduces': (0,0,0,1) in 8, 10, 11 and (0,1,0) in 13 (head h's token t adds to the sum of
    # heads < h at token t: tokens stay parallel).  Per-head weights are re-read along batch and
    # tokens, not heads; shared weights along batch and tokens.
    "transformer_block": [
        B((("map", 2),), None, deps(), (0,), None,
          along(("p.ln1_w", "p.ln1_b") + HEAD_W + ("p.bo",) + FFN_W, (0,))),
        B((("map", 2), ("map", 6)), 0, deps(), (0, 1), None, along(("p.ln1_w", "p.ln1_b"), (0, 1))),
        B((("map", 2), ("map", 2)), 0, deps(), (0, 1), None, along(HEAD_W, (0,))),
        B((("map", 2), ("map", 2), ("map", 6)), 2, deps(), (0, 1, 2), None, along(("p.wq", "p.bq"), (0, 2))),
        B((("map", 2), ("map", 2), ("map", 6)), 2, deps(), (0, 1, 2), None, along(("p.wk", "p.bk"), (0, 2))),
        B((("map", 2), ("map", 2), ("map", 6)), 2, deps(), (0, 1, 2), None, along(("p.wv", "p.bv"), (0, 2))),
        B((("map", 2), ("map", 2), ("map", 6)), 2, deps(), (0, 1, 2), None, {"p.wo": (0, 2)}),
        B((("map", 2), ("map", 2), ("map", 6), ("map", 6)), 6, deps(), (0, 1, 2, 3), None, {}),
        B((("map", 2), ("map", 2), ("map", 6), ("reduce", 6)), 6, deps((0, 0, 0, 1)), (0, 1, 2), None, {}),
        B((("map", 2), ("map", 2), ("map", 6), ("map", 6)), 6, deps(), (0, 1, 2, 3), None, {}),
        B((("map", 2), ("map", 2), ("map", 6), ("reduce", 6)), 6, deps((0, 0, 0, 1)), (0, 1, 2), None, {}),
        B((("map", 2), ("map", 2), ("map", 6), ("reduce", 6)), 6, deps((0, 0, 0, 1)), (0, 1, 2), None, {}),
        B((("map", 2), ("map", 6)), 0, deps(), (0, 1), None, {"p.bo": (0, 1)}),
        B((("map", 2), ("reduce", 2), ("map", 6)), 0, deps((0, 1, 0)), (0, 2), None, {}),
        B((("map", 2), ("map", 6)), 0, deps(), (0, 1), None, along(FFN_W, (0, 1))),
    ],
    # rnn_attention small: batch 3, source 5, target 4.
    # map(batch) holds the encoder scan (1), the keys map (2) and the decoder scan (3), whose step
    # holds the scores map (4), max reduce (5), exp map (6), sum reduce (7), normalise map (8) and
    # context reduce (9).  The scans carry their states: (0,1); the reduces (0,0,1).  The decoder
    # reads the encoder's results at the same sample only (no vector).  Weights: encoder's along
    # batch and source time, decoder's and w_q along batch and target time, w_k along batch and
    # source positions, v along batch, target time and source positions.
    "rnn_attention": [
        B((("map", 3),), None, deps(), (0,), None, along(ENC + DEC + ("p.w_q", "p.w_k", "p.v"), (0,))),
        B((("map", 3), ("scan", 5)), 0, deps((0, 1)), (0,), None, along(ENC, (0, 1))),
        B((("map", 3), ("map", 5)), 0, deps(), (0, 1), None, {"p.w_k": (0, 1)}),
        B((("map", 3), ("scan", 4)), 0, deps((0, 1)), (0,), None, along(DEC + ("p.w_q", "p.v"), (0, 1))),
        B((("map", 3), ("scan", 4), ("map", 5)), 3, deps(), (0, 1, 2), None, {"p.v": (0, 1, 2)}),
        B((("map", 3), ("scan", 4), ("reduce", 5)), 3, deps((0, 0, 1)), (0, 1), None, {}),
        B((("map", 3), ("scan", 4), ("map", 5)), 3, deps(), (0, 1, 2), None, {}),
        B((("map", 3), ("scan", 4), ("reduce", 5)), 3, deps((0, 0, 1)), (0, 1), None, {}),
        B((("map", 3), ("scan", 4), ("map", 5)), 3, deps(), (0, 1, 2), None, {}),
        B((("map", 3), ("scan", 4), ("reduce", 5)), 3, deps((0, 0, 1)), (0, 1), None, {}),
    ],
    # conv2d small: batch 2, 8 x 8 images, kernel 3, stride 1, padding 1.
    # map(images) holds the zero row map (1) and the row-window map (2: 10 padded rows -> 8
    # windows), which holds the columns map (3: 8 pixels) and the column-window map whose body is
    # only the K x K reduce (4: one chain, 8 windows x 3 taps).  Then, at top level, the mean and
    # variance reduces over the 2*8*8 = 128 output pixels (5, 6) and the normalising map (7).
    # Only the reduces carry state.  Consecutive row windows share input rows: images re-read
    # along the row-window dim.  The kernel taps and gamma/beta are turned into intermediates at
    # top level (outside every block), so no input is reused inside the blocks besides images.
    "conv2d": [
        B((("map", 2),), None, deps(), (0,), None, {}),
        B((("map", 2), ("map", 8)), 0, deps(), (0, 1), None, {}),
        B((("map", 2), ("map", 8)), 0, deps(), (0, 1), None, {"images": (1,)}),
        B((("map", 2), ("map", 8), ("map", 8)), 2, deps(), (0, 1, 2), None, {"images": (1,)}),
        B((("map", 2), ("map", 8), ("map", 8), ("reduce", 3)), 2, deps((0, 0, 0, 1)), (0, 1, 2), None, {}),
        B((("reduce", 128),), None, deps((1,)), (), None, {}),
        B((("reduce", 128),), None, deps((1,)), (), None, {}),
        B((("map", 2), ("map", 8), ("map", 8)), None, deps(), (0, 1, 2), None, {}),
    ],
    # selective_scan small: batch 2, length 6, d_model 4 in 4 groups.
    # map(batch) holds the projections map over time (1), the channel-group map (2) with its
    # scan over time (3) and read-out map (4), and the output stacking map (5).  Only the scan
    # carries (h): (0,0,1); groups and batch stay parallel.  The projection weights are re-read
    # along batch and time; a_log/d_skip[g] along the batch (and d_skip along time in the
    # read-out); the scan reads only intermediates.
    "selective_scan": [
        B((("map", 2),), None, deps(), (0,), None,
          along(("p.w_delta", "p.b_delta", "p.w_b", "p.w_c", "p.a_log", "p.d_skip"), (0,))),
        B((("map", 2), ("map", 6)), 0, deps(), (0, 1), None, along(("p.w_delta", "p.b_delta", "p.w_b", "p.w_c"), (0, 1))),
        B((("map", 2), ("map", 4)), 0, deps(), (0, 1), None, along(("p.a_log", "p.d_skip"), (0,))),
        B((("map", 2), ("map", 4), ("scan", 6)), 2, deps((0, 0, 1)), (0, 1), None, {}),
        B((("map", 2), ("map", 4), ("map", 6)), 2, deps(), (0, 1, 2), None, {"p.d_skip": (0, 2)}),
        B((("map", 2), ("map", 6)), 0, deps(), (0, 1), None, {}),
    ],
    # retention small (recurrent form): batch 2, heads 2, length 5.
    # map(batch){ map(heads) { projections map; scan over time; read-out map } }: batch x heads is
    # one chain (block 0), three children.  Only the scan carries S: (0,0,1).  Every head re-reads
    # the sample's sequence (batch reused along heads); the head's weights along batch and time.
    "retention": [
        B((("map", 2), ("map", 2)), None, deps(), (0, 1), None,
          {"batch": (1,), **along(("p.wq", "p.wk", "p.wv", "p.gamma"), (0,))}),
        B((("map", 2), ("map", 2), ("map", 5)), 0, deps(), (0, 1, 2), None,
          {"batch": (1,), **along(("p.wq", "p.wk", "p.wv"), (0, 2))}),
        B((("map", 2), ("map", 2), ("scan", 5)), 0, deps((0, 0, 1)), (0, 1), None, {"p.gamma": (0, 2)}),
        B((("map", 2), ("map", 2), ("map", 5)), 0, deps(), (0, 1, 2), None, {}),
    ],
    # bigru small: depth 1 (!), length 5, batch 3.
    # map(batch){ fold(layers){ forward scan; reverse scan; concat map } }: batch x fold is one chain
    # (block 0), three children.  With a single layer the fold never reads a previous layer, so
    # nothing is carried by it (see test_bigru_two_layers for depth 2).  Each scan carries h:
    # (0,0,1) (the reverse scan's dim counts execution steps, so its vector is positive too).
    "bigru": [
        B((("map", 3), ("fold", 1)), None, deps(), (0, 1), None, along(FWD + BWD, (0,))),
        B((("map", 3), ("fold", 1), ("scan", 5)), 0, deps((0, 0, 1)), (0, 1), None, along(FWD, (0, 2))),
        B((("map", 3), ("fold", 1), ("scan", 5)), 0, deps((0, 0, 1)), (0, 1), None, along(BWD, (0, 2))),
        B((("map", 3), ("fold", 1), ("map", 5)), 0, deps(), (0, 1, 2), None, {}),
    ],
    # sliding_window_attention small: batch 2, heads 2, length 8, window 5.
    # map(batch){ map(heads){ key_bias map; query map over windows } }: no state at all.  Queries
    # i and i+1 share 4 of their 5 keys/values: k, v reused along the query dim.
    "sliding_window_attention": [
        B((("map", 2), ("map", 2)), None, deps(), (0, 1), None, {}),
        B((("map", 2), ("map", 2), ("map", 8)), 0, deps(), (0, 1, 2), None, {}),
        B((("map", 2), ("map", 2), ("map", 8)), 0, deps(), (0, 1, 2), None, {"k": (2,), "v": (2,)}),
    ],
    # graphsage small: 7 nodes, neighbour lists of lengths [2, 2, 3, 2, 2, 0, 0], 2 layers.
    # Per layer: map(nodes){ reduce over gather(h, idx) }: the node map (block 0, 2) and its
    # reduce over the longest list, 3 (block 1, 3), which carries its sum: (0, 1).  The gather's
    # indices are run-time data, so any node may read any row of h: h is re-read along the node
    # map and the reduce (layer 1; layer 2 gathers from layer 1's result, not an input); each
    # layer's weights are re-read along the node map.
    "graphsage": [
        B((("map", 7),), None, deps(), (0,), None,
          {"h": (0,), **along(("layers.0.w_self", "layers.0.w_neigh", "layers.0.bias"), (0,))}),
        B((("map", 7), ("reduce", 3)), 0, deps((0, 1)), (0,), None, {"h": (0, 1)}),
        B((("map", 7),), None, deps(), (0,), None,
          along(("layers.1.w_self", "layers.1.w_neigh", "layers.1.bias"), (0,))),
        B((("map", 7), ("reduce", 3)), 2, deps((0, 1)), (0,), None, {}),
    ],
}


def test_every_zoo_model_has_expectations():
    """Adding a model to the zoo without writing down its expected analysis fails here."""
    assert set(EXPECTED) == set(zoo.MODELS)


def _check(name, got, want):
    where = name
    assert len(got.blocks) == len(want), f"{name}: {len(got.blocks)} blocks, expected {len(want)}"
    position = {b.block.id: k for k, b in enumerate(got.blocks)}
    for k, (g, w) in enumerate(zip(got.blocks, want)):
        where = f"{name} block {k}"
        assert tuple((d.kind, d.extent) for d in g.dims) == w.dims, where
        assert (None if g.block.parent is None else position[g.block.parent]) == w.parent, where
        assert g.dependences == w.deps, where
        assert not g.dependences_truncated, where
        assert g.external == w.external, where
        assert g.parallel == w.parallel, where
        assert g.reassociable == w.reassociable, where
        if w.wavefront is None:
            assert g.wavefront is None, where
        else:
            assert g.wavefront is not None, where
            assert (g.wavefront.hyperplane, g.wavefront.steps) == w.wavefront, where
        assert g.reuse == w.reuse, where


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_zoo_model_analysis(name):
    """Blocks, nesting, dims, dependences, parallel dims, wavefront, reduce dims and reuse as derived."""
    _check(name, analysis(name), EXPECTED[name])


# -- properties every analysis of the zoo must have ---------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_analysis_is_self_consistent(name):
    """Vectors fit the dims and point forward; parallel = dims carrying nothing; children extend
    their parent's dims; a wavefront's matrix is unimodular, its hyperplane orders every vector
    and its step count is that of the box."""
    a = analysis(name)
    by_id = {b.block.id: b for b in a.blocks}
    for b in a.blocks:
        n = len(b.dims)
        for v in b.dependences:
            assert len(v) == n and any(v)
            first = next(x for x in v if x)
            assert first > 0, f"{name}: {v} is not lexicographically positive"
        assert b.external <= b.dependences
        carriers = {next(k for k, x in enumerate(v) if x) for v in b.dependences}
        assert b.parallel == tuple(k for k in range(n) if k not in carriers)
        assert set(b.carried) == carriers
        if b.block.parent is not None:
            parent = by_id[b.block.parent]
            assert b.dims[:len(parent.dims)] == parent.dims
        if b.wavefront is not None:
            w = b.wavefront
            mat = np.array(w.matrix)
            assert mat.shape == (n, n) and round(abs(np.linalg.det(mat))) == 1
            assert all(np.dot(w.hyperplane, v) >= 1 for v in b.dependences)
            assert w.steps == 1 + sum(c * (d.extent - 1) for c, d in zip(w.hyperplane, b.dims))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reduce_dims_and_only_they_are_reassociable(name):
    """A reduce's operator is associative (a backend may re-bracket it); a fold's or scan's is not."""
    for b in analysis(name).blocks:
        assert b.reassociable == tuple(k for k, d in enumerate(b.dims) if d.kind == "reduce")
        assert not any(b.dims[k].kind in ("fold", "scan") for k in b.reassociable)


# -- the key expectations, with other sizes where the formula matters -----------------


@pytest.mark.parametrize("depth,length", [(2, 5), (3, 4), (4, 2), (1, 3)])
def test_stacked_lstm_layer_plus_time_wavefront(depth, length):
    """fold x map x scan with {(1,0,0), (0,0,1)}: batch parallel, hyperplane (1,0,1) with
    D + L - 1 steps of up to B * min(D, L) cells, completed to a unimodular matrix.
    With one layer the fold carries nothing and a lone scan needs no wavefront."""
    batch = 3
    (b,) = analysis("stacked_lstm", (("depth", depth), ("length", length), ("batch", batch))).blocks
    assert [d.kind for d in b.dims] == ["fold", "map", "scan"]
    assert [d.extent for d in b.dims] == [depth, batch, length]
    if depth == 1:
        assert b.dependences == {(0, 0, 1)} and b.wavefront is None and b.parallel == (0, 1)
        return
    assert b.dependences == {(1, 0, 0), (0, 0, 1)}
    assert b.parallel == (1,)
    w = b.wavefront
    assert w.hyperplane == (1, 0, 1)
    assert w.steps == depth + length - 1
    assert w.max_parallelism == batch * min(depth, length)
    assert round(abs(np.linalg.det(np.array(w.matrix)))) == 1


def test_stacked_lstm_dims_are_ragged_only_along_time():
    """The batch (3 sequences) and the layers have exact extents; time is a per-sample bound."""
    (b,) = analysis("stacked_lstm").blocks
    assert [d.ragged for d in b.dims] == [False, False, True]
    assert [d.source for d in b.dims[1:]] == ["batch", "batch"]


@pytest.mark.parametrize("depth", [2, 3])
def test_grid_rnn_wavefront_is_depth_plus_row_plus_column(depth):
    """Coefficients 1 on the fold and both scans, 0 on the batch: D + S + T - 2 steps."""
    a = analysis("grid_rnn", (("depth", depth),))
    (b,) = [b for b in a.blocks if [d.kind for d in b.dims] == ["map", "fold", "scan", "scan"]]
    assert b.wavefront.hyperplane == (0, 1, 1, 1)
    assert b.wavefront.steps == depth + 3 + 4 - 2
    assert b.parallel == (0,)
    assert round(abs(np.linalg.det(np.array(b.wavefront.matrix)))) == 1


def test_dilated_lstm_sub_sequences_are_parallel():
    """Layer k maps over the 2**k sub-lists of dilate(seq, 2**k): a parallel dim of extent 2**k;
    the scan over one sub-sequence (ceil(6 / 2**k) steps) carries (0,0,1) and nothing else."""
    a = analysis("dilated_lstm")
    layers = [b for b in a.blocks if len(b.dims) == 3]
    assert len(layers) == 3
    for k, b in enumerate(layers):
        d = 2 ** k
        assert [(x.kind, x.extent) for x in b.dims] == [("map", 2), ("map", d), ("scan", -(-6 // d))]
        assert 1 in b.parallel
        assert b.dependences == {(0, 0, 1)}
        assert b.wavefront is None


# the RNN blocks: (model, block index, batch dim, time dim, weights of that block)
RNN_BLOCKS = [
    ("stacked_lstm", 0, 1, 2, LSTM_W),
    ("dilated_lstm", 1, 0, 2, LSTM_W),
    ("grid_rnn", 2, 0, 3, GRID_W),
    ("rnn_attention", 1, 0, 1, ENC),
    ("rnn_attention", 3, 0, 1, DEC),
    ("bigru", 1, 0, 2, FWD),
    ("bigru", 2, 0, 2, BWD),
]


@pytest.mark.parametrize("name,block,batch,time,weights", RNN_BLOCKS)
def test_rnn_weights_are_reused_along_batch_and_time(name, block, batch, time, weights):
    """Every cell of every sample at every step reads the same weights."""
    b = analysis(name).blocks[block]
    assert b.dims[batch].kind == "map" and b.dims[time].kind == "scan"
    for w in weights:
        assert {batch, time} <= set(b.reuse[w]), (name, w, b.reuse.get(w))


def test_bigru_two_layers():
    """With 2 layers the fold carries the sequence: layer l's scans read layer l-1's concat map,
    a block outside their subtree, at the same sample -> external (0,1,0) over the shared
    (batch, fold) dims, zero-padded.  The concat at step t depends on the whole reverse scan,
    which a per-block skew cannot express, so no wavefront is offered; block 0 sees (0,1)."""
    a = analysis("bigru", (("depth", 2),))
    assert [len(b.dims) for b in a.blocks] == [2, 3, 3, 3]
    top, fwd, bwd, cat = a.blocks
    assert top.dependences == {(0, 1)} and top.parallel == (0,)
    for b in (fwd, bwd):
        assert b.dependences == {(0, 0, 1), (0, 1, 0)}
        assert b.external == {(0, 1, 0)}
        assert b.parallel == (0,)
        assert b.wavefront is None
    assert [d.reverse for d in fwd.dims] == [False, False, False]
    assert [d.reverse for d in bwd.dims] == [False, False, True]
    assert cat.dependences == frozenset() and cat.parallel == (0, 1, 2)


def test_retention_parallel_form():
    """The parallel form (query map x key map, then a reduce over keys) has no scan: the only
    carried dependence is the reduce's accumulator, re-associable; gamma is re-read along
    batch, queries and keys."""
    from examples import retention as m
    a = ft.analyze(m.parallel_model, *m.inputs("small"))
    kinds = [[d.kind for d in b.dims] for b in a.blocks]
    assert kinds == [["map", "map"], ["map", "map", "map"], ["map", "map", "map"],
                     ["map", "map", "map", "map"], ["map", "map", "map", "reduce"]]
    for b in a.blocks:
        assert b.dependences == ({(0, 0, 0, 1)} if b.dims[-1].kind == "reduce" else frozenset())
        assert b.wavefront is None
    assert a.blocks[4].reassociable == (3,)
    assert a.blocks[3].reuse["p.gamma"] == (0, 2, 3)
