"""FractalTensor values: nested lists of static-shape tensors with ragged lengths.

Storage is CSR-like: one contiguous, read-only leaf buffer ``leaves`` of shape
``(n_leaves, *leaf_shape)``, one offset array per inner list level, and the
positions of the outermost elements (``index``: a `range` or an int array).
So ``x[i]`` is O(1), and slicing, reversing and gathering only change
``index``: they are views that share the leaf buffer.

    >>> x = ft.fractal([[a, b, c], [d]])   # depth 2, lengths [3, 1]
    # leaves = [a, b, c, d]; offsets = ([0, 3, 4],); index = range(0, 2)

Lists of tuples (from `zip`, `product`, `enumerate`) are stored as a tuple of
component lists ("parts") that share the same list structure.
"""

from __future__ import annotations

import html

import numpy as np

from .errors import ArgumentError, FractalTypeError, LengthError
from .types import (AnyType, FractalTensorType, TensorType, TupleType, as_dtype, tensor_type)


def component_type(t: AnyType, j: int) -> AnyType:
    """The type of part `j` of a list of tuples: the tuple leaf replaced by its j-th component."""
    if isinstance(t, FractalTensorType):
        return FractalTensorType(component_type(t.elem, j))
    assert isinstance(t, TupleType)
    return t.elems[j]


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class FractalTensor:
    """A FractalTensor value; also the type constructor `FractalTensor[T]`."""

    # (`_compacted`: `compact()`'s answer, kept: a value never changes, and a compiled
    # program's every call asks for its arguments' storage and list structure)
    __slots__ = ("_type", "_leaves", "_offsets", "_index", "_parts", "_compacted")

    def __class_getitem__(cls, elem) -> FractalTensorType:
        if not isinstance(elem, (TensorType, FractalTensorType, TupleType)):
            raise FractalTypeError(
                f"FractalTensor[...] takes a Tensor or FractalTensor type, got {elem!r}; "
                f"write e.g. ft.FractalTensor[ft.Tensor[1, 512]]")
        return FractalTensorType(elem)

    def __init__(self, *args, **kwargs):
        raise FractalTypeError("build FractalTensors with ft.fractal(nested_lists) or ft.from_numpy(array, depth=k)")

    # -- construction from storage (for the interpreter, the lowering and the backends) -----
    @classmethod
    def from_storage(cls, type_: FractalTensorType, leaves, offsets, index) -> "FractalTensor":
        """A list over existing storage, shared, not copied (see the module docstring).

        `leaves` is the read-only leaf buffer `(n_leaves, *leaf_shape)`, `offsets` one int64
        array per inner list level (`offsets[k][j]:offsets[k][j + 1]` are the entries of list
        `j` at level `k + 1`), and `index` the positions of the outer elements in the first
        level (a `range` or an int array; `range(n)` for all of them in order)."""
        self = object.__new__(cls)
        self._type, self._leaves, self._offsets, self._index, self._parts = type_, leaves, offsets, index, None
        self._compacted = None
        return self

    @classmethod
    def _zipped(cls, type_: FractalTensorType, parts: tuple) -> "FractalTensor":
        self = object.__new__(cls)
        self._type, self._leaves, self._offsets, self._index, self._parts = type_, None, None, None, tuple(parts)
        self._compacted = None
        return self

    @classmethod
    def _empty(cls, type_: FractalTensorType) -> "FractalTensor":
        return cls.from_elements(type_.elem, [])

    @classmethod
    def from_elements(cls, elem_type: AnyType, elems: list) -> "FractalTensor":
        """Pack a Python list of element values (arrays, FractalTensors or tuples of them, all of
        type `elem_type`) into a list; `elems` may be empty."""
        t = FractalTensorType(elem_type)
        if isinstance(t.leaf, TupleType):
            n = len(t.leaf.elems)
            parts = []
            for j in range(n):
                if isinstance(elem_type, TupleType):
                    comp = [e[j] for e in elems]
                else:
                    comp = [e._parts[j] for e in elems]
                parts.append(cls.from_elements(component_type(elem_type, j), comp))
            return cls._zipped(t, tuple(parts))
        if isinstance(elem_type, TensorType):
            if elems:
                leaves = np.stack([np.asarray(e, dtype=elem_type.dtype) for e in elems])
            else:
                leaves = np.zeros((0,) + elem_type.shape, elem_type.dtype)
            return cls.from_storage(t, _readonly(leaves), (), range(len(elems)))
        compact = [e.compact() for e in elems]
        lengths = np.array([len(e) for e in elems], dtype=np.int64)
        outer = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        leaf_type = t.leaf
        if compact:
            leaves = np.concatenate([c[0] for c in compact])
        else:
            leaves = np.zeros((0,) + leaf_type.shape, leaf_type.dtype)
        offsets = [outer]
        for level in range(elem_type.depth - 1):
            pieces, base = [], 0
            for c in compact:
                off = c[1][level]
                pieces.append(off[:-1] + base)
                base += int(off[-1])
            pieces.append(np.array([base], dtype=np.int64))
            offsets.append(np.concatenate(pieces).astype(np.int64))
        return cls.from_storage(t, _readonly(leaves), tuple(offsets), range(len(elems)))

    def compact(self) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """`(leaves, offsets)` holding exactly this list's elements, in order: the storage of
        `from_storage(self.type, leaves, offsets, range(len(self)))`, an equal list.  A view of
        the shared leaf buffer when the elements are contiguous there, else a copy."""
        if self._compacted is None:
            leaves, offsets = self._compact()
            self._compacted = (_readonly(leaves), tuple(_readonly(o) for o in offsets))
        return self._compacted

    def _compact(self) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        entries = self._index
        offsets = []
        for off in self._offsets:
            if isinstance(entries, slice):  # a contiguous run from the level above
                entries = range(entries.start, entries.stop)
            entries = np.asarray(entries, dtype=np.int64)
            lo, hi = off[entries], off[entries + 1]
            offsets.append(np.concatenate([[0], np.cumsum(hi - lo)]).astype(np.int64))
            entries = _concat_ranges(lo, hi)
        if isinstance(entries, range) and entries.step == 1:
            return self._leaves[entries.start:entries.stop], tuple(offsets)
        if isinstance(entries, slice):
            return self._leaves[entries], tuple(offsets)
        return self._leaves[np.asarray(entries, dtype=np.int64)], tuple(offsets)

    # -- public read API -------------------------------------------------------------------
    @property
    def type(self) -> FractalTensorType:
        return self._type

    @property
    def depth(self) -> int:
        return self._type.depth

    @property
    def elem_type(self) -> AnyType:
        return self._type.elem

    def __len__(self) -> int:
        if self._parts is not None:
            return len(self._parts[0])
        return len(self._index)

    def _element(self, i: int):
        if self._parts is not None:
            items = tuple(p._element(i) for p in self._parts)
            if isinstance(self._type.elem, TupleType):
                return items
            return FractalTensor._zipped(self._type.elem, items)
        pos = int(self._index[i])
        if not self._offsets:
            return self._leaves[pos, ...]  # `...` keeps scalar leaves 0-d arrays, not NumPy scalars
        off = self._offsets[0]
        return FractalTensor.from_storage(self._type.elem, self._leaves, self._offsets[1:],
                                          range(int(off[pos]), int(off[pos + 1])))

    def take(self, positions) -> "FractalTensor":
        """The elements at `positions` (a `range` or an int array of non-negative positions),
        as a view sharing this list's storage (`ft.gather` without its checks)."""
        if self._parts is not None:
            return FractalTensor._zipped(self._type, tuple(p.take(positions) for p in self._parts))
        if isinstance(self._index, range) and isinstance(positions, range):
            if len(positions) == 0:
                new = range(0)
            else:  # compose the two arithmetic progressions
                start, step = self._index[positions[0]], self._index.step * positions.step
                new = range(start, start + step * len(positions), step)
        else:
            new = np.asarray(self._index, dtype=np.int64)[np.asarray(positions, dtype=np.int64)]
        return FractalTensor.from_storage(self._type, self._leaves, self._offsets, new)

    def with_leaves(self, leaves: np.ndarray, type_: FractalTensorType) -> "FractalTensor":
        """A list of type `type_` with this (unzipped) list's structure over other storage:
        `leaves[k]` stands where this list's storage leaf `k` does.  A compiled program returns
        a list's leaves laid out like the list of element ids the lowering built for it."""
        return FractalTensor.from_storage(type_, leaves, self._offsets, self._index)

    def __getitem__(self, key):
        n = len(self)
        if isinstance(key, slice):
            return self.take(range(n)[check_slice(key)])
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            i = int(key)
            if not -n <= i < n:
                raise LengthError(f"index {i} is out of range for a list of length {n}")
            return self._element(i % n if n else i)
        raise FractalTypeError(f"a FractalTensor is indexed by an int or a slice, not {type(key).__name__}; "
                               f"use ft.gather(xs, indices) to select several elements")

    def __iter__(self):
        for i in range(len(self)):
            yield self._element(i)

    def __bool__(self):
        return len(self) > 0

    def __eq__(self, other):
        """Structural equality: same type, lengths and leaf values."""
        if not isinstance(other, FractalTensor) or other._type != self._type or len(other) != len(self):
            return NotImplemented if not isinstance(other, FractalTensor) else False
        return all(_values_equal(a, b) for a, b in zip(self, other))

    __hash__ = None

    def lengths(self):
        """The list lengths: an int for depth 1, nested lists of inner lengths below,
        e.g. `[3, 1]` for `[[a, b, c], [d]]`."""
        if not isinstance(self.elem_type, FractalTensorType):
            return len(self)
        return [e.lengths() for e in self]

    def is_regular(self) -> bool:
        """True when every list at each level has the same length (so `to_numpy` needs no padding)."""
        if self._parts is not None:
            return all(p.is_regular() for p in self._parts)
        _, offsets = self.compact()
        return all(len(np.unique(np.diff(off))) <= 1 for off in offsets)

    def to_list(self):
        """Nested Python lists whose leaves are numpy arrays (tuples for zipped lists)."""
        return [e.to_list() if isinstance(e, FractalTensor) else _tuple_to_list(e) for e in self]

    def to_numpy(self, pad_value=None) -> np.ndarray:
        """A dense array `(len, ..., *leaf_shape)`; ragged lists need `pad_value=`."""
        if pad_value is not None and not isinstance(pad_value, (bool, int, float, np.bool_, np.number)):
            raise FractalTypeError(f"to_numpy: pad_value must be a number, got {_kind(pad_value)}")
        if self._parts is not None:
            raise FractalTypeError(f"to_numpy() needs a list of tensors, but {self._type} holds tuples; "
                                   f"convert each component with ft.map first")
        leaves, offsets = self.compact()
        dims = [len(self)]
        for off in offsets:
            lengths = np.diff(off)
            dims.append(int(lengths.max()) if len(lengths) else 0)
        leaf_shape = self._type.leaf.shape
        regular = all(len(np.unique(np.diff(off))) <= 1 for off in offsets)
        if regular:
            return leaves.reshape(tuple(dims) + leaf_shape).copy()
        if pad_value is None:
            raise LengthError(f"this {self._type} is ragged (lengths {_short(self.lengths())}); "
                              f"pass to_numpy(pad_value=...) to pad it to {tuple(dims)}")
        out = np.full(tuple(dims) + leaf_shape, pad_value, dtype=leaves.dtype)
        # multi-index of each leaf, built bottom-up from the offset arrays
        coords = []
        pos = np.arange(len(leaves))
        for off in reversed(offsets):
            parent = np.searchsorted(off, pos, side="right") - 1
            coords.append(pos - off[parent])
            pos = parent
        coords.append(pos)
        out[tuple(reversed(coords))] = leaves
        return out

    # -- display ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        leaf = self._type.leaf
        return f"FractalTensor({self._type}, lengths={_short(self.lengths())}, leaf={leaf})"

    def _repr_html_(self) -> str:
        leaf = self._type.leaf
        rows = [("type", str(self._type)), ("depth", str(self.depth)),
                ("lengths", _short(self.lengths(), 200)), ("leaf", str(leaf))]
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                       f"<td style='text-align:left'><code>{html.escape(v)}</code></td></tr>" for k, v in rows)
        return f"<table><caption>FractalTensor</caption>{body}</table>"


