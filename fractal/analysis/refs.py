"""Symbolic references: which buffer elements a program value stands for.

While the ETDG is built, every list- or tensor-valued IR variable is described
as a `Ref`: a union of pieces `(buffer, map)` where each isl map sends

    [i0, ..., i(s-1), p0, ..., p(k-1)]  ->  [buffer index ...]

`i*` are the iteration variables of the `s` enclosing combinators (the scope),
`p*` the `k` list levels the value still has ("pending" levels, with
`extents`).  Iterating a value with a combinator turns `p0` into `i(s)`;
access operators compose a transform on the pending levels in front of the
map (`reverse`: p0 -> n-1-p0; `window`: (w, k) -> w*stride + k*dilation - before,
...).  Everything is exact and quasi-affine for the sizes given, except the
marked data-dependent pieces (`gather` with traced indices).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import islpy as isl

from ..lang.access_ops import pad_sides, window_count


@dataclass(frozen=True)
class Piece:
    buffer: str
    map: isl.Map
    data_dependent: bool = False  # indices known only at run time (gather with traced indices)
    per_sample: bool = False      # positions that depend on each ragged list's own length (the
    #                               map uses the longest: reverse, xs[-1]), known before the run


@dataclass(frozen=True)
class Ref:
    """A value that is (a view of) buffer elements: scope depth `s`, pending list extents."""

    pieces: tuple[Piece, ...]
    s: int
    extents: tuple[int, ...]

    @property
    def k(self) -> int:
        return len(self.extents)

    def with_pieces(self, pieces, s=None, extents=None) -> "Ref":
        return Ref(tuple(pieces), self.s if s is None else s, self.extents if extents is None else tuple(extents))


def names(prefix: str, n: int, start: int = 0) -> list[str]:
    return [f"{prefix}{j}" for j in range(start, start + n)]


def tmap(s: int, new: list[str], old: list[str], rest: int, cond: str = "", new_extents=()) -> isl.Map:
    """The transform [scope, new..., rest...] -> [scope, old..., rest...] (old: expressions of new)."""
    scope, tail = names("i", s), names("r", rest)
    bounds = [f"0 <= {v} < {e}" for v, e in zip(new, new_extents)]
    conds = " and ".join(c for c in [cond] + bounds if c)
    text = f"{{ [{', '.join(scope + new + tail)}] -> [{', '.join(scope + old + tail)}]" + \
        (f" : {conds} }}" if conds else " }")
    return isl.Map(text)


def apply(ref: Ref, t: isl.Map, extents, data_dependent: bool = False, per_sample: bool = False) -> Ref:
    """Compose the transform `t` (new pending levels -> old) in front of every piece."""
    pieces = [Piece(p.buffer, t.apply_range(p.map), p.data_dependent or data_dependent, p.per_sample or per_sample)
              for p in ref.pieces]
    return ref.with_pieces([p for p in pieces if not p.map.is_empty()], extents=extents)


def lift(ref: Ref, s: int) -> Ref:
    """The same value seen from a deeper scope `s` (the new iteration variables are ignored)."""
    if s == ref.s:
        return ref
    pieces = [replace(p, map=p.map.insert_dims(isl.dim_type.in_, ref.s, s - ref.s)) for p in ref.pieces]
    return ref.with_pieces(pieces, s=s)


def identity(buffer: str, s: int, extents) -> Ref:
    """All of `buffer`, indexed by the scope's variables then its own list levels."""
    t = tmap(s, names("p", len(extents)), names("p", len(extents)), 0, new_extents=extents)
    return Ref((Piece(buffer, t),), s, tuple(extents))


# -- access operators: each returns the Ref of the result ---------------------------------


def _first(ref: Ref, new, old, new_extents, extents, cond="") -> Ref:
    t = tmap(ref.s, new, old, ref.k - 1, cond, new_extents)
    return apply(ref, t, extents)


def list_index(ref: Ref, i: int, per_sample: bool = False) -> Ref:
    """xs[i]; a negative i on a ragged level means a different position per sample: the map
    uses the longest list and is marked `per_sample` (not data-dependent: the lengths are known)."""
    n = ref.extents[0]
    i = i % n if n else 0
    t = tmap(ref.s, [], [str(i)], ref.k - 1)
    return apply(ref, t, ref.extents[1:], per_sample=per_sample)


def list_slice(ref: Ref, start, stop, step) -> Ref:
    rng = range(ref.extents[0])[slice(start, stop, step)]
    m = len(rng)
    first = rng.start if m else 0
    return _first(ref, ["q"], [f"{first} + {rng.step} * q"], [m], (m,) + ref.extents[1:])


def reverse(ref: Ref, per_sample: bool = False) -> Ref:
    """q -> n-1-q; on a ragged level n differs per sample (see `list_index`)."""
    n = ref.extents[0]
    t = tmap(ref.s, ["q"], [f"{n - 1} - q"], ref.k - 1, "", [n])
    return apply(ref, t, ref.extents, per_sample=per_sample)


def gather(ref: Ref, indices) -> Ref:
    """result[q] = xs[indices[q]]: a finite union of points."""
    n = ref.extents[0]
    idx = [i % n for i in indices] if n else []
    if not idx:
        return ref.with_pieces([], extents=(0,) + ref.extents[1:])
    return _gather(ref, idx)


