"""Hardware described as data, for the tiling policy (Roller-style construction, no tuning).

A `Hardware` record names a machine's kind (cpu, gpu, dataflow), its parallel units (cores, SMs,
PEs), its memory `levels` from fastest to slowest, its peak GFLOP/s per dtype, the tile
alignment its kernels want and the level a GEMM tile must fit (`tile_level`).  Level sizes are per
instance (per core, SM or PE for private levels; `shared_by` says how many units share one);
bandwidths are chip-wide aggregates in GB/s.

CPU records are built by the CPU backend (`fractal.backends.cpu.machines`, and this machine's
by `fractal.backends.cpu.host`); `A100_SXM_80GB` and `H100_SXM` come from NVIDIA's spec sheets;
`pe_mesh()` builds a dataflow mesh following the machine model of shared/reference/dataflow.md
(rows x cols PEs, private SRAM, link bandwidth, hop latency).  Records are data: the compiler
never reads the machine it runs on (a `fractal.lower.target.Target` carries the record).
`gemm_tile()` constructs the GEMM tile with the best compute/traffic ratio that fits `tile_level`.
"""

from __future__ import annotations

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
class GpuArch:
    """What a GPU's compute capability fixes, whatever the product: the limits a kernel launch
    must respect and the tensor-core shapes it may use (`mma_shapes`: dtype -> the `mma.sync`
    shapes (m, n, k), first the one to prefer).  Sizes in bytes, registers as 32-bit counts."""

    name: str                  # "sm_90"
    shared_per_sm: int
    shared_per_block: int      # the most one block may ask for (above 48 KiB: dynamic, by opt-in)
    max_threads_per_sm: int
    max_blocks_per_sm: int
    fp32_lanes_per_sm: int     # FP32 results per SM per cycle
    mma_shapes: tuple[tuple[str, tuple[tuple[int, int, int], ...]], ...]
    registers_per_sm: int = 65536
    registers_per_block: int = 65536
    registers_per_thread: int = 255
    static_shared_per_block: int = 48 * KiB   # without the opt-in
    shared_banks: int = 32     # 4-byte banks

    @property
    def compute_capability(self) -> tuple[int, int]:
        digits = self.name.removeprefix("sm_").rstrip("af")
        return int(digits[:-1]), int(digits[-1])

    def mma(self, dtype) -> tuple[tuple[int, int, int], ...]:
        """The `mma.sync` shapes for a dtype name ('float16', 'tf32'...); () where it has none."""
        return dict(self.mma_shapes).get(dtype if isinstance(dtype, str) else np.dtype(dtype).name, ())

    def __str__(self) -> str:
        cc = ".".join(map(str, self.compute_capability))
        mma = "; ".join(f"{d} " + " ".join(f"m{m}n{n}k{k}" for m, n, k in shapes) for d, shapes in self.mma_shapes)
        return (f"{self.name} (compute capability {cc}): shared {_bytes_text(self.shared_per_sm)}/SM, "
                f"{_bytes_text(self.shared_per_block)}/block ({_bytes_text(self.static_shared_per_block)} static), "
                f"{self.shared_banks} banks; {self.registers_per_sm} registers/SM, {self.registers_per_block}/block, "
                f"{self.registers_per_thread}/thread; {self.max_threads_per_sm} threads and "
                f"{self.max_blocks_per_sm} blocks/SM; {self.fp32_lanes_per_sm} FP32 lanes/SM\n"
                f"mma.sync shapes: {mma}")


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
    gpu: GpuArch | None = None   # gpu: the per-block and per-SM limits of its compute capability
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
        arch = [f"  {line}" for line in str(self.gpu).splitlines()] if self.gpu else []
        return "\n".join([head, *(f"  {level}" for level in self.levels), f"  peak GFLOP/s: {peaks}", *arch])


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
# unofficial estimate (a placeholder until measured).  Peaks are dense (the sheets print
# tensor-core peaks "with sparsity", 2x).  Shared memory and register bandwidth [D]: 32 banks x 4 B
# per SM per cycle; 3 operands x 4 B per FP32 lane per cycle; both x SMs x boost clock.

# Per compute capability [S]: the CUDA C++ Programming Guide (12.x), table "Technical
# Specifications per Compute Capability" (shared memory per SM and per block, threads and blocks
# per SM; 64K 32-bit registers per SM and per block, 255 per thread, 48 KB static shared memory
# per block and 32 banks for all three); FP32 lanes per SM from the NVIDIA A100 (GA100: 64),
# Ada (AD10x: 128) and Hopper (GH100: 128) architecture whitepapers; `mma.sync` shapes from the
# PTX ISA (8.x), "Warp-level matrix multiply-accumulate instructions", table of shapes per type
# (f64 m16n8k{4,8,16} from sm_90 on).
_MMA_AMPERE = (("float16", ((16, 8, 16), (16, 8, 8))), ("bfloat16", ((16, 8, 16), (16, 8, 8))),
               ("tf32", ((16, 8, 8), (16, 8, 4))), ("float64", ((8, 8, 4),)),
               ("int8", ((16, 8, 32), (16, 8, 16), (8, 8, 16))))