def check_slice(key: slice) -> slice:
    """A list slice's bounds are ints (or None) and its step is not zero."""
    for part in (key.start, key.stop, key.step):
        if part is not None and (not isinstance(part, (int, np.integer)) or isinstance(part, (bool, np.bool_))):
            raise FractalTypeError(f"list slice bounds must be ints or None, got {_kind(part)}")
    if key.step == 0:
        raise ArgumentError("list slice: step must not be zero")
    return key


def _concat_ranges(lo: np.ndarray, hi: np.ndarray):
    """The concatenation of the integer ranges [lo[k], hi[k]), as a slice when contiguous."""
    if len(lo) == 0:
        return slice(0, 0)
    if np.all(lo[1:] == hi[:-1]):
        return slice(int(lo[0]), int(hi[-1]))
    lengths = hi - lo
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.repeat(lo - starts, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def _short(x, limit: int = 80) -> str:
    s = str(x)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _tuple_to_list(e):
    if isinstance(e, tuple):
        return tuple(v.to_list() if isinstance(v, FractalTensor) else v for v in e)
    return e


def _values_equal(a, b) -> bool:
    if isinstance(a, FractalTensor):
        return a == b
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b))
    return np.array_equal(a, b)


def type_of(value) -> AnyType:
    """The static type of a runtime value (array, FractalTensor, tuple)."""
    if isinstance(value, FractalTensor):
        return value.type
    if isinstance(value, tuple):
        return TupleType(tuple(type_of(v) for v in value))
    if isinstance(value, (np.ndarray, np.generic, int, float, bool)):
        arr = np.asarray(value)
        return tensor_type(arr.shape, arr.dtype)
    raise FractalTypeError(f"{type(value).__name__} is not a fractal value (expected an array, "
                           f"a FractalTensor or a tuple of them)")


