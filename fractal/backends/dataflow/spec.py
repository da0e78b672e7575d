"""The machine model of a distributed-memory mesh: `MeshSpec`, its presets and their sources.

A mesh is a grid of processing elements (PEs), each with a private SRAM of hard capacity and
no cache, joined by links to its neighbours (`kind="mesh"`, or `"torus"` with wrap-around
links) or by a compiled all-to-all exchange (`"crossbar"`, the Graphcore IPU's, limited by
each PE's injection and ejection bandwidth).  Messages follow dimension-ordered routes
(`routing="xy"`: along the row first, then the column).  Times are cycles; `clock_hz` only
converts them to seconds.  (shared/reference/dataflow.md, sections 4 and 5.)

Every number carries its provenance (`MeshSpec.sources`): [S] a published source, [D] derived
by arithmetic from published figures, [U] an approximate or unverified placeholder, "user"
a number given to `mesh_spec` (the cost report lists the placeholders it used)::

    >>> spec = mesh_spec(4, 4, preset="tiny")
    >>> spec.sram_bytes, spec.link_bytes_per_cycle, spec.hop_latency_cycles
    (65536, 4.0, 1)
    >>> mesh_spec(16, 16, preset="wse2", sram_bytes=96 * 1024).source_of("sram_bytes")
    'user'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from fractal.lang.errors import ArgumentError

KINDS = ("mesh", "torus", "crossbar")
ROUTINGS = ("xy", "yx")
KiB = 1024


@dataclass(frozen=True)
class MeshSpec:
    """A mesh machine (module docstring); sizes in bytes, rates per PE per cycle."""

    name: str
    rows: int
    cols: int
    kind: str = "mesh"
    sram_bytes: int = 64 * KiB           # per PE, code and data
    reserved_bytes: int = 0              # per PE, taken by code and runtime
    flops_per_cycle: tuple[tuple[str, float], ...] = (("float32", 1.0),)
    sram_bytes_per_cycle: float = 4.0    # local SRAM bandwidth: the roofline's memory side
    kernel_overhead_cycles: int = 0      # per compute (a codelet's start)
    link_bytes_per_cycle: float = 4.0    # per link per direction (crossbar: per PE in and out)
    hop_latency_cycles: int = 1
    inject_latency_cycles: int = 0       # per message, at its source
    max_packet_bytes: int = 0            # 0: messages are not cut into packets
    packet_header_bytes: int = 0         # bytes each packet adds on the links
    routing: str = "xy"
    max_channels_per_router: int = 0     # 0: unlimited (colors, virtual channels)
    sync_cycles: int = 0                 # one BSP barrier
    clock_hz: float = 1e9
    sources: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def __post_init__(self):
        object.__setattr__(self, "flops_per_cycle", tuple((str(d), float(r)) for d, r in dict(self.flops_per_cycle).items()))
        problems = [
            (self.rows <= 0 or self.cols <= 0, f"needs at least one row and one column of PEs, not {self.rows}x{self.cols}"),
            (self.kind not in KINDS, f"kind {self.kind!r} is not one of {KINDS}"),
            (self.routing not in ROUTINGS, f"routing {self.routing!r} is not one of {ROUTINGS}"),
            (self.sram_bytes <= self.reserved_bytes,
             f"sram_bytes ({self.sram_bytes}) must exceed reserved_bytes ({self.reserved_bytes})"),
            (self.link_bytes_per_cycle <= 0 or self.sram_bytes_per_cycle <= 0 or self.clock_hz <= 0,
             "bandwidths and the clock must be positive"),
            (min(self.hop_latency_cycles, self.inject_latency_cycles, self.kernel_overhead_cycles, self.sync_cycles,
                 self.max_packet_bytes, self.packet_header_bytes, self.max_channels_per_router) < 0,
             "latencies, overheads, packet sizes and channel counts cannot be negative"),
            (not self.flops_per_cycle or min(r for _, r in self.flops_per_cycle) <= 0,
             "flops_per_cycle needs a positive rate per dtype")]
        for bad, message in problems:
            if bad:
                raise ArgumentError(f"mesh {self.name!r}: {message}")

    @property
    def pes(self) -> int:
        return self.rows * self.cols

    @property
    def usable_bytes(self) -> int:
        """SRAM per PE a plan may fill: the capacity less the reservation."""
        return self.sram_bytes - self.reserved_bytes

    def rate(self, dtype) -> float:
        """FLOP per cycle per PE for `dtype` (a dtype without its own rate uses float32's, else the slowest)."""
        rates = dict(self.flops_per_cycle)
        name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
        return rates.get(name, rates.get("float32", min(rates.values())))

    def seconds(self, cycles: float) -> float:
        return cycles / self.clock_hz

    def source_of(self, name: str) -> str:
        return dict(self.sources).get(name, "")

    def placeholders(self) -> tuple[str, ...]:
        """The fields whose numbers are placeholders ([U]): a cost that reads them is an estimate."""
        return tuple(f for f, tag in self.sources if "[U]" in tag)

    def __str__(self) -> str:
        tags = dict(self.sources)
        lines = [f"{self.name}: {self.rows}x{self.cols} {self.kind} of PEs, {self.routing} routing"]
        for f in dataclasses.fields(self):
            if f.name in ("name", "rows", "cols", "kind", "routing", "sources"):
                continue
            value = getattr(self, f.name)
            text = ", ".join(f"{d} {r:g}" for d, r in value) if f.name == "flops_per_cycle" else f"{value:g}"
            lines.append(f"  {f.name:<24} {text:<22} {tags.get(f.name, '')}")
        return "\n".join(lines)


# --- presets: (value, provenance) per field; rows x cols is the machine's own grid ---------------

PRESETS: dict[str, dict] = {
    # Graphcore IPU MK2 (GC200): 1,472 tiles x 624 KiB [S]; exchange 8 TB/s any pattern [S] -> about
    # 4 B/cycle per tile at the commonly cited 1.33 GHz [D; the clock is U]; 47.5 TB/s SRAM -> about
    # 24 B/cycle per tile [D]; 250 TFLOPS FP16 -> about 128 FLOP/cycle per tile [D]; 62.5 TFLOPS FP32
    # -> about 32 [D].  Exchange latency, barrier cost, code reservation and codelet start: [U].
    "ipu_mk2": dict(
        rows=(32, "[D] 1472 tiles shown as 32x46"), cols=(46, "[D] 1472 tiles shown as 32x46"),
        kind=("crossbar", "[S] IPU-Exchange, any pattern"),
        sram_bytes=(624 * KiB, "[S] Graphcore MK2 specification"),
        reserved_bytes=(64 * KiB, "[U] code and runtime, a placeholder"),
        flops_per_cycle=((("float16", 128.0), ("float32", 32.0)), "[D] 250/62.5 TFLOPS over 1472 tiles at 1.33 GHz [U]"),
        sram_bytes_per_cycle=(24.0, "[D] 47.5 TB/s over 1472 tiles"),
        kernel_overhead_cycles=(100, "[U] a codelet's start"),
        link_bytes_per_cycle=(4.0, "[D] 8 TB/s exchange over 1472 tiles at 1.33 GHz"),
        hop_latency_cycles=(15, "[U] exchange latency, calibrate"),
        sync_cycles=(500, "[U] a BSP barrier, calibrate"),
        clock_hz=(1.33e9, "[U] commonly cited clock")),
    # Graphcore IPU MK1 (GC2): 1,216 tiles x 256 KiB [S]; 45 TB/s SRAM [S]; 31.1 TFLOPS FP32 [S].
    "ipu_mk1": dict(
        rows=(32, "[D] 1216 tiles shown as 32x38"), cols=(38, "[D] 1216 tiles shown as 32x38"),
        kind=("crossbar", "[S] IPU-Exchange"),
        sram_bytes=(256 * KiB, "[S] Jia et al. 2019"),
        reserved_bytes=(32 * KiB, "[U] code and runtime, a placeholder"),
        flops_per_cycle=((("float32", 16.0), ("float16", 64.0)), "[D] 31.1/124.5 TFLOPS over 1216 tiles at 1.6 GHz [U]"),
        sram_bytes_per_cycle=(23.0, "[D] 45 TB/s over 1216 tiles at 1.6 GHz [U]"),
        kernel_overhead_cycles=(100, "[U] a codelet's start"),
        link_bytes_per_cycle=(4.0, "[U] calibrate (Jia et al. measure it)"),
        hop_latency_cycles=(15, "[U] calibrate"),
        sync_cycles=(500, "[U] calibrate"),
        clock_hz=(1.6e9, "[U]")),
    # Cerebras WSE-2: 850k PEs, 48 KB SRAM each [S]; one 32-bit wavelet per link per direction per
    # cycle [S], consistent with 220 Pb/s at about 1 GHz [D]; 24 routable colors [S]; per-PE FLOP
    # rate and clock have no reliable public figure [U]; SRAM about 24 B/cycle [D].
    "wse2": dict(
        rows=(750, "[U] about 750x994"), cols=(994, "[U] about 750x994"),
        kind=("mesh", "[S] 2-D mesh fabric"),
        sram_bytes=(48 * KiB, "[S] 48 KB per PE"),
        reserved_bytes=(6 * KiB, "[U] code, a placeholder"),
        flops_per_cycle=((("float16", 8.0), ("float32", 4.0)), "[U] no reliable public per-PE figure"),
        sram_bytes_per_cycle=(24.0, "[D] 20 PB/s over 850k PEs at 1 GHz [U]"),
        kernel_overhead_cycles=(10, "[U] a task's activation"),
        link_bytes_per_cycle=(4.0, "[S] one 32-bit wavelet per cycle"),
        hop_latency_cycles=(1, "[U] about one cycle per hop"),
        max_channels_per_router=(24, "[S] routable colors"),
        sync_cycles=(2000, "[U] no hardware barrier: a fabric-wide reduction"),
        clock_hz=(1.1e9, "[U]")),
    # Cerebras WSE-3: 900k PEs, 48 KB [S]; fabric as WSE-2 [D]; the 125 PFLOPS headline is sparse.
    "wse3": dict(
        rows=(762, "[U] about 900k PEs"), cols=(1176, "[U] about 900k PEs"),
        kind=("mesh", "[S] 2-D mesh fabric"),
        sram_bytes=(48 * KiB, "[S] 48 KB per PE"),
        reserved_bytes=(6 * KiB, "[U] code, a placeholder"),
        flops_per_cycle=((("float16", 8.0), ("float32", 4.0)), "[U] no reliable public per-PE figure"),
        sram_bytes_per_cycle=(24.0, "[D] about 21 PB/s over 900k PEs at 1 GHz [U]"),
        kernel_overhead_cycles=(10, "[U] a task's activation"),
        link_bytes_per_cycle=(4.0, "[D] 214 Pb/s fabric"),
        hop_latency_cycles=(1, "[U]"),
        max_channels_per_router=(24, "[U] as WSE-2; check the queue and color rules"),
        sync_cycles=(2000, "[U] a fabric-wide reduction"),
        clock_hz=(1.1e9, "[U]")),
    # Tenstorrent Wormhole: 8x10 Tensix grid, 1464 KiB L1 each [S]; two NoCs, 2-D tori, 32-byte flits,
    # one per cycle per hop, about 9 cycles router to router, about 5 at the NIU, packets of at most
    # 8 KiB plus a header flit [S]; clock and matrix-engine rate [U].
    "wormhole": dict(
        rows=(8, "[S] Tensix grid"), cols=(10, "[S] Tensix grid"),
        kind=("torus", "[S] 2-D torus NoCs"),
        sram_bytes=(1464 * KiB, "[S] L1 per Tensix core"),
        reserved_bytes=(128 * KiB, "[U] firmware and kernels, a placeholder"),
        flops_per_cycle=((("bfloat16", 2048.0), ("float16", 2048.0), ("float32", 512.0)), "[U] matrix engine, calibrate"),
        sram_bytes_per_cycle=(64.0, "[U] L1 bandwidth, calibrate"),
        kernel_overhead_cycles=(50, "[U]"),
        link_bytes_per_cycle=(32.0, "[S] one 32 B flit per cycle per hop"),
        hop_latency_cycles=(9, "[S] router to router"),
        inject_latency_cycles=(5, "[S] NIU to router"),
        max_packet_bytes=(8 * KiB, "[S] 256 data flits"),
        packet_header_bytes=(32, "[S] one header flit"),
        sync_cycles=(1000, "[U] a semaphore barrier"),
        clock_hz=(1.0e9, "[U]")),
    # For tests: numbers chosen so hand calculations are easy.
    "tiny": dict(
        rows=(4, "tests"), cols=(4, "tests"), kind=("mesh", "tests"),
        sram_bytes=(64 * KiB, "tests"), reserved_bytes=(0, "tests"),
        flops_per_cycle=((("float32", 1.0),), "tests"), sram_bytes_per_cycle=(4.0, "tests"),
        kernel_overhead_cycles=(0, "tests"), link_bytes_per_cycle=(4.0, "tests"),
        hop_latency_cycles=(1, "tests"), sync_cycles=(0, "tests"), clock_hz=(1e9, "tests")),
}
_FIELDS = tuple(f.name for f in dataclasses.fields(MeshSpec) if f.name not in ("name", "sources"))


def mesh_spec(rows: int | None = None, cols: int | None = None, preset: str = "tiny", *, name: str | None = None,
              **numbers) -> MeshSpec:
    """The preset's machine as `rows x cols` PEs (default: the preset's own grid), any field of
    `MeshSpec` replaced by a keyword (tagged "user")."""
    if preset not in PRESETS:
        raise ArgumentError(f"unknown mesh preset {preset!r}; the presets are {', '.join(PRESETS)}")
    unknown = sorted(set(numbers) - set(_FIELDS))
    if unknown:
        raise ArgumentError(f"mesh: unknown field(s) {', '.join(unknown)}; a mesh has {', '.join(_FIELDS)}")
    values = {k: v for k, (v, _) in PRESETS[preset].items()}
    sources = {k: "not modelled by this preset (the default)" for k in _FIELDS}
    sources.update({k: tag for k, (_, tag) in PRESETS[preset].items()})
    given = {"rows": rows, "cols": cols, **numbers}
    for k, v in given.items():
        if v is not None:
            values[k], sources[k] = v, "user" if k in numbers or v != values.get(k) else sources[k]
    for k in ("rows", "cols"):
        if not isinstance(values[k], (int, np.integer)) or isinstance(values[k], bool):
            raise ArgumentError(f"mesh: {k} must be an int, not {values[k]!r}")
    label = name or (preset if (values["rows"], values["cols"]) == (PRESETS[preset]["rows"][0], PRESETS[preset]["cols"][0])
                     else f"{preset}-{values['rows']}x{values['cols']}")
    return MeshSpec(label, **values, sources=tuple(sorted(sources.items())))
