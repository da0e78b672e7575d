"""The memory a compiled program needs, checked against its target before it is built.

The cpu backend allocates every temporary and constant buffer when it builds the program and
the outputs at each run, all at once (`fractal.backends.cpu.executor`), so the rule is the sum
of the bytes of every buffer but the inputs (the caller's arrays): a program needing more than
the target's main memory (the last, largest level of its hardware record: a CPU's DRAM, from
`ft.targets.host()` or `FRACTAL_HOST` for this machine) is refused with a `ResourceError`
naming the sizes and pointing at the line whose value has the largest buffer.  (The scratch
arrays of single ops come on top; this bound is the one a program cannot go below.)
"""

from __future__ import annotations

import numpy as np

from ..lang.errors import ResourceError
from ..lang.limits import size_text
from .target import Target
from .tile_ir import Buffer, TileProgram


def buffer_bytes(b: Buffer) -> int:
    return int(np.prod(b.shape, dtype=np.float64)) * b.dtype.itemsize


def check_memory(program: TileProgram, target: Target, locs: dict) -> None:
    """Refuse `program` when its buffers (all but the inputs) need more than `target`'s memory;
    `locs`: buffer -> the source line of the value it was made for."""
    have = target.hardware.levels[-1].size_bytes
    sizes = sorted(((buffer_bytes(b), b) for b in program.buffers if b.role != "input"), key=lambda x: -x[0])
    need = sum(n for n, _ in sizes)
    if need <= have:
        return
    n, largest = next(((n, b) for n, b in sizes if b.name in locs), sizes[0])
    shape = ",".join(map(str, largest.shape))
    raise ResourceError(f"{program.name}: the compiled program needs {need:,} bytes ({size_text(need)}) for its "
                        f"{len(sizes)} buffers, more than the {have:,} bytes ({size_text(have)}) of memory of "
                        f"the target {target.name!r}; the largest, {largest.name} ({largest.dtype}[{shape}], "
                        f"{size_text(n)}), holds a value of this line", locs.get(largest.name))
