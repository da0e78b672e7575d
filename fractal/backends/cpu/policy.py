"""The CPU backend's cost policy: when batching, sinking, tiling and skewing pay on NumPy/BLAS.

Every threshold the passes use on a CPU target lives here, as a field of `CpuPolicy` with the
reason for its value; each answer is a pure function of the pass's facts
(`fractal.lower.policy`) and the target's hardware record, never of the machine compiling.

The costs behind the numbers (measured on the 2-core AMD EPYC and Intel Xeon VMs this project
runs on, NumPy 2.4 with OpenBLAS): a stage run is a Python closure and a box computation
(about 2 us), each op one NumPy call on views (3-5 us; on a polygon of points, through cached
fancy indices, as much again plus about 0.5 ns per byte of the regions that move with the
points, gathered and scattered); a BLAS call costs a few microseconds before it computes,
and a GEMM of m rows reaches about m / (m + 16) of the float32 peak (OpenBLAS blocks rows by
the 8 lanes of an AVX2 register: 64 rows, eight blocks, run near peak).
"""

from __future__ import annotations

from dataclasses import dataclass

from fractal.lower.hardware import Hardware
from fractal.lower.policy import BatchFacts, LiveFacts, PointMajorFacts, ScheduleOption, SinkFacts, StageFusionFacts, TileFacts

_DTYPE_OF_ITEMSIZE = {2: "float16", 4: "float32", 8: "float64"}


