"""The dataflow backend's errors: a plan or a run that does not fit the machine, or cannot finish."""

from __future__ import annotations

from fractal.lang.errors import FractalError, ResourceError


class SramCapacityError(ResourceError):
    """A PE's live buffers exceed its SRAM (`MeshSpec.usable_bytes`): raised when a plan is made
    (the static check over the program) and, as a safety net, when it runs."""

    def __init__(self, pe, where: str, buffer: str, requested: int, live: int, capacity: int, loc=None):
        self.pe, self.where, self.buffer = tuple(pe), where, buffer
        self.requested, self.live, self.capacity = int(requested), int(live), int(capacity)
        super().__init__(f"PE {self.pe} runs out of SRAM at {where}: {buffer} needs {self.requested} bytes with "
                         f"{self.live} live, over the {self.capacity} bytes it has", loc)

    def __reduce__(self):
        return (type(self), (self.pe, self.where, self.buffer, self.requested, self.live, self.capacity, self.loc))


class DeadlockError(FractalError):
    """Every PE still running waits for a message no one will send; `cycle` is the wait-for cycle."""

    def __init__(self, message: str, cycle=(), loc=None):
        self.cycle = tuple(cycle)
        super().__init__(message, loc)

    def __reduce__(self):
        return (type(self), (self.message, self.cycle, self.loc))


class RouteLimitError(ResourceError):
    """A router would carry more channels (colors, virtual channels) than the machine has."""
