"""Every pass of the pipeline is legal on random programs: run it, then run what it made.

A pass may only make a program that keeps the tile IR's contract and computes what its
input computed.  On random valid programs the pipeline's passes run in order, each one
left out now and then (so that each meets the others' outputs and also programs they have
not seen), and after each pass that changed the program it must

* verify, contract included (`verify()`), and show the oracle (`tile_bruteforce`) no
  dependence between two points of a stage or two iterations of a parallel loop (the
  contract does not compare the latter yet: see test_dependence_engine);
* leave every output buffer as the input program does (the naive executor, float64, up to
  rounding: merged GEMMs add in another order), run point-major and op-major (a stage's
  points being independent, both orders must agree).

The passes ask a target's cost policy whether a legal change pays: besides the CPU policy
on a made-up tiny cpu, an eager policy says yes to everything and prefers the schedule of
fewest stage runs (wavefronts, batches), and another also refuses every batch across time
(so that the wavefront pass meets whole nests): every legal transformation gets tried.
Programs come in families (`FAMILIES`): the shapes the passes transform
(`pass_strategies.pass_programs`) and anything else (`tile_strategies.tile_programs`, kept
when it keeps the contract).  Each pass must change a fair share of the programs of a family
made for it.  The test counts them itself, around its own `@given` run (hypothesis shows
no statistics of a nested one), prints the counts (`pytest -s`) and names them all when a
share falls short; the runs are derandomized, so the counts are the same on every run.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from fractal.backends.cpu.policy import CpuPolicy
from fractal.lang.errors import VerifyError
from fractal.lower.hardware import KiB, MiB, Hardware, MemoryLevel
from fractal.lower.pipeline import PASSES, PassContext
from fractal.lower.target import Target
from tests.lower.pass_strategies import pass_programs
from tests.lower.tile_bruteforce import (cross_point_dependences, execute, instance_dependences,
                                         parallel_loop_dependences, repeated_scatter_rows)
from tests.lower.tile_strategies import tile_programs


class EagerPolicy(CpuPolicy):
    """Every change a pass asks about pays, and of a nest's schedules the one with the fewest
    stage runs is cheapest (a wavefront, a batch): passes act wherever they may."""

    def batch_across(self, facts, hw) -> bool:
        return True

    def cut_to_live(self, facts, hw) -> bool:
        return True

    def sink_into(self, facts, hw) -> bool:
        return True

    def tile_rows(self, facts, hw):
        return facts.rows // 2 if facts.rows > 1 else None

    def seconds(self, runs, hw) -> float:
        return float(sum(r.count for r in runs))


class NoBatchPolicy(EagerPolicy):
    """As eager, but no statement is batched across time: nests stay whole for the wavefront."""

    def batch_across(self, facts, hw) -> bool:
        return False


# test_passes' made-up cpu (a 4 KiB L2), pricing float64 GEMMs too
TINY = Hardware("tiny_cpu", "cpu", cores=1, simd_width_bytes=16,
                levels=(MemoryLevel("L1", 1 * KiB, 100.0), MemoryLevel("L2", 4 * KiB, 50.0),
                        MemoryLevel("DRAM", 1 * MiB, 10.0)),
                peak_gflops=(("float32", 1.0), ("float64", 0.5)), tile_align=8, tile_level="L2")
TARGETS = {"tiny cpu": Target("tiny cpu", "cpu", TINY, CpuPolicy()),
           "eager": Target("eager", "cpu", TINY, EagerPolicy()),
           "eager, no batch": Target("no batch", "cpu", TINY, NoBatchPolicy())}
NAMES = [name for name, _ in PASSES]


def outputs(program, inputs, order: str) -> dict:
    arrays = execute(program, inputs, order=order)
    return {b.name: arrays[b.name] for b in program.buffers if b.role == "output"}


def contract_breaches(program, inputs) -> list:
    deps = instance_dependences(program, inputs)
    return cross_point_dependences(deps, program) + parallel_loop_dependences(deps, program)


def check_pass(name: str, program, inputs, want: dict) -> None:
    """`program`, just made by pass `name`, is valid and computes `want`."""
    program.verify()
    breaches = contract_breaches(program, inputs)
    assert not breaches, f"after {name}, instances of one stage or parallel loop meet: {breaches[:2]}"
    for order in ("point", "op"):
        got = outputs(program, inputs, order)
        assert got.keys() == want.keys(), f"after {name}: outputs {sorted(got)}, want {sorted(want)}"
        for buffer, value in want.items():
            assert np.allclose(got[buffer], value, rtol=1e-9, atol=1e-12, equal_nan=True), \
                f"after {name}, {order}-major: {buffer} is\n{got[buffer]}\nwant\n{value}"


def run_passes(drawn, target: str, applied, fired: Counter, met: Counter) -> None:
    """The pipeline's passes marked in `applied`, in order, each checked; counts what they did."""
    program, inputs = drawn
    want = outputs(program, inputs, "point")
    ctx = PassContext(TARGETS[target])
    for (name, run), apply in zip(PASSES, applied):
        if not apply:
            continue
        after = run(program, ctx)
        met[name] += 1
        if after != program:
            fired[name] += 1
            note(f"after {name}:\n{after}")
            check_pass(name, after, inputs, want)
        program = after


CHOICES = dict(target=st.sampled_from(sorted(TARGETS)),
               applied=st.lists(st.booleans(), min_size=len(NAMES), max_size=len(NAMES)))


def valid(drawn) -> bool:
    """Does the program keep the contract, by the oracle and by `check_contract`?"""
    try:
        drawn.program.verify()
    except VerifyError:
        return False
    return not contract_breaches(*drawn) and not repeated_scatter_rows(*drawn)


# program family -> (its strategy, examples, {pass: the least share of the programs it meets
# that it must change}); the passes a family's shapes never call for are left out
FAMILIES = {
    "recurrence nests": (pass_programs(("nest",)), 220, {
        "schedule": 0.1, "hoist": 0.2, "wavefront": 0.1, "sink": 0.05, "batch": 0.3, "merge": 0.2, "fuse": 0.12,
        "merge_gemms": 0.05, "forward_results": 0.1, "contract_storage": 0.2, "roll_storage": 0.03,
        "trim_storage": 0.1, "tile": 0.05}),
    "maps, sums, weight blocks and ragged scans": (pass_programs(("map", "sum", "heads", "ragged")), 400, {
        "contract": 0.15, "schedule": 0.02, "batch": 0.3, "merge": 0.15, "fuse": 0.05, "widen_gemms": 0.08,
        "bucket": 0.05, "tile": 0.03}),
    "padded ragged maps": (pass_programs(("padded", "map")), 120, {"cut_dead": 0.2}),
    "arbitrary valid programs": (tile_programs().filter(valid), 80, {}),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_pass_keeps_programs_valid_and_their_outputs(family):
    """Each pass, on programs of `family`, makes valid programs computing the same outputs,
    and changes at least the expected share of those it meets (see `FAMILIES`)."""
    strategy, count, shares = FAMILIES[family]
    fired, met = Counter(), Counter()

    @settings(max_examples=count, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(drawn=strategy, **CHOICES)
    def passes_are_legal(drawn, target, applied):
        run_passes(drawn, target, applied, fired, met)

    passes_are_legal()
    seen = {name: f"{fired[name]}/{met[name]}" for name in NAMES}
    print(f"\n{family}: passes that changed the programs they met: {seen}")
    for name, share in shares.items():
        assert fired[name] >= share * met[name], f"{name} changed only {seen[name]} programs; all: {seen}"