ARCHS = {arch.name: arch for arch in (
    GpuArch("sm_80", shared_per_sm=164 * KiB, shared_per_block=163 * KiB, max_threads_per_sm=2048,
            max_blocks_per_sm=32, fp32_lanes_per_sm=64, mma_shapes=_MMA_AMPERE),
    GpuArch("sm_89", shared_per_sm=100 * KiB, shared_per_block=99 * KiB, max_threads_per_sm=1536,
            max_blocks_per_sm=24, fp32_lanes_per_sm=128, mma_shapes=_MMA_AMPERE),
    GpuArch("sm_90", shared_per_sm=228 * KiB, shared_per_block=227 * KiB, max_threads_per_sm=2048,
            max_blocks_per_sm=32, fp32_lanes_per_sm=128,
            mma_shapes=_MMA_AMPERE[:3] + (("float64", ((16, 8, 16), (16, 8, 8), (16, 8, 4), (8, 8, 4))),)
            + _MMA_AMPERE[4:]),
)}


@dataclass(frozen=True)
class GpuSpec:
    """The numbers a GPU's record is made of (sizes in bytes, rates in GB/s and GFLOP/s, the
    clock the boost clock); `gpu_hardware` turns them into the `Hardware` record."""

    name: str
    arch: str                  # a key of ARCHS: "sm_90"
    sms: int
    clock_ghz: float
    l2: int
    l2_gbs: float
    dram_name: str             # "HBM", "GDDR6"...
    dram: int
    dram_gbs: float
    peak_gflops: tuple[tuple[str, float], ...]   # (or a dict) dtype name -> GFLOP/s
    source: str = field(default="", compare=False)

    def __post_init__(self):
        object.__setattr__(self, "peak_gflops", tuple(dict(self.peak_gflops).items()))
        for key in ("sms", "clock_ghz", "l2", "l2_gbs", "dram", "dram_gbs"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"gpu {self.name!r}: {key} must be a positive number, got {value!r}")
        if isinstance(self.sms, float) or not all(isinstance(g, (int, float)) and g > 0 for _, g in self.peak_gflops):
            raise ValueError(f"gpu {self.name!r}: sms must be an int and every peak a positive number")


def gpu_hardware(spec: GpuSpec) -> Hardware:
    """A GPU's record: registers and shared memory per SM (from its compute capability, `ARCHS`),
    the L2 and the device memory all SMs share; 32-lane warps, 1024 threads per block (every
    compute capability), GEMM tiles sized for shared memory in multiples of 16 (the MMA tiles)."""
    if spec.arch not in ARCHS:
        raise ValueError(f"gpu {spec.name!r}: architecture {spec.arch!r} is not one of {list(ARCHS)}")
    cc, sms, ghz = ARCHS[spec.arch], spec.sms, spec.clock_ghz
    return Hardware(
        spec.name, "gpu", cores=sms, simd_width_bytes=128, clock_ghz=ghz, warp_size=32,
        max_threads_per_block=1024, tile_align=16, tile_level="shared", gpu=cc,
        levels=(MemoryLevel("registers", cc.registers_per_sm * 4, 12 * cc.fp32_lanes_per_sm * sms * ghz, 4),
                MemoryLevel("shared", cc.shared_per_sm, 4 * cc.shared_banks * sms * ghz, 128),
                MemoryLevel("L2", spec.l2, spec.l2_gbs, 32, shared_by=sms),
                MemoryLevel(spec.dram_name, spec.dram, spec.dram_gbs, 32, shared_by=sms)),
        peak_gflops=spec.peak_gflops, source=spec.source)


# NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB) and the A100 architecture whitepaper (2020):
# 108 SMs, 1410 MHz boost, 40 MB L2, 80 GB HBM2e at 2,039 GB/s, FP64 9.7 / FP32 19.5 / TF32 156 /
# FP16 and BF16 312 TFLOPS [S].  L2 bandwidth: 2.3x V100's (whitepaper) at about 2.2 TB/s
# measured for V100 [U].
A100_SPEC = GpuSpec(
    "A100_SXM_80GB", "sm_80", sms=108, clock_ghz=1.41, l2=40 * MiB, l2_gbs=5100.0, dram_name="HBM",
    dram=80 * GiB, dram_gbs=2039.0,
    peak_gflops=(("float64", 9_700.0), ("float32", 19_500.0), ("tf32", 156_000.0),
                 ("float16", 312_000.0), ("bfloat16", 312_000.0)),
    source="NVIDIA A100 datasheet and whitepaper, CUDA C++ Programming Guide [S]; L2 bandwidth [U]")
A100_SXM_80GB = gpu_hardware(A100_SPEC)

# NVIDIA H100 Tensor Core GPU datasheet (SXM5) and the Hopper architecture whitepaper (2022):
# 132 SMs, 1980 MHz boost, 50 MB L2, 80 GB HBM3 at 3.35 TB/s, FP64 34 / FP32 67 / TF32 494.7 /
# FP16 and BF16 989.4 TFLOPS dense [S].  L2 bandwidth: about 1.3x A100's per clock-scaled
# microbenchmarks (chipsandcheese.com, 2023) [U].
H100_SPEC = GpuSpec(
    "H100_SXM", "sm_90", sms=132, clock_ghz=1.98, l2=50 * MiB, l2_gbs=7000.0, dram_name="HBM",
    dram=80 * GiB, dram_gbs=3350.0,
    peak_gflops=(("float64", 34_000.0), ("float32", 67_000.0), ("tf32", 494_700.0),
                 ("float16", 989_400.0), ("bfloat16", 989_400.0)),
    source="NVIDIA H100 datasheet and whitepaper, CUDA C++ Programming Guide [S]; L2 bandwidth [U]")
H100_SXM = gpu_hardware(H100_SPEC)


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