def _gather(ref: Ref, idx) -> Ref:
    s, rest = ref.s, ref.k - 1
    scope, tail = names("i", s), names("r", rest)
    parts = " or ".join(f"(q = {k} and g = {j})" for k, j in enumerate(idx))
    text = f"{{ [{', '.join(scope + ['q'] + tail)}] -> [{', '.join(scope + ['g'] + tail)}] : {parts} }}"
    return apply(ref, isl.Map(text), (len(idx),) + ref.extents[1:])


def gather_dynamic(ref: Ref, count: int) -> Ref:
    """Indices known only at run time: any element may be read (marked data-dependent)."""
    n = ref.extents[0]
    t = tmap(ref.s, ["q"], ["g"], ref.k - 1, cond=f"0 <= g < {n}", new_extents=[count])
    return apply(ref, t, (count,) + ref.extents[1:], data_dependent=True)


def join(a: Ref, b: Ref) -> Ref:
    n, m = a.extents[0], b.extents[0]
    left = _first(a, ["q"], ["q"], [n + m], (n + m,) + a.extents[1:], cond=f"q < {n}")
    right = _first(b, ["q"], [f"q - {n}"], [n + m], (n + m,) + a.extents[1:], cond=f"q >= {n}")
    return left.with_pieces(left.pieces + right.pieces)


def flatten(ref: Ref) -> Ref:
    """xss -> xs: element q of the result is xss[q div L][q mod L] (exact for regular lists)."""
    n, inner = ref.extents[0], ref.extents[1]
    total = n * inner
    t = tmap(ref.s, ["q"], [f"floor(q / {inner})" if inner else "0", f"q mod {inner}" if inner else "0"],
             ref.k - 2, new_extents=[total])
    return apply(ref, t, (total,) + ref.extents[2:])


def split(ref: Ref, parts: int) -> Ref:
    n = ref.extents[0]
    size, extra = divmod(n, parts)
    lengths = [size + (k < extra) for k in range(parts)]
    starts = [sum(lengths[:k]) for k in range(parts)]
    width = max(lengths, default=0)
    cond = " or ".join(f"(c = {k} and j < {lengths[k]} and g = {starts[k]} + j)" for k in range(parts) if lengths[k])
    s, rest = ref.s, ref.k - 1
    scope, tail = names("i", s), names("r", rest)
    text = (f"{{ [{', '.join(scope + ['c', 'j'] + tail)}] -> [{', '.join(scope + ['g'] + tail)}] : "
            f"0 <= j and ({cond or 'false'}) }}")
    return apply(ref, isl.Map(text), (parts, width) + ref.extents[1:])


def window(ref: Ref, size, stride, dilation, padding) -> Ref:
    """(w, k) -> stride*w + dilation*k - before; a padding position reads nothing."""
    n = ref.extents[0]
    count = window_count(n, size, stride, dilation, padding)
    src = f"{stride} * w + {dilation} * k - {pad_sides(padding)[0]}"
    return _first(ref, ["w", "k"], [src], [count, size], (count, size) + ref.extents[1:],
                  cond=f"0 <= {src} < {n}")


def shifted_window(ref: Ref, size, dilation) -> Ref:
    n, half = ref.extents[0], size // 2
    return _first(ref, ["w", "k"], [f"(w + {dilation} * (k - {half})) mod {n}" if n else "0"], [n, size],
                  (n, size) + ref.extents[1:])


def dilate(ref: Ref, d: int) -> Ref:
    n = ref.extents[0]
    width = -(-n // d) if n else 0
    return _first(ref, ["c", "j"], [f"c + {d} * j"], [d, width], (d, width) + ref.extents[1:],
                  cond=f"c + {d} * j < {n}")


def interleave(ref: Ref) -> Ref:
    d, width = ref.extents[0], ref.extents[1]
    n = d * width
    t = tmap(ref.s, ["q"], [f"q mod {d}", f"floor(q / {d})"], ref.k - 2, new_extents=[n])
    return apply(ref, t, (n,) + ref.extents[2:])


def repeat(ref: Ref, n: int) -> Ref:
    t = tmap(ref.s, ["q"], [], ref.k, new_extents=[n])
    return apply(ref, t, (n,) + ref.extents)


def product_left(xs: Ref, m: int) -> Ref:
    n = xs.extents[0]
    return _first(xs, ["a", "b"], ["a"], [n, m], (n, m) + xs.extents[1:])


def product_right(ys: Ref, n: int) -> Ref:
    m = ys.extents[0]
    return _first(ys, ["a", "b"], ["b"], [n, m], (n, m) + ys.extents[1:])


def slices_of(ref: Ref, count: int) -> Ref:
    """A tensor's slices: every slice is part of the same (atomic) buffer element."""
    return repeat(ref, count)


def everything(ref: Ref) -> Ref:
    """The whole value as one read (for ops that consume a list: stack, length)."""
    pieces = [replace(p, map=p.map.project_out(isl.dim_type.in_, ref.s, ref.k)) for p in ref.pieces]
    return ref.with_pieces(pieces, extents=())
