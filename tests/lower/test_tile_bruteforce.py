"""The brute-force dependence oracle (`tile_bruteforce`) and its random programs (`tile_strategies`).

Hand-written programs with known dependences pin the oracle down: a scan's flow distance,
a parallel map's independence, anti and output dependences, and scatters and gathers whose
dependences follow the index data of their const tables (a permutation, duplicate rows,
padding that touches nothing).  What the tile IR's contract rules out is found: dependences
between a stage's points or a parallel loop's iterations, a scatter naming a row twice in
one point.  Properties over random programs tie the oracle to execution: where it finds no
dependence between two points of a stage, running the stage's ops point by point or op by
op gives the same memory (and the same dependences); and the dependences are complete: any
order of the instances that keeps them gives the program's memory.
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from fractal.lower.tile_parser import parse_tile_program
from tests.backends.cpu.programs import with_data
from tests.lower.tile_bruteforce import (Access, Env, Instance, between, cross_point_dependences,
                                         distance_vectors, element_accesses, execute, has_dependence,
                                         instance_dependences, parallel_loop_dependences, program_instances,
                                         repeated_scatter_rows, run_instances)
from tests.lower.tile_strategies import tile_programs

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same_memory(a: dict, b: dict) -> None:
    for name in a:
        assert np.array_equal(a[name], b[name], equal_nan=True), name


def program(text: str, contract: bool = True):
    return parse_tile_program(text).verify(contract=contract)


def pairs(deps, src_var: str, dst_var: str) -> set[tuple[int, int]]:
    """(source's value of src_var, sink's value of dst_var) of every dependence."""
    return {(d.src.env[src_var], d.dst.env[dst_var]) for d in deps}


# --- hand-written programs ---------------------------------------------------------------------

SCAN = """tile @scan {
  buffer x: f64[5,2] global output
  for s in 0:4 sequential host {
    stage step() device {
      x[s + 1, 0:2] = add(x[s, 0:2], 1.0)
    }
  }
}"""


def test_a_scan_carries_a_flow_dependence_of_distance_one():
    at = lambda s: Instance(("step", 0), Env(s=s))  # noqa: E731
    assert element_accesses(program(SCAN))[("x", (1, 0))] == [Access(0, at(0), read=False, wrote=True),
                                                              Access(1, at(1), read=True, wrote=False)]
    deps = instance_dependences(program(SCAN))
    assert {d.kind for d in deps} == {"flow"}
    assert distance_vectors(deps, ["s"]) == {(1,)}
    first = at(0), at(1)
    assert [(d.src, d.dst, d.element) for d in deps[:2]] == [(*first, (1, 0)), (*first, (1, 1))]
    assert execute(program(SCAN))["x"][:, 0].tolist() == [0, 1, 2, 3, 4]


def test_a_parallel_map_has_no_dependence_across_its_points():
    p = program("""tile @map {
      buffer x: f64[4,3] global input
      buffer y: f64[4,3] global output
      stage double(i in 0:4) device {
        y[i, 0:3] = add(x[i, 0:3], x[i, 0:3])
        y[i, 0:3] = add(y[i, 0:3], 1.0)
      }
    }""")
    deps = instance_dependences(p)
    assert not cross_point_dependences(deps, p)
    assert distance_vectors(deps, ["i"]) == {(0,)}  # only the two ops of one point meet
    assert {d.kind for d in deps} == {"flow", "output"}


def test_reading_ahead_of_the_writes_gives_anti_dependences_only():
    p = program("""tile @shift {
      buffer y: f64[5] global output
      for i in 0:4 sequential host {
        stage pull() device {
          y[i] = add(y[i + 1], 1.0)
        }
      }
    }""")
    deps = instance_dependences(p)
    assert {d.kind for d in deps} == {"anti"}
    assert distance_vectors(deps, ["i"]) == {(1,)}
    assert {d.element for d in deps} == {(1,), (2,), (3,)}


def test_overwriting_one_row_gives_output_dependences_between_every_pair_of_steps():
    p = program("""tile @last {
      buffer x: f64[3,2] global input
      buffer y: f64[2] global output
      for t in 0:3 sequential host {
        stage keep() device {
          y[0:2] = copy(x[t, 0:2])
        }
      }
    }""")
    deps = instance_dependences(p)
    assert {d.kind for d in deps} == {"output"}
    assert distance_vectors(deps, ["t"]) == {(1,), (2,)}  # memory-based: every earlier write, not only the last
    assert len(deps) == 3 * 2  # the pairs (0,1) (0,2) (1,2), each on both elements


PERMUTED = """tile @permuted {
  buffer x: f64[4,2] global input
  buffer perm: i64[4] global const = [2, 0, 3, 1]
  buffer z: f64[4,2] global temp
  buffer y: f64[4,2] global output
  stage put(t in 0:4) device {
    z[0:4, 0:2] = scatter(x[t:t + 1, 0:2], perm[t:t + 1], axis=0)
  }
  stage get(r in 0:4) device {
    y[r, 0:2] = copy(z[r, 0:2])
  }
}"""


def test_a_scatter_through_a_permutation_reaches_exactly_the_rows_its_table_names():
    """The oracle reads a const table's data off its buffer: point t writes row perm[t]."""
    p, perm = program(PERMUTED), [2, 0, 3, 1]
    deps = instance_dependences(p, {"x": np.ones((4, 2))})
    assert pairs(deps, "t", "r") == {(t, perm[t]) for t in range(4)}
    assert {d.kind for d in deps} == {"flow"} and not cross_point_dependences(deps, p)


