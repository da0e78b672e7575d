"""What a block-level rule of the CUDA emitter works with (`Block`), and dealing a count of
elements out to the threads (`deal`).  What the rules ask of regions (`decode`, `aligned`,
`overwrites_its_input`) is the shared emitter's (`fractal.backends.codegen.regions`).

    >>> for line in deal(4, decode("ft_e", (2, 2), "ft_c") + ["b_y[...] = ...;"]):
    ...     print(line)
    for (int ft_e = ft_t0; ft_e < 4; ft_e += ft_tn) {
      const long long ft_c0 = ft_e / 2;
      const long long ft_c1 = ft_e % 2;
      b_y[...] = ...;
    }
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fractal.lower.hardware import GpuArch
from fractal.lower.tile_ir import Buffer, Region

from ..codegen import Emitted, offset

WARP = 32
MAX_REGISTER_STAGING = 8  # values per thread an op that overwrites what it reads holds back in registers
SCRATCH = "FT_SCRATCH_BYTES"  # in the text until every op is emitted: the bytes of a block's scratch


@dataclass
class Block:
    """What the rules need of the kernel: buffers, C++ names, threads, helpers collected."""

    buffers: dict[str, Buffer]
    names: dict[str, str]            # tile-IR variable -> C++ name
    threads: int
    chunks: int = 1
    helpers: list[str] = field(default_factory=list)
    shared: dict[str, str] = field(default_factory=dict)   # shared array name -> declaration
    status: list[tuple[str, str]] = field(default_factory=list)  # per code - 1: (op kind, index buffer)
    gpu: GpuArch | None = None       # the tensor-core shapes it has (None: SIMT GEMMs only)
    fold: tuple[str, str, str] | None = None  # a GEMM's rows span the points of this dim: (var, lo, n)
    tf32: bool = False               # float32 GEMMs may run on tensor cores in TF32 (the user's choice)
    scratch: int = 0                 # bytes of global scratch each block needs (`SCRATCH` in the text)

    def ref(self, region: Region, evars) -> str:
        return f"b_{region.buffer}[{offset(region, self.buffers[region.buffer], evars, self.names)}]"

    def dtype(self, region: Region) -> str:
        return self.buffers[region.buffer].dtype.name

    def helper(self, *texts: str) -> None:
        self.helpers.extend(texts)


def deal(count: int, body: list[str], var: str = "ft_e") -> list[str]:
    return [f"for (int {var} = ft_t0; {var} < {count}; {var} += ft_tn) {{", *("  " + x for x in body), "}"]


def value_of_text(text: str, dtype: str) -> Emitted:
    """C++ text already computed, as a value of `dtype` (for `store` and `cast`)."""
    return Emitted(text, dtype)
