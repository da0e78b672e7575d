"""Hardware described as data, for the tiling policy (Roller-style construction, no tuning).

A `Hardware` record names a machine's kind (cpu, gpu, dataflow), its parallel units (cores, SMs,
PEs), its memory `levels` from fastest to slowest, its peak GFLOP/s per dtype, the tile
alignment its kernels want and the level a GEMM tile must fit (`tile_level`).  Level sizes are per
instance (per core, SM or PE for private levels; `shared_by` says how many units share one);
bandwidths are chip-wide aggregates in GB/s.

`this_cpu()` reads this machine from the OS; `A100_SXM_80GB` and `H100_SXM` come from NVIDIA's
spec sheets; `pe_mesh()` builds a dataflow mesh following the machine model of
shared/reference/dataflow.md (rows x cols PEs, private SRAM, link bandwidth, hop latency).
`gemm_tile()` constructs the GEMM tile with the best compute/traffic ratio that fits `tile_level`.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

KINDS = ("cpu", "gpu", "dataflow")
_UNIT_WORD = {"cpu": "cores", "gpu": "SMs", "dataflow": "PEs"}
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class MemoryLevel:
    """One level of the hierarchy: bytes per instance, aggregate GB/s, transaction (line) bytes."""

    name: str
    size_bytes: int
    bandwidth_gbs: float
    transaction_bytes: int = 64
    shared_by: int = 1

    def __post_init__(self):
        if self.size_bytes <= 0 or self.transaction_bytes <= 0 or self.shared_by <= 0:
            raise ValueError(f"memory level {self.name!r}: sizes and sharing must be positive: {self!r}")

    def __str__(self) -> str:
        shared = f", shared by {self.shared_by}" if self.shared_by > 1 else ""
        return (f"{self.name:<10} {_bytes_text(self.size_bytes):>9}  {self.bandwidth_gbs:>8.0f} GB/s  "
                f"{self.transaction_bytes} B lines{shared}")


@dataclass(frozen=True)
class Hardware:
    """A machine as the tiling policy sees it (see the module docstring for units)."""

    name: str
    kind: str
    cores: int
    simd_width_bytes: int
    levels: tuple[MemoryLevel, ...]
    peak_gflops: tuple[tuple[str, float], ...]
    tile_align: int            # tile sides are multiples of this many elements (or a whole dim)
    tile_level: str            # the level a GEMM working set must fit
    clock_ghz: float = 1.0
    warp_size: int = 1         # gpu: threads per warp
    max_threads_per_block: int = 1
    mesh_shape: tuple[int, int] | None = None   # dataflow: (rows, cols)
    link_gbs: float = 0.0      # dataflow: per link, per direction
    hop_latency_cycles: int = 0
    source: str = field(default="", compare=False)  # provenance of the numbers

    def __post_init__(self):
        object.__setattr__(self, "levels", tuple(self.levels))
        object.__setattr__(self, "peak_gflops", tuple((str(d), float(g)) for d, g in self.peak_gflops))
        names = [level.name for level in self.levels]
        problems = [(self.kind not in KINDS, f"kind {self.kind!r} is not one of {KINDS}"),
                    (not names or len(set(names)) != len(names), f"level names {names} are not unique"),
                    (self.tile_level not in names, f"tile level {self.tile_level!r} is not one of {names}"),
                    (min(self.cores, self.tile_align, self.simd_width_bytes) <= 0,
                     "cores, tile alignment and SIMD width must be positive")]
        for bad, message in problems:
            if bad:
                raise ValueError(f"hardware {self.name!r}: {message}")

    def level(self, name: str) -> MemoryLevel:
        return _lookup(self, "memory level", name, {level.name: level for level in self.levels})

    def peak(self, dtype) -> float:
        """Peak GFLOP/s for a dtype (np.dtype, or a name such as 'float32', 'tf32', 'bfloat16')."""
        return _lookup(self, "peak for dtype", dtype if isinstance(dtype, str) else np.dtype(dtype).name,
                       dict(self.peak_gflops))

    def __str__(self) -> str:
        mesh = f", mesh {self.mesh_shape[0]}x{self.mesh_shape[1]}, links {self.link_gbs:g} GB/s" \
            if self.mesh_shape else ""
        warp = f", warp {self.warp_size}, {self.max_threads_per_block} threads/block" if self.kind == "gpu" else ""
        head = (f"{self.name} ({self.kind}): {self.cores} {_UNIT_WORD[self.kind]} at {self.clock_ghz:g} GHz, "
                f"SIMD {self.simd_width_bytes} B{warp}{mesh}; tiles aligned to {self.tile_align}, "
                f"fit in {self.tile_level}")
        peaks = ", ".join(f"{d} {g:.0f}" for d, g in self.peak_gflops)
        return "\n".join([head, *(f"  {level}" for level in self.levels), f"  peak GFLOP/s: {peaks}"])


def _lookup(hw: Hardware, what: str, key: str, table: dict):
    if key not in table:
        raise KeyError(f"hardware {hw.name!r} has no {what} {key!r}; known: {list(table)}")
    return table[key]


def _bytes_text(n: int) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{n / size:.4g} {unit}"
    return f"{n} B"


def fits(hw: Hardware, level_name: str, nbytes: int) -> bool:
    """Whether `nbytes` fit in one instance of the named level."""
    return nbytes <= hw.level(level_name).size_bytes


def gemm_tile(hw: Hardware, m: int, n: int, k: int, itemsize: int) -> tuple[int, int, int]:
    """The (mt, nt, kt) GEMM tile with the best compute/traffic ratio whose working set
    (mt*kt + kt*nt + mt*nt) * itemsize fits `hw.tile_level`.

    Each side is a multiple of `hw.tile_align` not above its dim, or the whole dim.  The ratio
    mt*nt*kt / (mt*kt + kt*nt + mt*nt) = 1 / (1/mt + 1/nt + 1/kt) grows in every side, so for
    each (mt, nt) the best kt is the largest that fits, and once a side is <= the best ratio so
    far (the ratio is below every side) no smaller side can win.  Ties go to the larger volume,
    then the larger mt, then nt.  Raises ValueError when even the smallest tile does not fit.
    """
    if min(m, n, k, itemsize) <= 0:
        raise ValueError(f"gemm_tile: dims and itemsize must be positive, got m={m} n={n} k={k} itemsize={itemsize}")
    align, cap = hw.tile_align, hw.level(hw.tile_level).size_bytes // itemsize

    def largest(dim: int, bound: int) -> int:  # the largest allowed side <= bound, 0 if none
        return dim if dim <= bound else bound // align * align

    mmin, nmin, kmin = (min(d, align) for d in (m, n, k))
    best, best_num, best_den = None, 0, 1     # best ratio so far: best_num / best_den
    mt = largest(m, (cap - kmin * nmin) // (nmin + kmin))
    while mt > 0 and mt * best_den > best_num:                # mt > best ratio
        nt = largest(n, (cap - kmin * mt) // (mt + kmin))
        while nt > 0 and nt * best_den > best_num:            # nt > best ratio
            kt = largest(k, (cap - mt * nt) // (mt + nt))
            if kt > 0:
                num, den = mt * nt * kt, mt * kt + kt * nt + mt * nt
                if num * best_den > best_num * den or (num * best_den == best_num * den and num > best_num):
                    best, best_num, best_den = (mt, nt, kt), num, den
            nt = (nt - 1) // align * align       # the next allowed side below
        mt = (mt - 1) // align * align
    if best is None:
        raise ValueError(f"gemm_tile: even a {mmin}x{nmin}x{kmin} tile of {itemsize}-byte items does not fit "
                         f"{hw.tile_level} ({_bytes_text(hw.level(hw.tile_level).size_bytes)}) on {hw.name}")
    return best


# --- records for the CUDA and dataflow backends -------------------------------------------------
# Tags as in shared/reference/dataflow.md: [S] spec sheet, [D] derived from [S] numbers, [U] an
# unofficial estimate.  Peaks are dense (the sheets print tensor-core peaks "with sparsity", 2x).
# Shared memory and register bandwidth [D]: 32 banks x 4 B per SM per cycle; 3 operands x 4 B per
# FP32 lane per cycle; both x SMs x boost clock.

# NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB) and the A100 architecture whitepaper (2020):
# 108 SMs, 1410 MHz boost, 256 KB registers and up to 164 KB shared memory per SM, 40 MB L2,
# 2,039 GB/s HBM2e, FP64 9.7 / FP32 19.5 / TF32 156 / FP16 and BF16 312 TFLOPS [S].
# L2 bandwidth: 2.3x V100's (whitepaper) at about 2.2 TB/s measured for V100 [U].
A100_SXM_80GB = Hardware(
    "A100_SXM_80GB", "gpu", cores=108, simd_width_bytes=128, clock_ghz=1.41, warp_size=32,
    max_threads_per_block=1024, tile_align=16, tile_level="shared",
    levels=(MemoryLevel("registers", 256 * KiB, 768 * 108 * 1.41, 4),
            MemoryLevel("shared", 164 * KiB, 128 * 108 * 1.41, 128),
            MemoryLevel("L2", 40 * MiB, 5100.0, 32, shared_by=108),
            MemoryLevel("HBM", 80 * GiB, 2039.0, 32, shared_by=108)),
    peak_gflops=(("float64", 9_700.0), ("float32", 19_500.0), ("tf32", 156_000.0),
                 ("float16", 312_000.0), ("bfloat16", 312_000.0)),
    source="NVIDIA A100 datasheet and whitepaper [S]; L2 bandwidth [U]")

# NVIDIA H100 Tensor Core GPU datasheet (SXM5) and the Hopper architecture whitepaper (2022):
# 132 SMs, 1980 MHz boost, 256 KB registers and up to 228 KB shared memory per SM, 50 MB L2,
# 3.35 TB/s HBM3, FP64 34 / FP32 67 / TF32 494.7 / FP16 and BF16 989.4 TFLOPS dense [S].
# L2 bandwidth: about 1.3x A100's per clock-scaled microbenchmarks (chipsandcheese.com, 2023) [U].
H100_SXM = Hardware(
    "H100_SXM", "gpu", cores=132, simd_width_bytes=128, clock_ghz=1.98, warp_size=32,
    max_threads_per_block=1024, tile_align=16, tile_level="shared",
    levels=(MemoryLevel("registers", 256 * KiB, 1536 * 132 * 1.98, 4),
            MemoryLevel("shared", 228 * KiB, 128 * 132 * 1.98, 128),
            MemoryLevel("L2", 50 * MiB, 7000.0, 32, shared_by=132),
            MemoryLevel("HBM", 80 * GiB, 3350.0, 32, shared_by=132)),
    peak_gflops=(("float64", 34_000.0), ("float32", 67_000.0), ("tf32", 494_700.0),
                 ("float16", 989_400.0), ("bfloat16", 989_400.0)),
    source="NVIDIA H100 datasheet and whitepaper [S]; L2 bandwidth [U]")


def pe_mesh(rows: int, cols: int, sram_kib: float = 48.0, link_gbs: float = 4.0, *, reserved_kib: float = 0.0,
            hop_latency_cycles: int = 1, clock_ghz: float = 1.0, flops_per_cycle: float = 1.0,
            sram_bytes_per_cycle: float = 24.0, tile_align: int = 1, name: str = "") -> Hardware:
    """A rows x cols mesh of PEs with private SRAM (dataflow.md, section 4.1).

    Defaults follow a Cerebras WSE-2 PE: 48 KB SRAM [S], one 32-bit wavelet per link per direction
    per cycle at about 1 GHz = 4 GB/s [S/D], 1 cycle per hop [U], about 24 B/cycle SRAM [D].  Per-PE
    FLOP rates come only from secondary sources [U], so the default `flops_per_cycle=1` is
    deliberately conservative: pass the rate of the mesh being modelled.  Tiles must fit the SRAM left after
    `reserved_kib` (code and runtime); the "mesh" level is all PEs' SRAM, reached over the links.
    """
    if rows <= 0 or cols <= 0 or sram_kib <= reserved_kib:
        raise ValueError(f"pe_mesh: need rows, cols > 0 and sram_kib > reserved_kib, "
                         f"got {rows}x{cols}, {sram_kib} KiB with {reserved_kib} KiB reserved")
    pes, usable = rows * cols, int((sram_kib - reserved_kib) * KiB)
    directed_links = 2 * (rows * (cols - 1) + cols * (rows - 1))
    return Hardware(
        name or f"pe_mesh_{rows}x{cols}", "dataflow", cores=pes, simd_width_bytes=4, clock_ghz=clock_ghz,
        mesh_shape=(rows, cols), link_gbs=link_gbs, hop_latency_cycles=hop_latency_cycles,
        tile_align=tile_align, tile_level="sram",
        levels=(MemoryLevel("sram", usable, pes * sram_bytes_per_cycle * clock_ghz, 4),
                MemoryLevel("mesh", usable * pes, max(directed_links, 1) * link_gbs, 4, shared_by=pes)),
        peak_gflops=(("float32", pes * flops_per_cycle * clock_ghz),),
        source="dataflow.md presets: WSE-2 defaults [S/D], conservative compute rate [U]")


# --- this machine ------------------------------------------------------------------------------

# Estimates used when nothing is measured (why: compilation must not run a benchmark).  A core
# issues 2 FMAs (4 flops) per cycle per SIMD lane, typical of x86 and Arm server cores; the clock,
# bytes per cycle per core (registers: 3 vectors, L1: 2 vector loads) and DRAM rate are typical
# values, not read from the machine.
_CPU_CLOCK_GHZ = 2.5
_CPU_FLOPS_PER_LANE_CYCLE = 4
_CPU_L2_L3_BYTES_PER_CYCLE = {"L2": 32, "L3": 16}
_CPU_DRAM_GBS = 20.0
_CPU_VECTOR_REGISTERS = 16
_GENERIC_CACHES = ((1, 32 * KiB, 64, 1), (2, 1 * MiB, 64, 1), (3, 8 * MiB, 64, 0))  # 0: shared by all
_SYS_CACHE = "/sys/devices/system/cpu/cpu0/cache"
_MEASURED: dict[str, tuple[int, float]] = {}  # dtype -> (n, GFLOP/s) of the largest n measured


def _read_text(path: str) -> str | None:
    """The stripped contents of a file, or None when it cannot be read (monkeypatched in tests)."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _parse_size(text: str) -> int:
    scale = {"K": KiB, "M": MiB, "G": GiB}.get(text[-1:].upper(), 1)
    return int(text.rstrip("KMGkmg")) * scale