def test_a_scatter_writing_one_row_twice_makes_its_points_dependent():
    p = with_data(program(PERMUTED), {"perm": [1, 1, 0, 2]})
    deps = instance_dependences(p)
    assert [(d.kind, d.src.env["t"], d.dst.env["t"], d.element) for d in cross_point_dependences(deps, p)] == \
        [("output", 0, 1, (1, 0)), ("output", 0, 1, (1, 1))]
    assert pairs(between(deps, "put", "get"), "t", "r") == {(0, 1), (1, 1), (2, 0), (3, 2)}


def test_scatter_padding_one_past_the_end_writes_nothing():
    """An index value equal to the destination region's size along the axis (4 here) is
    padding: that point writes no row, so nothing reads what it wrote, and the row no point
    names keeps its zeros."""
    p = with_data(program(PERMUTED), {"perm": [2, 4, 0, 4]})
    deps = instance_dependences(p, {"x": np.ones((4, 2))})
    assert pairs(deps, "t", "r") == {(0, 2), (2, 0)}
    assert {e for (buffer, e), found in element_accesses(p).items() if buffer == "z" and
            any(a.wrote for a in found)} == {(0, 0), (0, 1), (2, 0), (2, 1)}
    assert execute(p, {"x": np.ones((4, 2))})["y"].tolist() == [[1, 1], [0, 0], [1, 1], [0, 0]]


def test_gather_padding_one_past_the_end_reads_nothing_and_gives_zeros():
    """A gather's index value equal to its source region's size (4 rows of z here) reads no
    row: that point depends on no writer of z and gets zeros."""
    p = program("""tile @back {
      buffer x: f64[4,2] global input
      buffer perm: i64[4] global const = [2, 0, 3, 1]
      buffer back: i64[4] global const = [4, 0, 4, 2]
      buffer z: f64[4,2] global temp
      buffer y: f64[4,2] global output
      stage put(t in 0:4) device {
        z[0:4, 0:2] = scatter(x[t:t + 1, 0:2], perm[t:t + 1], axis=0)
      }
      stage get(r in 0:4) device {
        y[r:r + 1, 0:2] = gather(z[0:4, 0:2], back[r:r + 1], axis=0)
      }
    }""")
    deps = instance_dependences(p, {"x": np.ones((4, 2))})
    assert pairs(between(deps, "put", "get"), "t", "r") == {(1, 1), (0, 3)}  # rows 0 and 2 of z: put by t = 1, 0
    assert execute(p, {"x": np.ones((4, 2))})["y"].tolist() == [[0, 0], [1, 1], [0, 0], [1, 1]]


def test_a_scatter_naming_a_row_twice_within_one_point_is_reported():
    """Within one point a scatter may name each row once (the contract); -1 counts from the
    end (row 2 of 3), padding (3) names no row however often it repeats."""
    p = program("""tile @twice {
      buffer x: f64[4,2] global input
      buffer rows: i64[2,4] global const = [[0, 3, 2, 3], [2, -1, 1, 3]]
      buffer y: f64[2,3,2] global output
      stage put(b in 0:2) device {
        y[b, 0:3, 0:2] = scatter(x[0:4, 0:2], rows[b, 0:4], axis=0)
      }
    }""", contract=False)
    assert repeated_scatter_rows(p) == [(Instance(("put", 0), Env(b=1)), 2)]
    assert not cross_point_dependences(instance_dependences(p), p)  # the points write their own y[b]


def test_a_gather_with_duplicate_indices_reads_its_rows_once_per_point_that_names_them():
    p = program("""tile @lookup {
      buffer x: f64[4,2] global input
      buffer rows: i32[3] global const = [3, 3, -3]
      buffer z: f64[4,2] global temp
      buffer y: f64[3,2] global output
      stage fill(r in 0:4) device {
        z[r, 0:2] = copy(x[r, 0:2])
      }
      stage take(p in 0:3) device {
        y[p:p + 1, 0:2] = gather(z[0:4, 0:2], rows[p:p + 1], axis=0)
      }
    }""")
    deps = instance_dependences(p)  # -3 counts from the end: row 1
    assert pairs(deps, "r", "p") == {(3, 0), (3, 1), (1, 2)}
    assert not has_dependence(deps, "take", "take") and has_dependence(deps, "take", ("fill", 0))


