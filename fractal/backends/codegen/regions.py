"""What every C++ emitter asks of a tile op's regions, independent of how it deals out the
work: NumPy's broadcast of a load against its destination (`aligned`), row-major
coordinates of a flat element number with constant divisors (`decode`, `coords`), and
whether an op writes an element it reads as another one (`overwrites_its_input`,
`disjoint`), which forces it to stage its values before it stores them.

    >>> decode("e", (2, 3), "c")
    ['const long long c0 = e / 3;', 'const long long c1 = e % 3;']
    >>> aligned(Region("b", (0, 0), (1, 4)), (3, 4), ("c0", "c1"))   # a row broadcast down
    (Aff(0), 'c1')
"""

from __future__ import annotations

from fractal.lower.tile_affine import Mod, aff
from fractal.lower.tile_nodes import Region


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
    starts are a constant apart and their index ranges do not meet (a state's next row), or
    they are two slots of a rolled buffer (`c*((e + j) mod w)` against `c*((e + k) mod w)`,
    `j - k` not a multiple of `w`: at least `c` apart) and neither range reaches `c`."""
    for start_a, start_b, size_a, size_b, stride_a, stride_b in zip(a.start, b.start, a.size, b.size,
                                                                   a.stride, b.stride):
        gap = start_a - start_b
        span_a = 1 if size_a is None else (size_a - 1) * stride_a + 1
        span_b = 1 if size_b is None else (size_b - 1) * stride_b + 1
        if size_a == 0 or size_b == 0:
            return True
        if gap.terms:
            c = _slot_apart(gap)
            if c and c >= max(span_a, span_b):
                return True
            continue
        if gap.const >= span_b or -gap.const >= span_a:
            return True
    return False


def _slot_apart(gap) -> int:
    """`|c|` where `gap` is `c*((e + j) mod w) - c*((e + k) mod w)` with `j - k` not a multiple of
    `w` (two distinct slots of a rolled buffer), else 0."""
    if gap.const or len(gap.terms) != 2:
        return 0
    (x, cx), (y, cy) = gap.terms
    if not (isinstance(x, Mod) and isinstance(y, Mod)) or cx != -cy or x.c != y.c:
        return 0
    d = x.e - y.e
    return abs(cx) if d.is_const and d.const % x.c else 0