def _count_cpus(cpu_list: str) -> int:
    """'0-3,8' -> 5."""
    spans = (part.partition("-") for part in cpu_list.split(",") if part)
    return sum(int(hi or lo) - int(lo) + 1 for lo, _, hi in spans)


def _read_caches(cores: int) -> list[tuple[int, int, int, int]]:
    """(level, size, line bytes, shared_by) of cpu0's data caches, or generic ones if unreadable."""
    caches = {}
    for index in range(16):
        base = f"{_SYS_CACHE}/index{index}"
        level, kind, size = (_read_text(f"{base}/{f}") for f in ("level", "type", "size"))
        if level is None:
            break
        if kind == "Instruction" or not size:
            continue
        try:
            line = int(_read_text(f"{base}/coherency_line_size") or 64)
            shared = _count_cpus(_read_text(f"{base}/shared_cpu_list") or "0")
            entry = (int(level), _parse_size(size), line, shared)
        except ValueError:  # an unexpected format: skip this cache rather than fail compilation
            continue
        if min(entry) > 0:
            caches.setdefault(entry[0], entry)
    if not caches:
        return [(lv, size, line, shared or cores) for lv, size, line, shared in _GENERIC_CACHES]
    return [caches[lv] for lv in sorted(caches)]


def _cpuinfo() -> tuple[str, int]:
    """The model name and SIMD width in bytes (AVX-512, AVX, else 16 as SSE and NEON)."""
    text = _read_text("/proc/cpuinfo") or ""
    names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
    flags = set(text.split())
    return (names or ["generic cpu"])[0], 64 if "avx512f" in flags else 32 if "avx" in flags else 16


