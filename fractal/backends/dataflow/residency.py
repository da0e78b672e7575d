"""Resident operands: the read-only data of a stage stays on the PEs that use it, run after run.

A stage run inside a sequential loop (a stacked RNN's wavefront step) reads the same
read-only boxes at every run: a layer's weights.  Fetching them from their homes at every
run is the traffic the paper's reuse removes.  `Residency` gives every distinct *key* (the
tuple of read-only boxes a point reads) its own group of PEs for the whole program: the
points with that key always run there, the group fetches the key's boxes once, into buffers
`r_<stage>_<buffer>` that stay allocated, and every later run finds them in place.  Only
buffers nothing writes from the stage's statement on are resident (inputs, consts, and temps
written by earlier statements only: a weight laid out once), so a kept copy never goes stale.

The groups are sized from the stage's key dims (the stage dims its read-only regions read):
their extents over the whole program (`rewrite.var_ranges`) bound the number of keys, and
each key gets `PEs // keys` PEs.  A run that cannot be placed this way (more keys than
groups, a box larger than the one first seen, not enough SRAM) falls back to the ordinary
windows, which is always correct.
"""

from __future__ import annotations

import numpy as np


class Residency:
    def __init__(self, planner, stage, resident: frozenset[str]):
        self.planner, self.stage, self.buffers = planner, stage, resident
        ranges = planner.ranges
        dims = {d.var for d in stage.dims}
        key_dims = {v for op in stage.body for r in op.reads if r.buffer in resident for v in r.vars()} & dims
        extent = 1
        for v in key_dims:
            lo, hi = ranges.get(v, (0, 0))
            extent *= hi - lo + 1
        self.per_key = max(1, planner.spec.pes // max(1, extent)) if extent <= planner.spec.pes else 0
        self.groups: dict = {}         # key -> [PE ids]
        self.next_pe = 0
        self.shapes: dict = {}         # buffer -> the resident box's shape
        self.loaded: set = set()       # PE ids holding their key's boxes

    @property
    def usable(self) -> bool:
        return bool(self.buffers) and self.per_key > 0

    def names(self) -> dict[str, str]:
        return {b: f"r_{self.stage.name}_{b}" for b in sorted(self.buffers)}

    def group(self, key) -> list[int] | None:
        """The PEs of a key (given out on first sight), or None when none are left."""
        if key not in self.groups:
            if self.next_pe + self.per_key > self.planner.spec.pes:
                return None
            self.groups[key] = list(range(self.next_pe, self.next_pe + self.per_key))
            self.next_pe += self.per_key
        return self.groups[key]

    def declare(self, shapes: dict) -> bool:
        """Fix (or check) the resident boxes' shapes; False when a box outgrows the first."""
        for b, shape in shapes.items():
            known = self.shapes.setdefault(b, shape)
            if any(s > k for s, k in zip(shape, known)):
                return False
        for b, name in self.names().items():
            self.planner.declare(name, self.shapes[b], self.planner.buffers[b].dtype)
        return True

    def bytes_per_pe(self) -> int:
        return sum(int(np.prod(s, dtype=np.int64)) * self.planner.itemsize(b) for b, s in self.shapes.items())


def resident_buffers(planner, stage) -> frozenset[str]:
    """The stage's read-only operands (`Planner.read_only`) that could stay on their PEs."""
    return frozenset(r.buffer for op in stage.body for r in op.reads
                     if planner.read_only(r.buffer) and planner.home(r.buffer) is not None)