@dataclass(frozen=True)
class CpuPolicy:
    """The NumPy/BLAS cost policy (see the module docstring for where the numbers come from)."""

    blas_rows: int = 8              # BLAS micro-kernels block rows by 8: tile sides are multiples of it
    full_speed_blocks: int = 8      # a GEMM of this many row blocks (64 rows) runs near the BLAS peak
    cache_share: float = 0.5        # of a cache level, what a working set may take (BLAS streams the rest)
    stage_seconds: float = 2e-6     # host cost of one stage run
    op_seconds: float = 4e-6        # one NumPy call over views (a polygon's fancy indices cost the same)
    fancy_gbs: float = 2.0          # a polygon's regions that move with its points, gathered and scattered
    gemm_call_seconds: float = 2e-6   # a BLAS call before it computes
    gemm_half_rows: int = 16        # rows at which a GEMM runs at half the peak
    # a product's shared operand (a weight) packed again by each of several calls, with the
    # call's fork and join: transformer_block's FFN cut to each sequence's live rows (8 calls of
    # about 105 rows, where the box was one of 1024) ran 1.5 ms slower, 7 more packings of its
    # 1 MiB weights, about 4 GB/s (the 2-core AMD VM)
    pack_gbs: float = 4.0
    sunk_run_seconds: float = 5e-6  # what sinking adds to each step: one more stage run of a few calls
    # (the executor) a stage is cut over threads only when a run touches this many elements:
    # waking a parked thread and joining it took 50-70 us on the 2-core VMs measured, about
    # 0.5 ms of NumPy work is 2^19 elements
    split_elements: int = 1 << 19
    # (the wavefront) which of a nest's legal schedules to take: "cheapest" by `seconds`, or
    # one by name ("wavefront", "batched", "as written") to compare them (the benchmark does)
    schedule: str = "cheapest"
    # (the native backend) which sequential loops run point-major where legal: "cheapest" by
    # `point_major`'s rule, or all ("point-major") or none ("step-major"), to compare them
    loop_order: str = "cheapest"
    # ... and a loop whose point's step touches at most this many bytes runs point-major when it
    # has this many points per core: the emitter runs such points in blocks along their
    # innermost dim, each block's state a line or two from step to step (transformer_block's
    # softmax max over 128 keys, a [1, 1] tile per query: step-major, one thread read one
    # element of a 512-byte row per query per step, 13 us a step)
    small_point_step_bytes: int = 64
    small_step_points: int = 64
    point_block_size: int = 16      # such points run a block at a time along their innermost dim
    # (hoist) how the backend runs a polygon stage: NumPy as one flat axis of points, its
    # regions gathered and scattered (`fancy_gbs`); the native backend (False) as loops over
    # the dims that bound the others, around the box code (a BLAS call per step of a ragged
    # batch's input projection), at no cost beyond the box's
    polygon_gathers: bool = True
    # ... and natively each point of a polygon costs this much more than a box's: its points run
    # as plain nested loops, the outer dim alone shared among threads and no loop vectorised
    # across points (selective_scan's output step, 16 elements a point, ran 12% slower cut to
    # 82% of its points; conv2d's im2col copies, 96 to 288 floats a point, 24% faster cut to 56%)
    polygon_point_seconds: float = 5e-9

    SCHEDULES = ("cheapest", "wavefront", "batched", "as written")
    LOOP_ORDERS = ("cheapest", "point-major", "step-major")

    def __post_init__(self):
        for name, value, allowed in (("schedule", self.schedule, self.SCHEDULES),
                                     ("loop_order", self.loop_order, self.LOOP_ORDERS)):
            if value not in allowed:
                raise ValueError(f"CpuPolicy({name}={value!r}): {name} is one of "
                                 f"{', '.join(repr(a) for a in allowed)}")

    # --- hoist ---------------------------------------------------------------------------

    def batch_across(self, facts: BatchFacts, hw: Hardware) -> bool:
        """Batch a statement over the steps of its loop?  Where it makes GEMMs bigger (a weight
        shared by the steps folds their rows into one GEMM) or steps fewer and larger; a step
        whose results already fill a cache tile and whose GEMMs multiply per-step operands
        (attention's score blocks) stays, its results staying in cache for their readers.
        A recurrent statement (the projection of a stacked RNN's layer below) gives up the
        wavefront over layers and steps: batched only when a step's GEMM is small no longer
        (`full_speed_blocks` row blocks) or the per-layer weights overflow the last cache level
        (a wavefront step reads every layer's weights; layer by layer one layer's stay cached).
        Otherwise the wavefront pass weighs the two schedules (`seconds`)."""
        general = facts.shares_weight or facts.step_bytes < self._tile_bytes(hw) or \
            facts.step_bytes * facts.steps <= self._cache_bytes(hw)
        if facts.recurrent:
            return general and (facts.points >= self.full_speed_blocks * self.blas_rows or
                                facts.layer_bytes > self._cache_bytes(hw))
        return general

    def cut_to_live(self, facts: LiveFacts, hw: Hardware) -> bool:
        """Run a batched statement of a ragged batch over its live points only (hoist), or a
        stage of a ragged map without the padding points nothing reads (cut_dead)?  Where that
        costs less than the padded box, by `seconds`' GEMM rule (a product of m rows runs at
        m / (m + `gemm_half_rows`) of the peak, a call costs `gemm_call_seconds`) and the
        bandwidth for the rest, each call packing the operand the points share again
        (`pack_gbs`).  Natively a polygon's points also lose the box's collapse and
        vectorising across points (`polygon_point_seconds`); the box's products are one call
        and the live points' one per step, over its live rows: stacked_lstm's small batch, 8 sequences, would trade
        one 512-row GEMM for 64 of at most 8 rows (a third slower), dilated_lstm's deeper
        layers cut a quarter of their rows from calls of 64 and more.  On NumPy the live points'
        regions are also gathered and scattered (`fancy_gbs`).  (The hardware record's numbers,
        not this host's: the same answer on any machine.)"""
        if facts.live_points >= facts.box_points:
            return False
        flops = facts.point_flops / (hw.peak("float32") * 1e9)
        box, live = facts.box_points * flops, facts.live_points * flops
        if facts.point_flops:
            box += self.gemm_half_rows * flops + facts.shared_bytes / (self.pack_gbs * 1e9)
            live += facts.steps * (self.gemm_call_seconds + self.gemm_half_rows * flops
                                   + facts.shared_bytes / (self.pack_gbs * 1e9))
        bandwidth = hw.levels[-1].bandwidth_gbs * 1e9
        box += facts.box_points * facts.point_bytes / bandwidth
        live += facts.live_points * facts.point_bytes / bandwidth
        if self.polygon_gathers:
            live += facts.live_points * facts.point_bytes / (self.fancy_gbs * 1e9)
        else:
            live += facts.live_points * self.polygon_point_seconds
        return live < box

    # --- sink ----------------------------------------------------------------------------

    def sink_into(self, facts: SinkFacts, hw: Hardware) -> bool:
        """Run a nest reading each step's results inside the loop?  When those results, over
        all steps, overflow the last cache level and one step's take DRAM longer than the stage
        run sinking adds to each step."""
        dram = hw.levels[-1].bandwidth_gbs * 1e9
        return facts.step_bytes >= dram * self.sunk_run_seconds and \
            facts.step_bytes * facts.steps > self._cache_bytes(hw)

    # --- tile ----------------------------------------------------------------------------

    def tile_rows(self, facts: TileFacts, hw: Hardware) -> int | None:
        """Rows per tile of a multi-op stage whose working set overflows the tile level, so one
        tile's intermediates stay cached from op to op; None to leave it whole (it fits, or it
        holds a GEMM: BLAS tiles its own loops, and cutting M only adds calls)."""
        budget, align, n = self._tile_bytes(hw), self.blas_rows, facts.rows
        if facts.has_gemm or n <= align or facts.row_bytes * n <= budget:
            return None
        size = max(align, (budget // max(facts.row_bytes, 1)) // align * align)
        return size if size < n else None

    # --- the native backend's loop order ------------------------------------------------

    def point_major(self, facts: PointMajorFacts, hw: Hardware) -> bool:
        """Run a loop's points one after another, each through all its steps (compiled code
        only: the NumPy executor batches every step)?  When one point's step fits the tile
        budget, so its intermediates and state stay cached from step to step, while a step over
        all the points overflows what the cores' tile levels hold (batched, every intermediate
        goes to memory and back each step); when there are points for every core; and when a
        point's products by a weight other points share have `gemm_half_rows` rows or more
        (fewer run below half speed in the register-blocked kernel, where step-major the points'
        rows stack into bigger BLAS calls: an RNN's recurrent step).  Also when its points run in
        blocks (`point_block`) and there are `small_step_points` points a core.  `loop_order`
        may name an order instead."""
        if self.loop_order != "cheapest":
            return self.loop_order == "point-major"
        budget = self._tile_bytes(hw)
        if facts.steps > 1 and self.point_block(facts, hw) > 1 and facts.points >= hw.cores * self.small_step_points:
            return True   # (blocks of points run all their steps: each step's state and inputs a line or two)
        return facts.steps > 1 and facts.points >= hw.cores and facts.point_step_bytes <= budget \
            and facts.step_bytes > budget * hw.cores \
            and (facts.gemm_rows is None or facts.gemm_rows >= self.gemm_half_rows)

    def point_block(self, facts: PointMajorFacts, hw: Hardware) -> int:
        """How many points along the innermost dim a point-major loop runs together through
        its steps: `point_block_size` where a point's step touches at most
        `small_point_step_bytes` and the dim has that many points (the block's state rows are
        then a line or two a step, where a lone point's rows one step apart may fall in one
        cache set: 20x slower on transformer_block's softmax); else 1."""
        small = facts.point_step_bytes <= self.small_point_step_bytes
        return self.point_block_size if small and facts.innermost_points >= self.point_block_size else 1

    def fuse_stages(self, facts: StageFusionFacts, hw: Hardware) -> bool:
        """Run consecutive stages as one point loop (compiled code only)?  When what they hand
        each other overflows what the cores' tile levels hold (stage by stage it goes to
        memory and back) while one point's share fits the tile budget, and a point's products
        by a shared weight have `gemm_half_rows` rows or more (stage by stage they would fold
        into one BLAS call)."""
        budget = self._tile_bytes(hw)
        return facts.points >= hw.cores and facts.point_handed_bytes <= budget \
            and facts.point_handed_bytes * facts.points > budget * hw.cores \
            and (facts.gemm_rows is None or facts.gemm_rows >= self.gemm_half_rows)

    # --- roll_storage ---------------------------------------------------------------------

    def roll_final_states(self, hw: Hardware) -> bool:
        """Roll a scan's state read after its loop (a reduce's result) to a window of steps?
        Always: every step's state kept is memory written once and never read (FlashAttention's
        running output: 17 steps of 4 MiB)."""
        return True

    # --- the wavefront's choice of schedule ----------------------------------------------

    def choose_schedule(self, options: list[ScheduleOption], hw: Hardware) -> int:
        """The schedule a nest runs: with `schedule="cheapest"` the option of least estimated
        time (`seconds`; ties and unpriced nests: the fewest steps), else the one named
        (`"wavefront"`: the fewest steps; `"batched"`; `"as written"`) where it is legal."""
        names = [o.name for o in options]
        if self.schedule in names:
            return names.index(self.schedule)
        fewest = min(range(len(options)), key=lambda k: (options[k].steps, k))
        if self.schedule != "cheapest" or any(o.runs is None for o in options):
            return fewest
        costs = [self.seconds(o.runs, hw) for o in options]
        return min(range(len(options)), key=lambda k: (costs[k], options[k].steps, k))

    def seconds(self, runs, hw: Hardware) -> float:
        """Estimated run time of stage runs: host costs per run and op, BLAS calls at the rate a
        GEMM of their rows reaches, other ops at the bandwidth of the level their bytes fit."""
        total = 0.0
        for r in runs:
            per = self.stage_seconds + r.ops * self.op_seconds
            if r.polygon:
                per += r.moved_bytes / (self.fancy_gbs * 1e9)
            for g in r.gemms:
                peak = hw.peak(_DTYPE_OF_ITEMSIZE.get(g.itemsize, "float32")) * 1e9
                rate = peak * g.m / (g.m + self.gemm_half_rows) if g.m else peak
                per += g.calls * (self.gemm_call_seconds + 2.0 * g.m * g.n * g.k / rate)
            per += r.other_bytes / (_level_for(hw, r.other_bytes).bandwidth_gbs * 1e9)
            total += r.count * per
        return total

    # --- shared --------------------------------------------------------------------------

    def _cache_bytes(self, hw: Hardware) -> int:
        last = hw.levels[-2] if len(hw.levels) > 1 else hw.levels[-1]
        return int(last.size_bytes * self.cache_share)

    def _tile_bytes(self, hw: Hardware) -> int:
        return int(hw.level(hw.tile_level).size_bytes * self.cache_share)


def _level_for(hw: Hardware, nbytes: int):
    """The fastest memory level (past the registers) whose one instance holds `nbytes`."""
    for level in hw.levels[1:]:
        if nbytes <= level.size_bytes:
            return level
    return hw.levels[-1]
