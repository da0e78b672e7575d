"""Comparing results: structurally, with tolerances that depend on the dtype.

`compare(got, want)` walks two results side by side and returns the `Difference`s between
them, each at a path such as `result[1][0]` or `result.h`:

* `got` is a model's result (it decides the list structure and the tolerance); `want` is
  another backend's result or the user's reference.
* Tuples, lists and NamedTuples are compared element by element; their lengths must match.
* A FractalTensor is compared as the list of its elements.  On the `want` side it may also
  be a FractalTensor, nested lists of arrays, a padded array `(len, ..., *leaf)` (only the
  positions inside the lists are compared: the padding is the reference's business), or a
  pair `(padded array, lengths)` with the lengths as `padded_lengths` gives them.
* Arrays and scalars must have exactly the same shape.  Integers and booleans must be equal;
  floats are close when `|got - want| <= atol + rtol * max(|got|, |want|)`, NaN equals NaN at
  the same place, and infinities must match in sign.  The default `rtol`/`atol` are those of
  `TOLERANCES` for `got`'s dtype (a float16 model is held to float16 accuracy, a float64 one
  to float64 accuracy, whatever dtype the reference computed in).
* `same_dtype=True` (two backends) also requires equal dtypes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fractal.lang.values import FractalTensor

# dtype -> (rtol, atol): what agreement a model of that dtype can expect from an independent
# computation (another summation order, another library's exp)
TOLERANCES = {
    np.dtype(np.float16): (1e-2, 1e-3),
    np.dtype(np.float32): (1e-4, 1e-5),
    np.dtype(np.float64): (1e-9, 1e-9),
}


def tolerance(dtype, rtol: float | None = None, atol: float | None = None) -> tuple[float, float]:
    """`(rtol, atol)` for comparing values of `dtype` (exact for integers and booleans);
    `rtol`/`atol`, when given, replace the default of a float dtype."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "fc":
        return 0.0, 0.0
    base = TOLERANCES.get(np.dtype(dtype.char.lower()) if dtype.kind == "c" else dtype, TOLERANCES[np.dtype(np.float64)])
    return (base[0] if rtol is None else rtol), (base[1] if atol is None else atol)


@dataclass(frozen=True)
class Difference:
    """One place where two results differ.  `what` says how (`"values"`, `"shape"`,
    `"length"`, `"structure"`, `"dtype"`); for values, the largest absolute and relative
    errors over the leaf, the first index out of tolerance, the two values there and the
    tolerance used."""

    path: str
    what: str
    detail: str = ""
    max_abs: float = 0.0
    max_rel: float = 0.0
    index: tuple = ()
    got: object = None
    want: object = None
    rtol: float = 0.0
    atol: float = 0.0

    def __str__(self) -> str:
        if self.what != "values":
            return f"{self.path}: {self.detail}"
        at = f"[{', '.join(map(str, self.index))}]" if self.index else ""
        tol = f"rtol={self.rtol:g}, atol={self.atol:g}" if self.rtol or self.atol else "exact"
        return (f"{self.path}{at}: {_num(self.got)} vs {_num(self.want)}; max abs error {self.max_abs:.3g}, "
                f"max rel error {self.max_rel:.3g} ({self.detail}, {tol})")


def compare(got, want, *, rtol=None, atol=None, same_dtype=False, path="result") -> list[Difference]:
    """Every `Difference` between `got` (a model's result) and `want`, in path order."""
    out: list[Difference] = []
    _compare(got, want, path, out, rtol, atol, same_dtype)
    return out


def bits_equal(a, b) -> bool:
    """The same structure and the same bits in every leaf (a run against a rerun)."""
    if isinstance(a, FractalTensor) or isinstance(b, FractalTensor):
        a, b = _as_list(a), _as_list(b)
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b)
                and all(bits_equal(x, y) for x, y in zip(a, b)))
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def padded_lengths(x: FractalTensor):
    """The lengths that go with `x.to_numpy(pad_value=...)`: `len(x)` for a depth-1 list, an
    int64 array of the inner lengths for depth 2 (`[batch]`: the mask of a padded batch is
    `np.arange(T) < lengths[:, None]`), and a list of such per element deeper down."""
    if x.depth == 1:
        return len(x)
    if x.depth == 2:
        return np.array([len(e) for e in x], dtype=np.int64)
    return [padded_lengths(e) for e in x]


def unpad(array, lengths) -> list:
    """The nested lists that `array` (padded) and `lengths` (as `padded_lengths`) stand for."""
    if isinstance(lengths, (int, np.integer)):
        return [array[i] for i in range(int(lengths))]
    return [unpad(array[i], int(n) if isinstance(n, (int, np.integer)) else n) for i, n in enumerate(lengths)]


def _as_list(x) -> list:
    return list(x) if isinstance(x, FractalTensor) else x


def _is_lengths(x) -> bool:
    return (isinstance(x, (int, np.integer)) or isinstance(x, list)
            or isinstance(x, np.ndarray) and x.dtype.kind in "iu" and x.ndim == 1)


