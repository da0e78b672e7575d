"""What the native emitter's rules share: the program's buffers and C++ names (`Scope`), and
nested element loops (`loops`).

    >>> print("\\n".join(loops((2, 3), ("ft_c0", "ft_c1"), ["b_y[3*ft_c0 + ft_c1] = 0;"])))
    for (long long ft_c0 = 0; ft_c0 < 2; ++ft_c0) {
      for (long long ft_c1 = 0; ft_c1 < 3; ++ft_c1) {
        b_y[3*ft_c0 + ft_c1] = 0;
      }
    }
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from fractal.lower.tile_ir import Buffer, Region

from ..codegen import HOST, offset

# Host C++ with float32 exp and tanh of its own (`vecmath.h`): libm's are scalar calls, which
# keep a loop of an LSTM cell's gates from vectorising
NATIVE = replace(HOST, name="native", math_names={("exp", "float32"): "ft_expf", ("tanh", "float32"): "ft_tanhf"})
VECMATH = Path(__file__).with_name("vecmath.h").read_text()
KERNELS = Path(__file__).with_name("kernels.h").read_text()   # a point's small products, register-blocked


PARALLEL_MIN_WORK = 1 << 15   # elements a stage (or an op of a stage without dims) must touch to be shared among threads


@dataclass
class Scope:
    """What the rules need of the program: buffers, C++ names, helpers and status codes collected."""

    buffers: dict[str, Buffer]
    names: dict[str, str]                                        # tile-IR variable -> C++ name
    helpers: list[str] = field(default_factory=list)
    status: list[tuple[str, str]] = field(default_factory=list)  # per code - 1: (op kind, index buffer)
    blas: bool = False                                           # a BLAS is bound: big products call it
    stages: dict[str, int] = field(default_factory=dict)         # stage name -> its profile slot
    program: object = None                                       # the TileProgram (point-major loops' legality)
    target: object = None                                        # its Target (their cost policy); None: none
    op_threads: bool = False                                     # an op's outer loop may be shared among threads

    def shared_loop(self, elements: int) -> list[str]:
        """The pragma sharing an op's next loop (its iterations independent) among threads,
        where the op runs outside any point loop (`op_threads`: a stage without dims, such
        as graphsage's gather of every edge's neighbour row) and touches enough elements."""
        if not self.op_threads or elements < PARALLEL_MIN_WORK:
            return []
        return ["#pragma omp parallel for schedule(static) num_threads(ft_threads)"]

    def ref(self, region: Region, evars) -> str:
        return f"b_{region.buffer}[{offset(region, self.buffers[region.buffer], evars, self.names)}]"

    def dtype(self, region: Region) -> str:
        return self.buffers[region.buffer].dtype.name

    def ctype(self, region: Region) -> str:
        return NATIVE.ctype[self.dtype(region)]

    def helper(self, *texts: str) -> None:
        self.helpers.extend(texts)

    def code(self, kind: str, index: str) -> int:
        """The status code of an op that can find its index out of range."""
        self.status.append((kind, index))
        return len(self.status)


def loops(shape, evars, body: list[str], skip=()) -> list[str]:
    """`body` inside one `for` per axis of `shape` (element variables `evars`), the last
    innermost; axes in `skip` are declared by the caller."""
    out, depth = [], 0
    for n, v in zip(shape, evars):
        if v in skip:
            continue
        out.append("  " * depth + f"for (long long {v} = 0; {v} < {n}; ++{v}) {{")
        depth += 1
    out += ["  " * depth + line for line in body]
    out += ["  " * d + "}" for d in reversed(range(depth))]
    return out

