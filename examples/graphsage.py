"""GraphSAGE with the mean aggregator, over ragged neighbour lists.

GraphSAGE (Hamilton et al., 2017) computes a node's next features from its own and the mean
of its neighbours' (the paper's concat(h_v, mean) @ W, with W split in two):

    m_v = mean_{u in N(v)} h_u         (0 for a node with no neighbours)
    h'_v = relu(h_v @ W_self + m_v @ W_neigh + b)        (no relu after the last layer)

A graph is its node features `h` (a list of [1, F] rows) and its neighbour lists `nbrs` (a
list of lists of int64 node indices, one list per node, of any length: a ragged list; repeats
allowed, as GraphSAGE samples neighbours with replacement).  The paper's L2 normalisation of
each layer's output and its fixed-size neighbour sampling are left out: this is the layer
over the whole neighbourhood.

How it maps onto fractal: per layer, `ft.map` over the nodes zipped with their neighbour
lists; inside, `ft.gather(h, idx)` (traced, ragged indices) gives the neighbours' rows and an
`ft.reduce` adds them.  The compiler lowers the gather of every node's neighbours to one
gather through the flattened neighbour table and the reduce to one segmented reduction
(`reduceat` over each node's run of rows), as a NumPy user would write it by hand
(`reference`), not a loop over neighbour positions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import fractal as ft

DESCRIPTION = "GraphSAGE mean aggregator (node map x gather of ragged neighbour lists x reduce), 2 layers"

CONFIGS = {
    "small": dict(nodes=7, degree=2, features=3, hidden=4, out=2),
    "cpu": dict(nodes=2000, degree=8, features=64, hidden=64, out=64),
    "paper": dict(nodes=232965, degree=25, features=602, hidden=256, out=41),  # Reddit, 25 sampled neighbours
}
# property tests draw sizes from these (`zoo.arguments`): each size's small values, simplest first
SIZES = {"nodes": [1, 2, 7], "degree": [0, 1, 2], "features": [1, 3], "hidden": [1, 4], "out": [1, 2]}

INDEX = ft.FractalTensor[ft.FractalTensor[ft.Tensor[(), np.int64]]]


class SageLayer(NamedTuple):
    w_self: np.ndarray   # [F_in, F_out]
    w_neigh: np.ndarray  # [F_in, F_out]
    bias: np.ndarray     # [1, F_out]


def sage_layer(h, nbrs, p: SageLayer, last: bool):
    """One GraphSAGE layer: each node's features and the mean of its neighbours'."""
    zero = ft.zeros((1, p.w_self.shape[0]), p.w_self.dtype)

    def node(x, idx):
        total = ft.reduce(lambda a, b: a + b, ft.gather(h, idx), zero)
        mean = total / ft.maximum(ft.length(idx), 1).astype(p.w_self.dtype)
        y = x @ p.w_self + mean @ p.w_neigh + p.bias
        return y if last else ft.relu(y)

    return ft.map(node, h, nbrs)


@ft.function
def model(h, nbrs, layers: tuple):
    for k, p in enumerate(layers):
        h = sage_layer(h, nbrs, p, last=k == len(layers) - 1)
    return h


def graph(nodes: int, degree: int, ragged: bool, seed: int):
    """Neighbour lists `(flat indices, offsets)`: degrees Poisson(degree), the last node isolated,
    when ragged; every node `degree` neighbours otherwise.  Neighbours uniform (repeats allowed)."""
    rng = np.random.default_rng(seed + 1)
    if ragged:
        deg = rng.poisson(degree, nodes)
        deg[-1] = 0
    else:
        deg = np.full(nodes, degree)
    offsets = np.concatenate([[0], np.cumsum(deg)]).astype(np.int64)
    return rng.integers(0, nodes, int(offsets[-1])).astype(np.int64), offsets


def neighbour_lists(flat: np.ndarray, offsets: np.ndarray) -> ft.FractalTensor:
    """The ragged list of lists of node indices over `flat` (shared, not copied)."""
    flat = np.asarray(flat, np.int64)
    flat.flags.writeable = False
    return ft.FractalTensor.from_storage(INDEX, flat, (np.asarray(offsets, np.int64),), range(len(offsets) - 1))


def inputs(config="small", *, dtype=np.float32, seed=0, ragged=True):
    cfg = CONFIGS[config] if isinstance(config, str) else config
    n, widths = cfg["nodes"], (cfg["features"], cfg["hidden"], cfg["out"])
    rng = np.random.default_rng(seed)
    h = ft.from_numpy(rng.standard_normal((n, 1, widths[0])).astype(dtype))
    layers = []
    for fi, fo in zip(widths, widths[1:]):
        scale = 1.0 / np.sqrt(fi)
        layers.append(SageLayer(rng.uniform(-scale, scale, (fi, fo)).astype(dtype),
                                rng.uniform(-scale, scale, (fi, fo)).astype(dtype),
                                rng.uniform(-0.1, 0.1, (1, fo)).astype(dtype)))
    return h, neighbour_lists(*graph(n, cfg["degree"], ragged, seed)), tuple(layers)


def _table(nbrs: ft.FractalTensor):
    flat, (offsets,) = nbrs.compact()
    return np.asarray(flat, np.int64).reshape(-1), np.asarray(offsets, np.int64)


def reference(h, nbrs, layers):
    """NumPy: each layer one gather of all neighbour rows and one `np.add.reduceat` over each
    node's run (a zero row appended, so that a trailing isolated node's run starts in range)."""
    flat, offsets = _table(nbrs)
    deg = np.diff(offsets)
    x = h.to_numpy()[:, 0, :]
    for k, p in enumerate(layers):
        rows = np.concatenate([x[flat], np.zeros((1, x.shape[1]), x.dtype)])
        total = np.add.reduceat(rows, offsets[:-1], axis=0)
        total[deg == 0] = 0  # reduceat gives the next row for an empty run
        y = x @ p.w_self + (total / np.maximum(deg, 1)[:, None].astype(x.dtype)) @ p.w_neigh + p.bias
        x = y if k == len(layers) - 1 else np.maximum(y, 0)
    return x


def torch_reference(h, nbrs, layers):
    """PyTorch: `index_add_` of the gathered rows into their nodes (a scatter-add)."""
    import torch

    flat, offsets = _table(nbrs)
    deg = torch.from_numpy(np.diff(offsets))  # (a fresh array: writable)
    owner = torch.repeat_interleave(torch.arange(len(deg)), deg)
    index = torch.from_numpy(flat.copy())
    x = torch.from_numpy(h.to_numpy()[:, 0, :])
    with torch.no_grad():
        for k, p in enumerate(layers):
            total = torch.zeros_like(x).index_add_(0, owner, x[index])
            mean = total / deg.clamp(min=1)[:, None].to(x.dtype)
            y = x @ torch.from_numpy(p.w_self) + mean @ torch.from_numpy(p.w_neigh) + torch.from_numpy(p.bias)
            x = y if k == len(layers) - 1 else torch.relu(y)
    return x.numpy()


def outputs(result):
    """The list of [1, F_out] node rows -> [nodes, F_out]."""
    return result.to_numpy()[:, 0, :]
