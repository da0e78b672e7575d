"""What a mesh program can need beyond its machine (SRAM per PE, channels per router), and a
run that cannot finish (a deadlock).

The first two are `ResourceError`s (a `FractalError` and a `MemoryError`): `verify_mesh` raises them
before a plan runs (`fractal.backends.dataflow.mesh_verify`), and an executor that tracks the
same quantities while it runs may raise them again as a safety net.  The attributes say what
a planner or a person needs to act: which PE or router, where in the program, how much.
"""

from __future__ import annotations

from fractal.lang.errors import FractalError, ResourceError


class SramCapacityError(ResourceError):
    """PE `pe` needs `requested` more bytes for `buffer` at `where` (a superstep's label, or "load")
    while `live` bytes are live, and only `capacity` (`spec.usable_bytes`) exist."""

    def __init__(self, pe: tuple[int, int], where: str, buffer: str, requested: int, live: int, capacity: int,
                 loc=None):
        self.pe, self.where, self.buffer = tuple(int(x) for x in pe), str(where), str(buffer)
        self.requested, self.live, self.capacity = int(requested), int(live), int(capacity)
        super().__init__(
            f"PE {self.pe} runs out of SRAM at {self.where}: {self.buffer} needs {self.requested} bytes while "
            f"{self.live} are live, {self.live + self.requested} > {self.capacity} usable bytes per PE "
            f"(sram_bytes - reserved_bytes); free buffers earlier, partition finer or rotate instead of replicating",
            loc)

    def __reduce__(self):
        return type(self), (self.pe, self.where, self.buffer, self.requested, self.live, self.capacity, self.loc)


class RouteLimitError(ResourceError):
    """Router `router` is crossed by messages of `count` distinct channels; the machine routes
    at most `limit` (`spec.max_channels_per_router`: colors, virtual channels)."""

    def __init__(self, router: tuple[int, int], count: int, limit: int, channels: tuple[int, ...] = (), loc=None):
        self.router, self.count, self.limit = tuple(int(x) for x in router), int(count), int(limit)
        self.channels = tuple(int(c) for c in channels)
        listed = f" (channels {', '.join(map(str, self.channels))})" if self.channels else ""
        super().__init__(
            f"router {self.router} is crossed by messages of {self.count} channels{listed}, more than the "
            f"{self.limit} it can route (max_channels_per_router); reuse channels across routes that do not meet", loc)

    def __reduce__(self):
        return type(self), (self.router, self.count, self.limit, self.channels, self.loc)


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
