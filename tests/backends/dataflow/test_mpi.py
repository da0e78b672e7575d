"""The MPI executor runs a mesh program for real and gives the one-process run's answer, bit for bit.

Hand-built programs (`mpi_programs`: a Cannon product with shifts, a multicast, a chain of
sends, random transfers) run under `mpiexec` on one rank per PE and on blocks of PEs per
rank, plain and strict (synchronous sends); each equals a one-process reference written from
the mesh IR's rules and `local.py`'s one-PE semantics, and NumPy where it computes a product.
Every test that starts MPI runs under a timeout, so a hang fails instead of waiting.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractal.backends.dataflow import mpi
from fractal.backends.dataflow.blocked import BlockRun, RankGrid, run_local
from fractal.backends.dataflow.host import host_arrays
from fractal.backends.dataflow.mesh_ir import Alloc, Load, LocalBuffer, MeshProgram, Pes, Send, Superstep
from fractal.backends.dataflow.mpi import MpiMissingError, MpiRankError, MpiTimeoutError, run_mpi
from fractal.backends.dataflow.plan_file import load_plan, save_plan
from fractal.backends.dataflow.run import main as rank_main
from fractal.backends.dataflow.spec import mesh_spec
from fractal.lang.errors import ArgumentError, ShapeError, VerifyError
from fractal.lower.tile_ir import Region

from .mpi_programs import (PR, assert_same, box, cannon, integers, matrices, random_inputs, random_program, reference,
                           row_multicast, run_threads, send_chain)
from .programs import one_at_a_time

HAVE_MPI = importlib.util.find_spec("mpi4py") is not None and (
    os.path.exists(os.path.join(os.path.dirname(sys.executable), "mpiexec")) or shutil.which("mpiexec"))
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason="mpi4py or mpiexec is not installed (pip install '.[mpi]')")


# --- in one process -----------------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3, 6])
def test_cannon_in_one_process_is_the_product(n):
    program, inputs = cannon(n), matrices(n)
    want = reference(program, inputs)
    assert_same(want, {"c": inputs["a"] @ inputs["b"]})
    assert_same(run_local(program, inputs), want)


def test_an_interleaved_ring_in_one_process_is_the_reference():
    # (the skew is the wrapped ring's, so this is not a product: it checks the messages' routes)
    program, inputs = cannon(6, ring="interleaved"), matrices(6)
    assert_same(run_local(program, inputs), reference(program, inputs))


def test_a_rank_holds_only_its_own_pes_data_and_only_live_buffers():
    program = one_at_a_time(mesh_spec(4, 6), 2, steps=3)   # acc throughout; scratches of 1, 2, 3 rows, one per step
    x = integers(np.random.default_rng(1), (4, 6, 2))
    want = x
    for i in range(3):
        want = 2 * (want + i)
    assert_same(run_local(program, {"x": x}), {"y": want})
    block = BlockRun(program, host_arrays(program, {"x": x}), RankGrid(4, 6, (2, 3)), rank=4)   # PEs [2:4, 2:4]
    stored = block.run(lambda index, outgoing, incoming: {})
    assert [pe for _, pe, _ in stored] == [(2, 2), (2, 3), (3, 2), (3, 3)]
    assert block.array_peak_bytes == 4 * (2 + 3 * 2) * 8     # its 4 PEs' acc and largest scratch at once
    assert block.arrays == {}                                 # the final frees leave nothing


def test_a_pe_that_uses_a_buffer_it_has_not_allocated_is_an_error_in_one_process():
    good = one_at_a_time(mesh_spec(2, 2), 2, steps=1)
    bad = MeshProgram(good.name, good.spec, good.arrays, good.buffers, loads=good.loads, steps=good.steps)
    with pytest.raises(VerifyError, match=r"PE \(0, 0\) uses acc, which it has not allocated"):
        run_local(bad, {"x": np.zeros((2, 2, 2))})


@pytest.mark.parametrize("sender", [True, False], ids=["sender", "receiver"])
def test_a_message_from_or_into_a_buffer_its_pe_has_not_allocated_is_an_error_in_one_process(sender):
    # (the batched exchange checks both ends of every message, as the BSP engine does)
    v = Region("v", (0,), (2,))
    held = Pes.one(0, 1) if sender else Pes.one(0, 0)
    program = MeshProgram("one_send", mesh_spec(1, 2), (), (LocalBuffer("v", (2,), np.float64),),
                          allocs=(Alloc(("v",), held),), steps=(Superstep("send", transfers=(Send((0, 0), (0, 1), v, v),)),))
    missing = r"\(0, 0\)" if sender else r"\(0, 1\)"
    with pytest.raises(VerifyError, match=f"PE {missing} uses v, which it has not allocated"):
        run_local(program, {})


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(1, 4), st.sampled_from([(1, 1), (2, 1), (2, 2), (3, 2), (2, 3)]))
def test_random_transfers_by_blocks_of_pes_in_one_process_are_the_reference(seed, rows, cols, dims):
    program = random_program(seed, rows, cols)
    want = reference(program, random_inputs(program))
    assert_same(run_local(program, random_inputs(program)), want)
    assert_same(run_threads(program, random_inputs(program), dims), want)
    assert_same(run_threads(program, random_inputs(program), dims, strict=True), want)


def test_the_rank_grid_blocks_the_mesh_and_owns_every_pe_once():
    grid = RankGrid.oriented(6, 4, (3, 2))
    assert grid.dims == (3, 2) and grid.block(0) == Pes(0, 2, 0, 2) and grid.block(5) == Pes(4, 6, 2, 4)
    assert RankGrid.oriented(4, 6, (3, 2)).dims == (2, 3)
    for g in (grid, RankGrid(6, 6, (3, 3)), RankGrid(2, 2, (3, 3)), RankGrid(5, 7, (2, 4))):
        for pe in Pes(0, g.rows, 0, g.cols):
            assert [r for r in range(g.ranks) if pe in g.block(r)] == [g.owner(pe)]


def test_a_plan_file_holds_the_program_and_its_inputs(tmp_path):
    program, inputs = cannon(3), matrices(3)
    save_plan(program, inputs, tmp_path / "p.npz")
    loaded, got = load_plan(tmp_path / "p.npz")
    assert loaded == program and sorted(got) == ["a", "b"] and all(np.array_equal(got[k], inputs[k]) for k in inputs)


def test_a_file_that_is_not_a_plan_is_refused(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(2))
    with pytest.raises(ArgumentError, match=r"x.npz is not a plan file \(no 'fractal mesh plan"):
        load_plan(tmp_path / "x.npz")


def one_array(path):
    with open(path, "wb") as f:
        np.save(f, np.zeros(2))


@pytest.mark.parametrize("write, message", [
    (one_array, r"plan is not a plan file: not an .npz archive"),
    (lambda path: path.write_text("mesh @m on tiny {}"), r"plan is not a plan file: not an .npz archive"),
    (lambda path: None, r"no plan file .*plan\b"),
    (lambda path: save_plan("not a program", {}, path), r"plan holds a str, not a mesh program"),
])
def test_other_files_are_not_plans(tmp_path, write, message):
    path = tmp_path / "plan"
    write(path)
    with pytest.raises(ArgumentError, match=message):
        load_plan(path)


def test_a_rank_grid_has_two_positive_sides():
    with pytest.raises(ArgumentError, match=r"a rank grid needs two positive dimensions, not \(0, 2\)"):
        RankGrid(4, 4, (0, 2))


def test_wrong_inputs_are_refused_before_mpi_starts():
    program = cannon(2)
    with pytest.raises(ShapeError, match=r"cannon2: input 'b' has shape \(3, 4\), the program declares \(4, 4\)"):
        run_mpi(program, {"a": np.zeros((4, 4)), "b": np.zeros((3, 4))})
    with pytest.raises(ArgumentError, match=r"an MPI run needs at least one rank, not 0"):
        run_mpi(program, matrices(2), ranks=0)


def test_no_mpiexec_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(mpi.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MpiMissingError, match=r"no mpiexec next to .*python or on PATH \(pip install 'fractal-tensor\[mpi\]'"):
        run_mpi(cannon(2), matrices(2), ranks=4)


def test_no_mpi4py_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(mpi, "find_mpiexec", lambda: "mpiexec")
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(MpiMissingError, match=r"mpi4py is not installed for .*python.* \(pip install 'fractal-tensor\[mpi\]'"):
        run_mpi(cannon(2), matrices(2), ranks=4)
    save_plan(cannon(2), matrices(2), tmp_path / "plan.npz")
    assert rank_main([str(tmp_path / "plan.npz")]) == 2
    assert "mpi4py is not installed for this Python: pip install 'fractal-tensor[mpi]'" in capsys.readouterr().err


# --- under mpiexec ------------------------------------------------------------------------------

@needs_mpi
@pytest.mark.timeout(60)
@pytest.mark.parametrize("n", [2, 3])
def test_cannon_one_rank_per_pe(n):
    program, inputs = cannon(n), matrices(n, seed=n)
    outputs, wall = run_mpi(program, inputs, ranks=n * n, timeout=50)
    assert_same(outputs, reference(program, inputs))
    assert_same(outputs, {"c": inputs["a"] @ inputs["b"]})
    assert 0 < wall < 50


@needs_mpi
@pytest.mark.timeout(60)
@pytest.mark.parametrize("ranks", [4, 6, 9])
def test_cannon_on_6x6_pes_by_blocks_of_pes_per_rank(ranks):
    program, inputs = cannon(6, ring="interleaved"), matrices(6, seed=ranks)
    outputs, _ = run_mpi(program, inputs, ranks=ranks, timeout=50)
    assert_same(outputs, reference(program, inputs))


@needs_mpi
@pytest.mark.timeout(60)
def test_a_hostfile_places_the_ranks(tmp_path):
    # a cluster's run differs only by the hostfile (here: this machine, four slots)
    (tmp_path / "hosts").write_text("localhost:4\n")
    program, inputs = cannon(2), matrices(2, seed=5)
    outputs, _ = run_mpi(program, inputs, ranks=4, timeout=50, mpiexec_args=["-f", str(tmp_path / "hosts")])
    assert_same(outputs, {"c": inputs["a"] @ inputs["b"]})


@needs_mpi
@pytest.mark.timeout(60)
def test_a_multicast_reaches_every_pe_of_each_row():
    program = row_multicast(3, 4, root=2)
    rng = np.random.default_rng(1)
    inputs = {"x": integers(rng, (3, 4, 3)), "y": integers(rng, (3, 4, 3))}
    outputs, _ = run_mpi(program, inputs, ranks=4, timeout=50)
    assert_same(outputs, reference(program, inputs))
    assert_same(outputs, {"out": inputs["x"][:, 2:3, :] + inputs["y"]})


@needs_mpi
@pytest.mark.timeout(60)
def test_a_chain_of_sends_with_two_dtypes_in_one_message():
    program, inputs = send_chain(3, 3), {"x0": np.array([10.0, -2.0])}
    outputs, _ = run_mpi(program, inputs, ranks=6, timeout=50)
    want = reference(program, inputs)
    assert_same(outputs, want)
    assert want["x"][2, 2].tolist() == [11.0, -1.0] and want["hops"][2, 2].tolist() == [8, 8]


@needs_mpi
@pytest.mark.timeout(60)
@pytest.mark.parametrize("strict", [False, True])
def test_random_transfers_on_blocks_of_pes(strict):
    program = random_program(seed=11, rows=4, cols=5, steps=6)
    outputs, _ = run_mpi(program, random_inputs(program), ranks=6, strict=strict, timeout=50)
    assert_same(outputs, reference(program, random_inputs(program)))


@needs_mpi
@pytest.mark.timeout(60)
def test_strict_mode_completes_a_cannon_product_on_blocks():
    program, inputs = cannon(6), matrices(6, seed=7)
    outputs, _ = run_mpi(program, inputs, ranks=4, strict=True, timeout=50)
    assert_same(outputs, reference(program, inputs))


@needs_mpi
@pytest.mark.timeout(60)
def test_a_failing_rank_shows_its_error():
    good = cannon(2)
    bad = MeshProgram(good.name, good.spec, good.arrays, good.buffers, allocs=good.allocs, loads=(
        Load(Pes(0, 2, 0, 2), box("ta", 0, 0, size=2), box("a", PR - 1, 0, size=2)),), steps=good.steps, stores=good.stores)
    with pytest.raises(MpiRankError, match=r"(?s)the MPI run of cannon2 on 4 ranks failed.*rank [0-9] of 4 failed.*"
                                           r"region a starts at -1 on axis 0"):
        run_mpi(bad, matrices(2), ranks=4, timeout=50)


@needs_mpi
@pytest.mark.timeout(60)
def test_a_run_past_its_timeout_is_stopped():
    with pytest.raises(MpiTimeoutError, match=r"the MPI run of cannon2 on 4 ranks did not finish within 0.05 s"):
        run_mpi(cannon(2), matrices(2), ranks=4, timeout=0.05)
