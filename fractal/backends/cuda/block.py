"""What a block-level rule of the CUDA emitter works with (`Block`), and the pieces every rule
shares: dealing a count of elements out to the threads (`deal`), decoding a flat element
number into per-axis coordinates with constant divisors (`decode`, `coords`), NumPy's
broadcast of a load (`aligned`), and whether an op writes an element it reads as another
(`overwrites_its_input`, `disjoint`).

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
from fractal.lower.tile_affine import aff
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


def decode(flat: str, shape, prefix: str) -> list[str]:
    """Lines declaring `prefix0, prefix1, ...` (row-major coordinates of `flat` in `shape`)."""
    lines, inner = [], 1
    for k in reversed(range(len(shape))):
        n = shape[k]
        if n == 1:
            lines.append(f"const long long {prefix}{k} = 0;")
            continue
        text = flat if inner == 1 else f"{flat} / {inner}"
        if k > 0:
            text = f"({text}) % {n}" if inner != 1 else f"{flat} % {n}"
        lines.append(f"const long long {prefix}{k} = {text};")
        inner *= n
    return lines[::-1]


def deal(count: int, body: list[str], var: str = "ft_e") -> list[str]:
    return [f"for (int {var} = ft_t0; {var} < {count}; {var} += ft_tn) {{", *("  " + x for x in body), "}"]


def coords(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{k}" for k in range(n))


def aligned(region: Region, dst_shape, evars) -> tuple:
    """Element variables of a load broadcast (NumPy's rules, aligned right) to `dst_shape`."""
    shape, lead = region.shape, len(dst_shape) - len(region.shape)
    return tuple(aff(0) if n == 1 and dst_shape[lead + k] != 1 else evars[lead + k] for k, n in enumerate(shape))


def overwrites_its_input(op, reads) -> bool:
    """Whether an op may write an element of its destination that it reads as another one (a
    read of exactly the destination region is the element itself, read first)."""
    dst = op.writes[0]
    return any(r.buffer == dst.buffer and r != dst and not disjoint(r, dst) for r in reads)


def disjoint(a: Region, b: Region) -> bool:
    """Whether two regions of one buffer share no element at any point: on some axis their
    starts are a constant apart and their index ranges do not meet (a state's next row)."""
    for start_a, start_b, size_a, size_b, stride_a, stride_b in zip(a.start, b.start, a.size, b.size,
                                                                   a.stride, b.stride):
        gap = start_a - start_b
        if gap.terms:
            continue
        span_a = 1 if size_a is None else (size_a - 1) * stride_a + 1
        span_b = 1 if size_b is None else (size_b - 1) * stride_b + 1
        if gap.const >= span_b or -gap.const >= span_a or (size_a == 0 or size_b == 0):
            return True
    return False


def value_of_text(text: str, dtype: str) -> Emitted:
    """C++ text already computed, as a value of `dtype` (for `store` and `cast`)."""
    return Emitted(text, dtype)