# -- construction -------------------------------------------------------------------------

def _walk_nested(node, level: int, leaves: list, depth_seen: set, level_lengths: dict) -> None:
    """`ft.fractal`'s walk (a module function: a recursive closure would be a reference cycle
    holding the caller's arrays until the cyclic GC runs)."""
    if isinstance(node, FractalTensor) and node._parts is None:
        node = list(node)  # a FractalTensor inside the nesting is a list level too
    if isinstance(node, (list, tuple)):
        level_lengths.setdefault(level, []).append(len(node))
        for child in node:
            _walk_nested(child, level + 1, leaves, depth_seen, level_lengths)
    else:
        depth_seen.add(level)
        leaves.append(node)


def fractal(nested, type: FractalTensorType | None = None) -> FractalTensor:
    """Build a FractalTensor from nested lists/tuples of array-likes (depth = list nesting).

    All leaves must share shape and dtype; list lengths may differ (ragged).
    `type=` gives the type explicitly (needed for an empty list; leaves are cast to its dtype).
    """
    if isinstance(nested, FractalTensor):
        return nested
    if not isinstance(nested, (list, tuple)):
        raise FractalTypeError(f"ft.fractal expects a (nested) list of arrays, got {_kind(nested)}")
    if type is not None and not isinstance(type, FractalTensorType):
        raise FractalTypeError(f"type= must be a FractalTensor type such as ft.FractalTensor[ft.Tensor[4]], got {type!r}")
    leaves: list = []
    depth_seen: set[int] = set()
    level_lengths: dict[int, list[int]] = {}
    _walk_nested(nested, 0, leaves, depth_seen, level_lengths)
    if any(isinstance(leaf, FractalTensor) for leaf in leaves):  # zipped lists: a zipped list of lists
        out = _from_zipped(nested)
        if type is not None and out.type != type:
            raise FractalTypeError(f"ft.fractal: the data is a {out.type} but type= says {type}")
        return out
    if len(depth_seen) > 1:
        raise FractalTypeError(f"ft.fractal: leaves appear at different nesting depths {sorted(depth_seen)}; "
                               f"every leaf of a FractalTensor sits at the same depth")
    depth = depth_seen.pop() if depth_seen else None
    if depth is None:
        if type is None:
            raise FractalTypeError("ft.fractal: cannot infer the type of a list with no leaves; "
                                   "pass type=ft.FractalTensor[ft.Tensor[...]]")
        depth = type.depth
    if type is not None and type.depth != depth:
        raise FractalTypeError(f"ft.fractal: the data has depth {depth} but type= says {type} (depth {type.depth})")
    arrays = [np.asarray(leaf) for leaf in leaves]
    bad = next((k for k, a in enumerate(arrays) if a.dtype.kind not in "biufc"), None)
    if bad is not None:  # (None, strings: cast to a float dtype they would be NaN, or fail in NumPy)
        raise FractalTypeError(f"ft.fractal: leaf {_kind(leaves[bad])} is not a number or an array of numbers")
    if type is not None:
        leaf_t = type.leaf
        if not isinstance(leaf_t, TensorType):
            raise FractalTypeError("ft.fractal builds lists of tensors; build lists of tuples with ft.zip")
        for a in arrays:
            if a.shape != leaf_t.shape:
                raise FractalTypeError(f"ft.fractal: a leaf has shape {a.shape} but type= says {leaf_t}")
        arrays = [a.astype(leaf_t.dtype, copy=False) for a in arrays]
    else:
        first = arrays[0]
        for a in arrays[1:]:
            if a.shape != first.shape or a.dtype != first.dtype:
                raise FractalTypeError(f"ft.fractal: all leaves must share shape and dtype, but found "
                                       f"{first.dtype}{list(first.shape)} and {a.dtype}{list(a.shape)}")
        leaf_t = tensor_type(first.shape, first.dtype)
        t = leaf_t
        for _ in range(depth):
            t = FractalTensorType(t)
        type = t
    if depth == 0:
        raise FractalTypeError(f"ft.fractal expects a list, got a single {_kind(nested)}")
    if arrays:
        buf = np.stack(arrays)
    else:
        buf = np.zeros((0,) + type.leaf.shape, type.leaf.dtype)
    offsets = []
    for level in range(1, depth):
        lengths = level_lengths.get(level, [])
        offsets.append(np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]).astype(np.int64))
    return FractalTensor.from_storage(type, _readonly(buf), tuple(offsets), range(len(nested)))


