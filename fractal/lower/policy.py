"""What the passes ask a target's cost policy, and the facts they hand it.

Two questions decide every transformation, each with one owner.  *Is it legal?* is the
dependence engine's (`fractal.lower.dependences`); *is it worth it?* is the target's: each
backend ships a `CostPolicy` (the CPU backend's is `fractal.backends.cpu.policy.CpuPolicy`),
carried by the `Target` the pipeline runs for.  A pass measures the candidate it could
make — sizes in bytes, rows, points and steps, all read off the tile IR — into one of the
records below and asks the policy; the policy answers from those numbers and the target's
hardware record alone, so the same program, sizes and target give the same decisions (and
the same tile IR) on any machine.

    facts = BatchFacts(steps=64, points=64, step_bytes=65536, shares_weight=True, ...)
    if target.policy.batch_across(facts, target.hardware): ...       # hoist
    k = target.policy.choose_schedule(options, target.hardware)      # wavefront
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .hardware import Hardware


@dataclass(frozen=True)
class BatchFacts:
    """Hoist: a statement of a sequential loop whose steps are independent could run once, batched
    over all `steps` (`points` per step before, `steps * points` after)."""

    steps: int
    points: int
    step_bytes: int          # bytes the statement writes in one step
    shares_weight: bool      # one of its GEMMs multiplies by the same right operand at every step
    recurrent: bool = False  # it reads what an enclosing sequential loop wrote (a stacked RNN's layer below):
    #                          batching it gives up a wavefront over the enclosing nest
    layer_bytes: int = 0     # (recurrent) bytes of the GEMM weights that change from one enclosing step to the next


@dataclass(frozen=True)
class LiveFacts:
    """Hoist, in a sorted ragged batch: a statement batched over its loop's steps could run only
    its live points (`live_points` of `box_points`: a polygon, each step's rows cut to its
    live prefix) instead of its padded box."""

    box_points: int
    live_points: int         # at most (each step's live prefix, counted over the enclosing ranges)
    point_flops: int         # multiply-adds times two of a point's products
    point_bytes: int         # bytes of the regions that move with a point (read and written)
    steps: int = 1           # the loop's steps: a cut product is one per step (its live rows)
    shared_bytes: int = 0    # bytes of a point's product operands no point var reads (a weight),
    #                          packed again by each of the cut products


@dataclass(frozen=True)
class SinkFacts:
    """Sink: a parallel nest reading each step's results of a sequential loop could run inside it."""

    steps: int
    step_bytes: int          # bytes of the loop's results the nest reads per step


@dataclass(frozen=True)
class PointMajorFacts:
    """A sequential loop whose stages share their dims and meet only point-locally could run
    point-major: each point of those dims all its steps in turn (a compiled backend's loop
    nest), rather than every step over all the points."""

    steps: int
    points: int
    point_step_bytes: int    # bytes one point's ops touch in one step
    step_bytes: int          # bytes one step touches over all points (operands shared by the points once)
    gemm_rows: int | None    # the fewest rows of a point's products whose right operand several points
    #                          share (step-major, their rows stack into one bigger product); None: none
    innermost_points: int = 0   # points along the innermost dim (0: not a constant)


@dataclass(frozen=True)
class TileFacts:
    """Tile: a stage of several ops over a box whose first dim has `rows` values."""

    rows: int
    row_bytes: int           # bytes the ops touch per value of the first dim (shared operands once)
    has_gemm: bool


@dataclass(frozen=True)
class GemmRun:
    """One GEMM op of a stage run: `calls` BLAS products (one per distinct right operand) of
    `m x k` by `k x n`, `m` summed over the points that share the operand."""

    calls: int
    m: int
    n: int
    k: int
    itemsize: int


@dataclass(frozen=True)
class StageRun:
    """One run of a stage (its ops over all its points at once), `count` times."""

    count: int
    ops: int
    points: int
    polygon: bool            # the points are not a box (a skewed nest's step)
    gemms: tuple[GemmRun, ...]
    other_bytes: int         # bytes the non-GEMM ops touch
    moved_bytes: int = 0     # bytes of the regions that move with the points (all ops)


@dataclass(frozen=True)
class StageFusionFacts:
    """Consecutive stages over the same dims that meet only point-locally could run as one
    point loop (a compiled backend's), each point through all of them, rather than each stage
    over all the points (whose products then fold into big BLAS calls)."""

    points: int
    point_handed_bytes: int  # bytes of temporaries one stage writes and a later one reads, one point's
    gemm_rows: int | None    # the fewest rows of a point's products whose right operand points share


@dataclass(frozen=True)
class ScheduleOption:
    """Wavefront: one legal schedule of a nest of sequential loops, `runs` its stage runs
    (None when too many to list), `steps` its sequential steps."""

    name: str                # "as written", "wavefront" (skewed whole), "batched" (recurrences batched out)
    steps: int
    runs: tuple | None


class CostPolicy(Protocol):
    """A backend's answers to "is it worth it?", pure functions of the facts and the hardware."""

    def batch_across(self, facts: BatchFacts, hw: Hardware) -> bool: ...

    def cut_to_live(self, facts: LiveFacts, hw: Hardware) -> bool: ...

    def sink_into(self, facts: SinkFacts, hw: Hardware) -> bool: ...

    def tile_rows(self, facts: TileFacts, hw: Hardware) -> int | None: ...

    def point_major(self, facts: PointMajorFacts, hw: Hardware) -> bool: ...

    def point_block(self, facts: PointMajorFacts, hw: Hardware) -> int: ...

    def fuse_stages(self, facts: StageFusionFacts, hw: Hardware) -> bool: ...

    def roll_final_states(self, hw: Hardware) -> bool: ...

    def choose_schedule(self, options: list[ScheduleOption], hw: Hardware) -> int: ...


class SpreadPolicy:
    """The pass rules of a target that runs each stage's points across many units at once (a
    GPU's SMs, a mesh's PEs), where a stage run costs a launch or a barrier whatever its size:
    batch across always, except a recurrent statement (left to the wavefront pass); never sink
    (it trades a parallel nest for per-step stages); never tile rows on the host (the backend
    cuts a stage itself); never cut a batch to its live points (untried there), never run a loop point-major or stages fused point by point (a compiled host backend's
    orders: a step's points are the parallelism);
    the legal schedule with the fewest sequential steps.  A backend's policy adds its own rules (the CUDA and dataflow policies' docstrings give the reasons)."""

    def batch_across(self, facts: BatchFacts, hw: Hardware) -> bool:
        return not facts.recurrent

    def cut_to_live(self, facts: LiveFacts, hw: Hardware) -> bool:
        return False   # (a kernel over a box; a polygon's cost there is not measured yet)

    def sink_into(self, facts: SinkFacts, hw: Hardware) -> bool:
        return False

    def tile_rows(self, facts: TileFacts, hw: Hardware) -> int | None:
        return None

    def point_major(self, facts: PointMajorFacts, hw: Hardware) -> bool:
        return False

    def point_block(self, facts: PointMajorFacts, hw: Hardware) -> int:
        return 1

    def fuse_stages(self, facts: StageFusionFacts, hw: Hardware) -> bool:
        return False

    def roll_final_states(self, hw: Hardware) -> bool:
        return True

    def choose_schedule(self, options: list[ScheduleOption], hw: Hardware) -> int:
        return min(range(len(options)), key=lambda i: options[i].steps)
