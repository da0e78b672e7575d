"""The dataflow backend's errors: a plan or a run that does not fit the machine, or cannot finish."""

from __future__ import annotations

from fractal.lang.errors import FractalError, ResourceError


class DeadlockError(FractalError):
    """Every unfinished PE is blocked and no message is on its way: the message prints the
    wait-for graph's cycle, e.g. ``PE (0,0) waits for (0,1) on channel 3 <- PE (0,1) waits for
    (0,0) on channel 4``; `cycle` holds its edges `(pe, waits_for, channel)` (empty when the
    chain of waits ends at a PE that has finished: `chain` holds that chain)."""

    def __init__(self, message: str, loc=None, *, cycle: tuple = (), chain: tuple = ()):
        self.cycle, self.chain = tuple(cycle), tuple(chain)
        super().__init__(message, loc)

    def __reduce__(self):
        return (type(self), (self.message, self.loc), {"cycle": self.cycle, "chain": self.chain})


class SramCapacityError(ResourceError):
    """A PE needs more SRAM than the mesh gives it (`MeshSpec.usable_bytes`): `pe`, `where` (the
    superstep), `buffer`, `requested` bytes, the bytes already `live`, and the `capacity`.
    Raised when a plan is made (the static check) and, as a safety net, when it runs."""

    def __init__(self, pe, where, buffer, requested, live, capacity, loc=None):
        self.pe, self.where, self.buffer = tuple(pe), where, buffer
        self.requested, self.live, self.capacity = int(requested), int(live), int(capacity)
        super().__init__(f"PE ({pe[0]},{pe[1]}) runs out of SRAM at {where}: {buffer} needs {requested} bytes "
                         f"with {live} live, {live + requested} > capacity {capacity}", loc)

    def __reduce__(self):
        return (type(self), (self.pe, self.where, self.buffer, self.requested, self.live, self.capacity, self.loc))


class RouteLimitError(ResourceError):
    """A router would carry more channels (colors, virtual channels) than the machine has."""