def _from_zipped(node) -> FractalTensor:
    """`ft.fractal` of a nesting whose leaves are zipped lists (from `ft.zip`, ...): a list of
    them, one level per nesting level (`fractal([zip(a, b), zip(c, d)])` is a list of lists
    of pairs)."""
    if isinstance(node, FractalTensor):
        return node
    if not isinstance(node, (list, tuple)) or not node:
        raise FractalTypeError("ft.fractal: a nesting of zipped lists (from ft.zip, ft.enumerate, ft.product) "
                               f"must hold only zipped lists and no empty list, but holds {_kind(node)}")
    elems = [_from_zipped(c) for c in node]
    other = next((e.type for e in elems if e.type != elems[0].type), None)
    if other is not None:
        raise FractalTypeError(f"ft.fractal: all elements must share one type, but found {elems[0].type} and {other}")
    return FractalTensor.from_elements(elems[0].type, elems)


def from_numpy(array, depth: int = 1) -> FractalTensor:
    """Turn the leading `depth` axes of a dense array into list levels (a regular FractalTensor)."""
    try:
        arr = np.asarray(array)
    except ValueError:  # NumPy: "setting an array element with a sequence ... inhomogeneous shape"
        raise FractalTypeError("from_numpy: the data is not a dense array (nested lists of different "
                               "lengths?); build a ragged list with ft.fractal(nested_lists)") from None
    if isinstance(depth, np.integer):
        depth = int(depth)
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1 or depth > arr.ndim:
        raise FractalTypeError(f"from_numpy: depth must be between 1 and the array's ndim ({arr.ndim}), got {depth!r}")
    as_dtype(arr.dtype)
    lead, leaf_shape = arr.shape[:depth], arr.shape[depth:]
    t = tensor_type(leaf_shape, arr.dtype)
    for _ in range(depth):
        t = FractalTensorType(t)
    n_leaves = int(np.prod(lead, dtype=np.int64))  # not -1: ambiguous when a leaf axis is 0
    buf = _readonly(np.array(arr.reshape((n_leaves,) + leaf_shape), copy=True))
    offsets, count = [], lead[0]
    for extent in lead[1:]:
        offsets.append(np.arange(count + 1, dtype=np.int64) * extent)
        count *= extent
    return FractalTensor.from_storage(t, buf, tuple(offsets), range(lead[0]))


def _kind(x) -> str:
    return f"{type(x).__name__} {x!r}" if len(repr(x)) < 40 else type(x).__name__
