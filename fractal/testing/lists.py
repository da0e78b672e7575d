"""Ragged FractalTensors: `list_lengths` draws the nested lengths, `fractal_tensors` the lists.

Lengths are drawn per list, between `min_len` and `max_len` at every level, with the edge
cases that break models favoured: empty lists at each level, lists of length 1, lists at
`max_len` (each list draws one of those often), and lists whose lengths are all equal (half
the draws use one length per level).  `max_leaves` bounds the leaf tensors of one
FractalTensor, so deep types stay small.  A length is drawn by `st.integers` from `min_len` up,
so a failing example shrinks towards fewer, shorter lists; the leaves, one array per
FractalTensor drawn by `hypothesis.extra.numpy.arrays`, shrink towards 0.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from fractal.lang.errors import ArgumentError, FractalTypeError, user_location
from fractal.lang.types import FractalTensorType, TensorType, TupleType
from fractal.lang.values import FractalTensor

from .leaves import array_strategy, element_strategy, leaf_type

__all__ = ["fractal_tensors", "list_lengths"]


def _count(value, name: str, what: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise FractalTypeError(f"{what}: {name} must be an int, got {type(value).__name__} {value!r:.40}")
    if value < 0:
        raise ArgumentError(f"{what}: {name} must be >= 0, got {value}")
    return int(value)


def _check_structure(lengths, depth: int, what: str):
    """A fixed nested structure of lengths (an int at depth 1, a list of depth-1 structures
    above), checked against `depth`; returned with lists for tuples."""
    if depth == 1:
        return _count(lengths, "lengths", what)
    if not isinstance(lengths, (list, tuple)):
        raise FractalTypeError(f"{what}: lengths for a depth-{depth} list must be an int, a strategy of ints, "
                               f"or nested lists of lengths (as xs.lengths() prints them), got "
                               f"{type(lengths).__name__} {lengths!r:.40}")
    return [_check_structure(sub, depth - 1, what) for sub in lengths]


def _length_choice(lo: int, hi: int):
    """One list length in [lo, hi]: any of them, with lo, lo + 1 and hi drawn often.  The
    `st.integers` branch comes first, so a length shrinks down towards `lo`."""
    if lo >= hi:
        return st.just(lo)
    return st.one_of(st.integers(lo, hi), st.sampled_from(sorted({lo, lo + 1, hi})))


def _min_leaves(min_len: int, depth: int) -> int:
    return min_len ** depth


class _Lengths:
    """Draws a nested structure of lengths (see `list_lengths`)."""

    def __init__(self, depth, min_len, max_len, max_leaves, lengths, what):
        self.depth, self.min_len, self.max_len, self.max_leaves, self.lengths = \
            depth, min_len, max_len, max_leaves, lengths
        self.what, self.loc = what, user_location()  # a bad drawn length is reported at the strategy's line

    def draw(self, draw):
        if isinstance(self.lengths, st.SearchStrategy):
            return self._given(draw, self.depth)
        if self.lengths is not None:
            return _copy(self.lengths) if not isinstance(self.lengths, int) else _regular(self.depth, self.lengths)
        if draw(st.booleans()):  # one length per level: every list of a level equally long
            return self._equal(draw)
        return self._ragged(draw, self.depth, self.max_leaves)

    def _cap(self, depth: int, budget: int) -> int:
        """The longest list of `depth` levels whose lists all have at least `min_len` entries that
        fits `budget` leaves."""
        child = _min_leaves(self.min_len, depth - 1)
        return self.max_len if child == 0 else min(self.max_len, budget // child)

    def _ragged(self, draw, depth: int, budget: int):
        n = draw(_length_choice(self.min_len, self._cap(depth, budget)))
        if depth == 1:
            return n
        child_min, out, spent = _min_leaves(self.min_len, depth - 1), [], 0
        for i in range(n):
            sub = self._ragged(draw, depth - 1, budget - spent - (n - i - 1) * child_min)
            spent += _leaf_count(sub, depth - 1)
            out.append(sub)
        return out

    def _equal(self, draw):
        per_level, budget, lists = [], self.max_leaves, 1
        for level in range(self.depth):
            n = draw(_length_choice(self.min_len, self._cap(self.depth - level, budget)))
            per_level.append(n)
            if n == 0:
                per_level += [0] * (self.depth - level - 1)
                break
            budget //= n
        structure = per_level[-1]
        for n in reversed(per_level[:-1]):
            structure = [structure] * n
        return _copy(structure)

    def _given(self, draw, depth: int):
        n = draw(self.lengths)
        if not isinstance(n, (int, np.integer)) or isinstance(n, (bool, np.bool_)) or n < 0:
            raise ArgumentError(f"{self.what}: the lengths= strategy drew {n!r:.40}, not a length (an int >= 0)",
                                self.loc)
        return int(n) if depth == 1 else [self._given(draw, depth - 1) for _ in range(int(n))]


def _regular(depth: int, n: int):
    return n if depth == 1 else [_regular(depth - 1, n) for _ in range(n)]


def _copy(structure):
    return [_copy(s) for s in structure] if isinstance(structure, list) else structure


def _leaf_count(structure, depth: int) -> int:
    return structure if depth == 1 else sum(_leaf_count(s, depth - 1) for s in structure)


def truncate(structure, depth: int, keep: int):
    """The outer `keep` levels of a depth-`depth` structure of lengths (for lists that share the
    outer lengths of a deeper one)."""
    if keep == 1:
        return structure if depth == 1 else len(structure)
    return [truncate(s, depth - 1, keep - 1) for s in structure]


def check_bounds(depth, min_len, max_len, max_leaves, lengths, what):
    depth = _count(depth, "depth", what)
    if depth < 1:
        raise ArgumentError(f"{what}: depth must be >= 1 (a FractalTensor is at least a list), got {depth}; "
                            f"draw a single tensor with fractal.testing.tensors")
    min_len, max_len = _count(min_len, "min_len", what), _count(max_len, "max_len", what)
    max_leaves = _count(max_leaves, "max_leaves", what)
    if min_len > max_len:
        raise ArgumentError(f"{what}: min_len={min_len} is greater than max_len={max_len}")
    if lengths is None and _min_leaves(min_len, depth) > max_leaves:
        raise ArgumentError(f"{what}: max_leaves={max_leaves} is too few: with min_len={min_len} every "
                            f"depth-{depth} list holds at least {_min_leaves(min_len, depth)} leaves")
    if lengths is not None and not isinstance(lengths, st.SearchStrategy):
        lengths = _check_structure(lengths, depth, what) if not isinstance(lengths, (int, np.integer)) \
            else _count(lengths, "lengths", what)
    return _Lengths(depth, min_len, max_len, max_leaves, lengths, what)


def list_lengths(depth: int = 1, *, min_len: int = 0, max_len: int = 6, max_leaves: int = 64, lengths=None):
    """A strategy of nested list lengths for a depth-`depth` FractalTensor, structured like
    `xs.lengths()` (an int at depth 1, `[3, 0, 1]` at depth 2, ...).  Draw one and pass it as
    `lengths=` to several `fractal_tensors` to get lists that a model zips together.

        >>> list_lengths(2, max_len=3).example()    # e.g. [3, 0, 1]
    """
    spec = check_bounds(depth, min_len, max_len, max_leaves, lengths, "list_lengths")
    return st.composite(lambda draw: spec.draw(draw))()


def _parse_type(type_or_leaf_shape, depth, dtype, what):
    """`(list type, depth)` from a FractalTensor type, a Tensor type or a leaf shape."""
    if isinstance(type_or_leaf_shape, FractalTensorType):
        t = type_or_leaf_shape
        if depth is not None and depth != t.depth:
            raise FractalTypeError(f"{what}: depth={depth!r} disagrees with the type {t} (depth {t.depth}); "
                                   f"leave depth out or make them agree")
        leaf = t.leaf
        if isinstance(leaf, TupleType):
            if not all(isinstance(e, TensorType) for e in leaf.elems):
                raise FractalTypeError(f"{what}: {t} holds tuples of lists; draw its components with "
                                       f"fractal_tensors and combine them with ft.zip")
            if dtype is not None:
                raise FractalTypeError(f"{what}: dtype= cannot be given for a list of tuples ({t})")
        else:
            leaf_type(leaf, dtype, what)  # dtype, if given, must agree
        return t, t.depth
    if isinstance(type_or_leaf_shape, TupleType):
        raise FractalTypeError(f"{what}: {type_or_leaf_shape} is a tuple type, not a list type; draw "
                               f"st.tuples(...) of its parts")
    leaf = leaf_type(type_or_leaf_shape, dtype, what)
    depth = 1 if depth is None else _count(depth, "depth", what)
    t = leaf
    for _ in range(depth):
        t = FractalTensorType(t)
    return t, depth


def fractal_tensors(type_or_leaf_shape, *, depth=None, dtype=None, min_len=0, max_len=6, lengths=None,
                    max_leaves=64, elements=None, allow_nan=False, allow_infinity=False, allow_subnormal=False,
                    allow_signed_zero=False, min_value=None, max_value=None):
    """A strategy of `ft.FractalTensor`s of one type, with ragged lengths (see the module doc).

    `type_or_leaf_shape` is an `ft.FractalTensor[...]` type (depth, leaf shape and dtype fixed
    by it; `depth=`/`dtype=` may repeat them) or a leaf shape (a tuple, or an `ft.Tensor[...]`
    type) with `depth` (default 1) and `dtype` (default float32).  Every list has between
    `min_len` and `max_len` entries and a FractalTensor at most `max_leaves` leaves, unless
    `lengths` fixes them: an int (every list), a strategy of ints (drawn per list), or a nested
    structure such as `[2, 0, 1]` (exactly `xs.lengths()`).  The leaf options are `tensors`'s.

        >>> xs = fractal_tensors(ft.FractalTensor[ft.Tensor[(1, 4), ft.float64]]).example()
        >>> xs.type, xs.lengths()   # e.g. (ft<f64[1,4]>, 3)
    """
    what = "fractal_tensors"
    t, depth = _parse_type(type_or_leaf_shape, depth, dtype, what)
    spec = check_bounds(depth, min_len, max_len, max_leaves, lengths, what)
    leaf = t.leaf
    parts = leaf.elems if isinstance(leaf, TupleType) else (leaf,)
    options = dict(elements=elements, allow_nan=allow_nan, allow_infinity=allow_infinity,
                   allow_subnormal=allow_subnormal, allow_signed_zero=allow_signed_zero,
                   min_value=min_value, max_value=max_value, what=what)
    leaf_draws = [(p, *element_strategy(p.dtype, **options)) for p in parts]

    @st.composite
    def draw_fractal_tensor(draw):
        structure = spec.draw(draw)
        levels = _level_lengths(structure, depth)
        n_leaves = sum(levels[-1])
        built = []
        for j, (p, elems, fix_zero) in enumerate(leaf_draws):
            leaves = draw(array_strategy((n_leaves,) + p.shape, p.dtype, elems, fix_zero))
            part_type = t if len(leaf_draws) == 1 else _component(t, j)
            built.append(build(part_type, structure, leaves, levels))
        return built[0] if len(built) == 1 else FractalTensor._zipped(t, tuple(built))

    return draw_fractal_tensor()


def _component(t: FractalTensorType, j: int) -> FractalTensorType:
    return FractalTensorType(_component(t.elem, j) if isinstance(t.elem, FractalTensorType) else t.elem.elems[j])


def _level_lengths(structure, depth: int) -> list[list[int]]:
    """The lengths of the lists of each level, left to right (the storage order)."""
    levels: list[list[int]] = [[] for _ in range(depth)]
    todo = [structure]
    for k in range(depth):
        levels[k] = [s if k == depth - 1 else len(s) for s in todo]
        if k < depth - 1:
            todo = [child for s in todo for child in s]
    return levels


def build(t: FractalTensorType, structure, leaves: np.ndarray, levels=None) -> FractalTensor:
    """The FractalTensor of type `t` with these lengths (a structure as `xs.lengths()` prints it)
    over `leaves` (shape `(number of leaves, *leaf shape)`, in order)."""
    levels = _level_lengths(structure, t.depth) if levels is None else levels
    leaves = np.array(leaves, dtype=t.leaf.dtype, copy=True)
    leaves.flags.writeable = False
    offsets = tuple(np.concatenate([[0], np.cumsum(levels[k], dtype=np.int64)]).astype(np.int64)
                    for k in range(1, t.depth))
    return FractalTensor.from_storage(t, leaves, offsets, range(levels[0][0]))