def _padded_view(x: FractalTensor, want, path: str, out: list):
    """`want`, a padded array or `(padded, lengths)` standing for list `x`, as nested lists
    (None, with a Difference recorded, when it cannot be)."""
    shape = x.to_numpy(pad_value=0).shape
    if isinstance(want, tuple):
        array, lengths = np.asarray(want[0]), want[1]
        try:
            lists = unpad(array, lengths)
        except (IndexError, TypeError, ValueError) as e:
            out.append(Difference(path, "structure", f"(padded, lengths) does not fit the list: {e}"))
            return None
        return lists
    if want.shape != shape:
        out.append(Difference(path, "shape", f"the list pads to shape {shape}, the array has shape {want.shape}"))
        return None
    return unpad(want, padded_lengths(x))


def _compare(got, want, path, out, rtol, atol, same_dtype):
    if isinstance(got, FractalTensor):
        zipped = got._parts is not None
        if not zipped and isinstance(want, np.ndarray) and not isinstance(want, FractalTensor):
            want = _padded_view(got, want, path, out)
        elif (not zipped and isinstance(want, tuple) and len(want) == 2 and isinstance(want[0], np.ndarray)
              and _is_lengths(want[1])):
            want = _padded_view(got, want, path, out)
        if want is None:
            return
        got = list(got)
    want = _as_list(want)
    if isinstance(got, (list, tuple)):
        if not isinstance(want, (list, tuple)):
            out.append(Difference(path, "structure", f"a {_kind(got)} of {len(got)} vs {_describe(want)}"))
            return
        if len(got) != len(want):
            out.append(Difference(path, "length", f"length {len(got)} vs {len(want)}"))
            return
        fields = getattr(type(got), "_fields", None)
        for i, (a, b) in enumerate(zip(got, want)):
            _compare(a, b, f"{path}.{fields[i]}" if fields else f"{path}[{i}]", out, rtol, atol, same_dtype)
        return
    if isinstance(want, (list, tuple)):
        out.append(Difference(path, "structure", f"{_describe(got)} vs a {_kind(want)} of {len(want)}"))
        return
    try:
        a, b = np.asarray(got), np.asarray(want)
    except (TypeError, ValueError) as e:
        out.append(Difference(path, "structure", f"not comparable: {e}"))
        return
    if b.dtype.kind not in "biufc":
        out.append(Difference(path, "structure", f"{_describe(got)} vs {_describe(want)}"))
        return
    if a.shape != b.shape:
        out.append(Difference(path, "shape", f"shape {a.shape} vs {b.shape}"))
        return
    if same_dtype and a.dtype != b.dtype:
        out.append(Difference(path, "dtype", f"dtype {a.dtype} vs {b.dtype}"))
        return
    diff = _values(a, b, path, rtol, atol)
    if diff is not None:
        out.append(diff)


def _values(a: np.ndarray, b: np.ndarray, path, rtol, atol) -> Difference | None:
    dtype = a.dtype if a.dtype.kind in "fc" else b.dtype if a.dtype.kind not in "biu" else a.dtype
    r, t = tolerance(dtype, rtol, atol)
    if a.dtype.kind in "biu" and b.dtype.kind in "biu":
        bad = a != b
        if not bad.any():
            return None
        err = np.abs(a.astype(np.float64) - b.astype(np.float64))
        rel = err / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1)
    else:
        x = a.astype(np.complex128 if a.dtype.kind == "c" or b.dtype.kind == "c" else np.float64)
        y = b.astype(x.dtype)
        with np.errstate(all="ignore"):
            err = np.abs(x - y)
            scale = np.maximum(np.abs(x), np.abs(y))
            nan_x, nan_y = np.isnan(x), np.isnan(y)
            same_inf = np.isinf(x) & (x == y)
            other_inf = (np.isinf(x) | np.isinf(y)) & ~same_inf
            bad = (nan_x != nan_y) | other_inf | (~nan_x & ~nan_y & ~same_inf & ~(err <= t + r * scale))
            err = np.where(nan_x & nan_y | same_inf, 0.0, np.where(nan_x != nan_y, np.inf, err))
            rel = np.where(err == 0, 0.0, err / np.where(scale > 0, scale, 1.0))
        if not bad.any():
            return None
    first = tuple(int(i) for i in np.argwhere(bad)[0]) if a.ndim else ()
    return Difference(path, "values", f"{a.dtype} vs {b.dtype}", float(np.nanmax(err)), float(np.nanmax(rel)),
                      first, a[first].item() if a.ndim else a.item(), b[first].item() if b.ndim else b.item(), r, t)


def _kind(x) -> str:
    return type(x).__name__


def _describe(x) -> str:
    if isinstance(x, (list, tuple)):
        return f"a {_kind(x)} of {len(x)}"
    if isinstance(x, np.ndarray):
        return f"an array {x.dtype}{list(x.shape)}"
    return f"a {_kind(x)}"


def _num(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)
