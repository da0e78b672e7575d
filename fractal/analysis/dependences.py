"""Flow dependences of a block, as distance vectors, computed with isl.

Buffers are write-once (FractalTensor elements are never overwritten), so the
only dependences are flow dependences: iteration `d` reads an element that
iteration `s` wrote.  For a block with dims `(x0 .. xn-1)`, the accesses of the
block and of every block nested in it are projected onto those dims; the
dependence relation is `W ; R^-1` and its distance vectors are its `deltas`.
"""

from __future__ import annotations

import islpy as isl

from .etdg import ETDG

# enumerating more distinct distance vectors than this means "non-uniform, many"
MAX_VECTORS = 4096


def projected(m: isl.Map, n: int, buffer: str) -> isl.Map:
    """An access map restricted to the first `n` iteration dims, its range tagged by buffer."""
    extra = m.dim(isl.dim_type.in_) - n
    if extra > 0:
        m = m.project_out(isl.dim_type.in_, n, extra)
    return m.set_tuple_name(isl.dim_type.out, _tag(buffer))


def _tag(buffer: str) -> str:
    return "B_" + "".join(c if c.isalnum() else "_" for c in buffer)


def shared_dims(etdg: ETDG, a: int, b: int) -> int:
    """How many leading dims blocks `a` and `b` share (the dims of their innermost common ancestor)."""
    def chain(x):
        out = []
        while x is not None:
            out.append(x)
            x = etdg.blocks[x].parent
        return out
    common = set(chain(a)) & set(chain(b))
    return max((len(etdg.blocks[x].dims) for x in common), default=0)


def external_vectors(etdg: ETDG, block: int) -> set[tuple[int, ...]]:
    """Dependences on writes of blocks outside this one's subtree, over the dims they share.

    The vector is padded with zeros past the shared dims: the writer is not inside
    those loops, so all that matters is which shared iteration must come first."""
    n = len(etdg.blocks[block].dims)
    inside = etdg.subtree(block)
    out: set[tuple[int, ...]] = set()
    reads = [a for a in etdg.block_accesses(block, subtree=True) if a.kind == "read"]
    for other in range(len(etdg.blocks)):
        c = min(shared_dims(etdg, block, other), n)
        if other in inside or c == 0:
            continue
        writes = [a for a in etdg.block_accesses(other) if a.kind == "write"]
        prefix_deltas(writes, reads, c, lambda v: out.add(v + (0,) * (n - c)))
    return {v for v in out if any(v)}


def prefix_deltas(writes, reads, n: int, add) -> None:
    """Calls `add(r - w)` for every read instance `r` of an element written by instance `w`.

    Instances are projected onto the first `n` dims.  One that has fewer (an access of an
    enclosing level of the nest: a state copied after the inner loops, a tensor written into
    a list at a glue level) is compared on the dims it has, the rest of the vector zero."""
    def by_depth(accesses):
        out: dict[int, list] = {}
        for a in accesses:
            m = isl.Map(a.map)
            out.setdefault(min(m.dim(isl.dim_type.in_), n), []).append((m, a.buffer))
        return out

    def union(maps, k):
        out = None
        for m, buffer in maps:
            um = isl.UnionMap.from_map(projected(m, k, buffer))
            out = um if out is None else out.union(um)
        return out

    w_depths, r_depths = by_depth(writes), by_depth(reads)
    for kw, w in w_depths.items():
        for kr, r in r_depths.items():
            k = min(kw, kr)
            rel = union(w, k).apply_range(union(r, k).reverse())
            if not rel.is_empty():
                rel.deltas().foreach_point(lambda p, k=k: add(
                    tuple(p.get_coordinate_val(isl.dim_type.set, j).to_python() for j in range(k)) + (0,) * (n - k)))


def distance_vectors(etdg: ETDG, block: int) -> tuple[frozenset, bool]:
    """(the non-zero distance vectors within the block's subtree, whether the list was cut)."""
    n = len(etdg.blocks[block].dims)
    accesses = etdg.block_accesses(block, subtree=True)
    vectors: set[tuple[int, ...]] = set()
    cut = False

    def add(v):
        nonlocal cut
        if len(vectors) >= MAX_VECTORS:
            cut = True
        elif any(v):
            vectors.add(v)

    prefix_deltas([a for a in accesses if a.kind == "write"], [a for a in accesses if a.kind == "read"], n, add)
    return frozenset(vectors), cut


def carrying_dim(v) -> int | None:
    """The dim that carries distance vector `v`: its first non-zero component."""
    return next((k for k, x in enumerate(v) if x), None)


def lexicographically_positive(v) -> bool:
    k = carrying_dim(v)
    return k is not None and v[k] > 0


def touch_deltas(xs, ys, n_fixed: int, n_over: int) -> isl.Set:
    """The differences over the last `n_over` dims between instances that touch a common
    element, at least one of them writing, whose first `n_fixed` dims are equal.

    `xs` and `ys` are lists of `(access map, is_write)`; every map's domain has the same
    `n_fixed + n_over` dims and its range is a buffer's element space, tagged by buffer (so
    accesses of different buffers never meet).  The result is a set over `n_over` dims: `y - x`
    for each pair (x from `xs`, y from `ys`)."""
    n = n_fixed + n_over
    gx, gy = _by_buffer(xs), _by_buffer(ys)
    rel = None
    for buffer in gx.keys() & gy.keys():
        (xw, xr), (yw, yr) = gx[buffer], gy[buffer]
        for a, b in ((xw, yw), (xw, yr), (xr, yw)):
            if a is not None and b is not None:
                pairs = a.apply_range(b.reverse())
                rel = pairs if rel is None else rel.union(pairs)
    if rel is None:
        return isl.Set("{ [" + ", ".join(f"d{k}" for k in range(n_over)) + "] : false }")
    if n_fixed:
        rel = rel.intersect(_equal_prefix(n, n_fixed))
    d = rel.deltas()
    return d.project_out(isl.dim_type.set, 0, n_fixed) if n_fixed else d


def _by_buffer(accesses) -> dict:
    """buffer tag -> (union of the writes, union of the reads), None where there are none."""
    out: dict = {}
    for m, writes in accesses:
        w, r = out.get(m.get_tuple_name(isl.dim_type.out), (None, None))
        if writes:
            w = m if w is None else w.union(m)
        else:
            r = m if r is None else r.union(m)
        out[m.get_tuple_name(isl.dim_type.out)] = (w, r)
    return out


def _equal_prefix(n: int, k: int) -> isl.Map:
    xs = [f"x{j}" for j in range(n)]
    ys = [f"y{j}" for j in range(n)]
    cons = " and ".join(f"x{j} = y{j}" for j in range(k))
    return isl.Map(f"{{ [{', '.join(xs)}] -> [{', '.join(ys)}] : {cons} }}")