def test_distances_of_a_loop_around_a_stage_hold_its_points_fixed():
    p = program("""tile @sum {
      buffer x: f64[3,4] global input
      buffer y: f64[4] global output
      for t in 0:3 sequential host {
        stage acc(i in 0:4) device {
          y[i] = add(y[i], x[t, i])
        }
      }
    }""")
    deps = instance_dependences(p)
    assert distance_vectors(deps, ["t", "i"]) == {(1, 0), (2, 0)}
    assert distance_vectors(deps, ["t"], fixed=["i"]) == {(1,), (2,)}
    assert {d.kind for d in deps} == {"flow", "anti", "output"}


# --- the stage contract: points are independent ---------------------------------------------------

def test_a_stage_whose_points_depend_is_caught_and_runs_differently_op_by_op():
    p = program("""tile @swap {
      buffer x: f64[2] global input
      buffer y: f64[2] global temp
      buffer z: f64[2] global output
      stage cross(p in 0:2) device {
        y[p] = copy(x[p])
        z[p] = copy(y[1 - p])
      }
    }""", contract=False)
    x = {"x": np.array([1.0, 2.0])}
    at = lambda k, point: Instance(("cross", k), Env(p=point))  # noqa: E731
    assert [(d.kind, d.src, d.dst) for d in cross_point_dependences(instance_dependences(p, x), p)] == [
        ("anti", at(1, 0), at(0, 1)), ("flow", at(0, 0), at(1, 1))]
    assert [(d.kind, d.src.op, d.dst.op) for d in instance_dependences(p, x, order="op")] == [
        ("flow", ("cross", 0), ("cross", 1))] * 2
    assert execute(p, x)["z"].tolist() == [0.0, 1.0]
    assert execute(p, x, order="op")["z"].tolist() == [2.0, 1.0]


def test_iterations_of_one_run_of_a_parallel_loop_that_meet_are_caught():
    """Iterations i and i + 1 of the first parallel loop meet at y[t, i + 1] (within one step
    t); across steps, and between the second loop (which reuses the name i) and the first,
    meeting is allowed: those are not iterations of one run of one parallel loop."""
    p = program("""tile @chain {
      buffer y: f64[2,4] global output
      buffer z: f64[2,4] global output
      for t in 0:2 sequential host {
        for i in 0:3 parallel host {
          stage a() device { y[t, i + 1] = add(y[t, i], 1.0) }
        }
        for i in 0:3 parallel host {
          stage b() device { z[t, i] = add(y[t, 3 - i], y[1 - t, i]) }
        }
      }
    }""", contract=False)
    deps = instance_dependences(p)
    assert has_dependence(deps, "a", "b")
    assert [(d.kind, d.src.op, dict(d.src.env), dict(d.dst.env)) for d in parallel_loop_dependences(deps, p)] == [
        ("flow", ("a", 0), {"i": i, "t": t}, {"i": i + 1, "t": t}) for t in range(2) for i in range(2)]


@SETTINGS
@given(tile_programs())
def test_stages_without_cross_point_dependences_run_the_same_in_either_order(drawn):
    """Random programs are valid; where the oracle finds no dependence between two points of
    any stage, op-major execution leaves every buffer as point-major does, and meets the
    same dependences (as a set: the order of the reports differs)."""
    p = drawn.program.verify(contract=False)
    started = time.perf_counter()
    deps = instance_dependences(*drawn)
    note(f"{len(deps)} dependences in {time.perf_counter() - started:.3f} s")
    if cross_point_dependences(deps, p):
        event("a stage's points depend on each other")
        return
    event("checked both orders" + (" of multi-point stages" if any(s.dims for s in p.stages()) else ""))
    assert_same_memory(execute(*drawn), execute(*drawn, order="op"))
    assert set(instance_dependences(*drawn, order="op")) == set(deps)


def topological_order(instances: list[Instance], deps, random) -> list[Instance]:
    """The instances in a random order that runs every dependence's source before its sink."""
    place = {inst: n for n, inst in enumerate(instances)}
    after, waits = defaultdict(set), [0] * len(instances)
    for d in deps:
        src, dst = place[d.src], place[d.dst]
        if dst not in after[src]:
            after[src].add(dst)
            waits[dst] += 1
    ready, order = [n for n, w in enumerate(waits) if not w], []
    while ready:
        n = ready.pop(random.randrange(len(ready)))
        order.append(instances[n])
        for m in after[n]:
            waits[m] -= 1
            if not waits[m]:
                ready.append(m)
    assert len(order) == len(instances)  # dependences run forward: no cycle
    return order


@SETTINGS
@given(tile_programs(), st.randoms(use_true_random=False))
def test_every_order_the_dependences_allow_leaves_the_same_memory(drawn, random):
    """Completeness: running the instances in any order that keeps every dependence's source
    before its sink (here a random topological order) ends with the memory of the program
    order; a dependence the oracle missed would let some such order change the result."""
    instances = program_instances(drawn.program)
    assert len(set(instances)) == len(instances)  # an (op, env) names one instance
    reordered = topological_order(instances, instance_dependences(*drawn), random)
    note(f"order: {reordered}")
    assert_same_memory(run_instances(drawn.program, reordered, drawn.inputs), execute(*drawn))
