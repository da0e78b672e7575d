"""The cost model: what a computation and a message cost on a `MeshSpec`, and the summary of a run.

* A compute costs its roofline on one PE: `max(flops / flops_per_cycle, bytes / sram_bytes_per_cycle)
  + kernel_overhead_cycles`, flops and bytes counted per op (`op_work`).
* A message of `n` bytes over `h` hops costs `inject_latency + h * hop_latency + wire(n) /
  link_bytes_per_cycle`, where `wire(n)` adds a header per packet (cut-through: the bytes stream
  behind the head; section 6.2 of dataflow.md).  A message to oneself is a local copy: no link,
  no latency.
* A BSP superstep costs its slowest PE's compute, then the exchange (the busiest link's bytes
  over the bandwidth, plus the longest path's latency; on a crossbar the busiest PE's injected
  or ejected bytes), then `sync_cycles`.

`CostSummary` is what every executor reports (`compiled.report`): makespan, per-PE compute,
communication and idle cycles, bytes per directed link, bytes x hops, SRAM high-water marks and
what set them, channels per router, supersteps, and the spec's placeholder numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fractal.lower.tile_ir import Binary, Convert, Copy, Elementwise, Gather, Gemm, Reduce, Scatter, \
    SegmentReduce, Unary, Where

from .spec import MeshSpec


def _elements(r) -> int:
    return int(np.prod(r.shape, dtype=np.int64))


def _expr_ops(e) -> int:
    if isinstance(e, (Unary,)):
        return 1 + _expr_ops(e.x)
    if isinstance(e, Where):
        return 1 + _expr_ops(e.cond) + _expr_ops(e.a) + _expr_ops(e.b)
    if isinstance(e, Binary):
        return 1 + _expr_ops(e.a) + _expr_ops(e.b)
    return 0


def _gemm_flops(op: Gemm) -> int:
    m, k = op.a.shape[::-1] if op.trans_a else op.a.shape
    n = op.c.shape[1]
    return 2 * m * n * k


FLOPS = {Gemm: _gemm_flops,
         Elementwise: lambda op: _expr_ops(op.expr) * _elements(op.dst),
         Reduce: lambda op: _elements(op.src),
         SegmentReduce: lambda op: _elements(op.src),
         Convert: lambda op: _elements(op.dst),
         Copy: lambda op: 0, Gather: lambda op: 0, Scatter: lambda op: 0}


def op_work(op, itemsize_of) -> tuple[int, int]:
    """(flops, bytes) of one tile op at one point; `itemsize_of(buffer name)` gives element sizes."""
    touched = sum(_elements(r) * itemsize_of(r.buffer) for r in op.reads + op.writes)
    return FLOPS[type(op)](op), touched


def compute_cycles(flops: float, nbytes: float, dtype, spec: MeshSpec) -> float:
    return max(flops / spec.rate(dtype), nbytes / spec.sram_bytes_per_cycle) + spec.kernel_overhead_cycles


def wire_bytes(nbytes: int, spec: MeshSpec) -> int:
    """Bytes a message puts on each link it crosses: its data and a header per packet."""
    if spec.max_packet_bytes <= 0 or nbytes == 0:
        return nbytes
    return nbytes + math.ceil(nbytes / spec.max_packet_bytes) * spec.packet_header_bytes


def message_cycles(nbytes: int, nhops: int, spec: MeshSpec) -> float:
    """One message alone on its route (no contention)."""
    if nhops == 0:
        return 0.0
    return spec.inject_latency_cycles + nhops * spec.hop_latency_cycles + wire_bytes(nbytes, spec) / spec.link_bytes_per_cycle


@dataclass
class CostSummary:
    """What a run cost (module docstring).  Per-PE arrays have the mesh's shape (rows, cols)."""

    spec: MeshSpec
    engine: str
    makespan_cycles: float = 0.0
    compute_cycles: np.ndarray = None
    comm_cycles: np.ndarray = None
    link_bytes: dict = field(default_factory=dict)      # ((r, c), (r2, c2)) -> bytes
    pe_sent: np.ndarray = None                          # bytes each PE sent (crossbar injection)
    pe_received: np.ndarray = None
    bytes_sent: int = 0
    bytes_received: int = 0
    bytes_hops: int = 0
    messages: int = 0
    sram_peak: np.ndarray = None                        # bytes
    sram_peak_at: dict = field(default_factory=dict)    # (r, c) -> (step label, buffer)
    router_channels: np.ndarray = None
    supersteps: int = 0
    step_cycles: list = field(default_factory=list)     # per superstep: (label, compute, exchange, barrier)

    def __post_init__(self):
        shape = (self.spec.rows, self.spec.cols)
        for name, dtype in (("compute_cycles", float), ("comm_cycles", float), ("pe_sent", np.int64),
                            ("pe_received", np.int64), ("sram_peak", np.int64), ("router_channels", np.int64)):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(shape, dtype))

    @property
    def seconds(self) -> float:
        return self.spec.seconds(self.makespan_cycles)

    @property
    def idle_cycles(self) -> np.ndarray:
        return np.maximum(self.makespan_cycles - self.compute_cycles - self.comm_cycles, 0.0)

    @property
    def placeholders(self) -> tuple[str, ...]:
        return self.spec.placeholders()

    def to_json(self) -> dict:
        """Plain numbers and lists (`fractal.backends.dataflow.report.to_json`)."""
        from .report import to_json
        return to_json(self)

    def table(self) -> str:
        from .report import table
        return table(self)

    __str__ = table

    def _repr_html_(self) -> str:
        from .report import html_report
        return html_report(self)