def _dram_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return 8 * GiB


def this_cpu(measure: bool = False) -> Hardware:
    """This machine.  Peaks are measured NumPy GEMM rates when `measure` (or when measured
    earlier in this process), else the estimate cores x lanes x 4 flops x 2.5 GHz."""
    (model, simd), cores = _cpuinfo(), _cpu_count()
    bytes_per_cycle = {"registers": 3 * simd, "L1": 2 * simd, **_CPU_L2_L3_BYTES_PER_CYCLE}
    gbs = {name: bpc * _CPU_CLOCK_GHZ * cores for name, bpc in bytes_per_cycle.items()}
    levels = [MemoryLevel("registers", _CPU_VECTOR_REGISTERS * simd, gbs["registers"], simd)]
    for lv, size, line, shared in _read_caches(cores):
        name = f"L{lv}"
        levels.append(MemoryLevel(name, size, gbs.get(name, _CPU_DRAM_GBS), line, shared))
    levels.append(MemoryLevel("DRAM", _dram_bytes(), _CPU_DRAM_GBS, 64, cores))
    names = {level.name for level in levels}
    dtypes = ("float32", "float64")
    measured = {d: measured_gemm_gflops(d) for d in dtypes} if measure else \
        {d: gflops for d, (_, gflops) in _MEASURED.items()}
    lanes = {d: simd // np.dtype(d).itemsize for d in dtypes}
    peaks = [(d, measured.get(d, cores * lanes[d] * _CPU_FLOPS_PER_LANE_CYCLE * _CPU_CLOCK_GHZ)) for d in dtypes]
    return Hardware(model, "cpu", cores, simd, tuple(levels), tuple(peaks),
                    tile_align=8,  # BLAS micro-kernels block by multiples of 8 (AVX2 f32 lanes)
                    tile_level=next(lv for lv in ("L2", "L1", "L3", "DRAM") if lv in names),
                    clock_ghz=_CPU_CLOCK_GHZ,
                    source="measured NumPy GEMM" if measured else "estimate: os + /sys, documented constants")


@functools.lru_cache(maxsize=None)
def measured_gemm_gflops(dtype: str = "float32", n: int = 1024, repeats: int = 5) -> float:
    """Median GFLOP/s of np.matmul on n x n operands (2 n^3 flops), once per process."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    np.matmul(a, b)  # warm up: thread pool, page faults
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b)
        times.append(time.perf_counter() - start)
    gflops = 2.0 * n ** 3 / max(statistics.median(times), 1e-9) / 1e9
    if n >= _MEASURED.get(dtype, (0, 0.0))[0]:
        _MEASURED[dtype] = (n, gflops)
    return gflops
