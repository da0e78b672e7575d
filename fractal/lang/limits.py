"""Sizes refused before anything is tried: more memory than the machine has, more points
than the compiler handles.  Each is a `ResourceError` naming the user's line and the size.

* **Points** (`MAX_POINTS = 2**30`): the lowering holds tables with an entry per point of a
  loop nest (and a list's element ids); past 2^30 points they alone take 8 GiB and build for
  hours, so a loop nest or a list (`ft.product` of two 10^5-element lists: 10^10 pairs) of more
  points is refused where it is made: eagerly, in the interpreter and in the lowering.
* **Memory of an eager op**: an op run eagerly whose results take more bytes than the host's
  memory (its record: `ft.targets.host()`, `FRACTAL_HOST` replaces it) is refused before NumPy
  allocates them.  The host's record is only asked for results over `EAGER_FLOOR` bytes.
* **Memory of a compiled program**: `fractal.lower.memory` (the sum of its buffers against the
  target's memory).

This layer cannot import the host description (it sits above): the `fractal` package installs
the function that reads it, `Runner.memory` (`fractal.lang.runner`).
"""

from __future__ import annotations

import numpy as np

from .errors import ResourceError
from .runner import host_memory
from .types import TensorType

MAX_POINTS = 1 << 30
EAGER_FLOOR = 64 << 20  # results smaller than this are never checked (no host lookup)


def size_text(n: int) -> str:
    """`n` bytes with a binary unit, e.g. `64.8 GiB`."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} B"


def check_points(n: int, what: str) -> None:
    """Refuse `n` points (or list elements) of `what` past `MAX_POINTS`."""
    if n > MAX_POINTS:
        raise ResourceError(f"{what} has {n:,} points, more than the {MAX_POINTS:,} (2^30) fractal handles "
                            f"in one loop nest or list (its tables alone would take {size_text(8 * n)})")


def tensor_bytes(t: TensorType) -> int:
    return int(np.prod(t.shape, dtype=np.float64)) * t.dtype.itemsize


def check_eager(op: str, out_types) -> None:
    """Refuse an eager op whose tensor results do not fit in the host's memory."""
    need = sum(tensor_bytes(t) for t in out_types if isinstance(t, TensorType))
    if need <= EAGER_FLOOR:
        return
    have = host_memory()
    if have is not None and need > have:
        raise ResourceError(f"{op}: its result needs {need:,} bytes ({size_text(need)}), more than the host's "
                            f"{have:,} bytes ({size_text(have)}) of memory")
