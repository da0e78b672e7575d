"""Stages split over threads (`fractal.backends.cpu.threads`): which stages the plan splits,
how a box is cut, and that split runs give the serial executor's results (random programs,
zoo models ragged and regular, errors raised inside a worker)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from examples import zoo
from threadpoolctl import threadpool_info

from fractal.backends import blas_workers
from fractal.backends.cpu import CpuExecutable, executor, ops, threads
from fractal.backends.cpu.policy import CpuPolicy
from fractal.lang.errors import LengthError
from fractal.lower import parse_tile_program

from fractal.backends.pointwise import run_pointwise
from .programs import parallel_programs, program_data


def program(text: str):
    return parse_tile_program(text).verify()


SPLIT = CpuPolicy().split_elements  # the CPU policy's threshold for cutting a stage


@pytest.fixture
def forks(monkeypatch):
    """Counts the forks and their pieces (executables built with `split_elements=1` split
    every qualifying stage, however small)."""
    seen = []
    fork = threads.Team.fork

    def counting(self, tasks):
        seen.append(len(tasks))
        fork(self, tasks)
    monkeypatch.setattr(threads.Team, "fork", counting)
    return seen


CELL = """tile @t {
  buffer x: f32[64,1,256] global input
  buffer w: f32[256,1024] global input
  buffer g: f32[64,1,1024] global temp
  buffer h: f32[64,1,1024] global output
  stage gates(b in 0:64) device {
    g[b, 0:1, 0:1024] = gemm(x[b, 0:1, 0:256], w[0:256, 0:1024])
  }
  stage cell(b in 0:64) device {
    h[b, 0:1, 0:1024] = tanh(g[b, 0:1, 0:1024])
  }
}"""


def test_plan_splits_only_when_every_gemm_stage_is_split():
    """The LSTM-like step: its GEMM's box is too small to be worth a fork, so the whole
    program stays on one thread (BLAS's threads run that GEMM faster); the element-wise
    stage alone would qualify."""
    p = program(CELL)
    assert set(threads.qualifying(p, SPLIT)) == set()
    assert threads.plan(p, 2, SPLIT) == {}
    big = program(CELL.replace("64", "4096"))
    assert set(threads.qualifying(big, SPLIT)) == {"gates", "cell"}
    assert set(threads.plan(big, 2, SPLIT)) == {"gates", "cell"}
    assert threads.plan(big, 1, SPLIT) == {}
    elementwise_only = program(CELL.replace("64", "4096").replace(
        "g[b, 0:1, 0:1024] = gemm(x[b, 0:1, 0:256], w[0:256, 0:1024])", "g[b, 0:1, 0:256] = copy(x[b, 0:1, 0:256])"))
    assert set(threads.plan(elementwise_only, 2, SPLIT)) == {"gates", "cell"}


def test_plan_leaves_gemms_of_one_blas_call_each_to_blas():
    """b2b_gemm's shape: stages of GEMMs with a weight every point shares fold into one
    BLAS call each, which BLAS's own threads split: no stage is cut, even when they
    qualify; a GEMM of a per-point pair (flash's `q[b] @ k[b]`) is many calls: cut."""
    big = CELL.replace("64", "4096")
    two = big.replace("buffer g:", "buffer v: f32[1024,1024] global input\n  buffer g:").replace(
        "tanh(g[b, 0:1, 0:1024])", "gemm(g[b, 0:1, 0:1024], v[0:1024, 0:1024])")
    p = program(two)
    assert set(threads.qualifying(p, SPLIT)) == {"gates", "cell"}
    assert all(threads.one_call_gemms(st) for st in p.stages())
    assert threads.plan(p, 2, SPLIT) == {}
    per_point = program(two.replace("v: f32[1024,1024] global input", "v: f32[4096,1024,1024] global input")
                        .replace("v[0:1024, 0:1024]", "v[b, 0:1024, 0:1024]"))
    assert not threads.one_call_gemms(next(st for st in per_point.stages() if st.name == "cell"))
    assert set(threads.plan(per_point, 2, SPLIT)) == {"gates", "cell"}
    assert set(threads.plan(program(big), 2, SPLIT)) == {"gates", "cell"}, "the cell is not a GEMM"


def test_qualifying_stages_name_their_dims_and_per_point_work(monkeypatch):
    """A dim some write does not name cannot be cut (two sub-boxes would write one row); a
    scatter's rows come from data; a gather's table (shared by all points) is no per-point
    work."""
    p = parse_tile_program("""tile @t {
  buffer x: f32[8,4,16] global input
  buffer idx: i64[2] global const = [1, 0]
  buffer y: f32[8,4,16] global output
  buffer z: f32[8,16] global output
  buffer w: f32[8,4,2] global output
  buffer s: f32[8,4,16] global output
  stage both(i in 0:8, j in 0:4) device {
    y[i, j, 0:16] = exp(x[i, j, 0:16])
    z[i, 0:16] = copy(x[i, 0, 0:16])
  }
  stage rows(i in 0:8) device {
    w[i, 0:4, 0:2] = gather(x[i, 0:4, 0:16], idx[0:2], axis=1)
  }
  stage scattered(i in 0:8) device {
    s[i, 0:2, 0:16] = scatter(x[i, 0:2, 0:16], idx[0:2], axis=0)
  }
}""").verify(contract=False)  # (`both` breaks the contract: the plan must not rely on it)
    q = threads.qualifying(p, 1)
    assert q["both"] == threads.Split(dims=(0,), per_point=16 + 16, min_elements=1)
    assert q["rows"].dims == (0,) and q["rows"].per_point == 4 * 16
    assert "scattered" not in q


def test_a_shared_gather_table_is_not_counted_per_point(monkeypatch):
    p = program("""tile @t {
  buffer table: f32[100,32] global input
  buffer idx: i64[16] global const = [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75]
  buffer y: f32[16,1,32] global output
  stage rows(i in 0:16) device {
    y[i:i + 1, 0:1, 0:32] = gather(table[0:100, 0:32], idx[i:i + 1], axis=0)
  }
}""".replace("y[i:i + 1, 0:1, 0:32]", "y[i, 0:1, 0:32]"))
    assert threads.qualifying(p, 1)["rows"].per_point == 32


@pytest.mark.parametrize("box, dims, parts, want", [
    ((2, 8, 16), (0, 1, 2), 2, 0),  # outermost, even
    ((1, 8, 16), (0, 1, 2), 2, 1),  # one point: next dim
    ((3, 8), (0, 1), 2, 1),  # 3 into 2 is 1.33x the mean: the even one
    ((3, 5), (0, 1), 2, 1),  # neither even: the more even (5 -> 3+2 beats 3 -> 2+1)
    ((4, 8), (1,), 2, 1),  # only candidates
    ((1, 1), (0, 1), 2, None),
])
def test_cut_prefers_the_outermost_even_dim(box, dims, parts, want):
    assert threads.cut(box, dims, parts) == want


def test_pieces_are_consecutive_and_even():
    assert threads.pieces(7, 3) == [(0, 3), (3, 2), (5, 2)]
    assert threads.pieces(2, 4) == [(0, 1), (1, 1)]
    assert sum(n for _, n in threads.pieces(1000, 7)) == 1000


def test_split_stages_equal_one_thread_and_fork_only_big_boxes(forks, monkeypatch):
    """The big cell program: every stage forks into one piece per thread, results equal the
    one-thread run; with the threshold back, a run whose box is small stays unsplit."""
    p = program(CELL.replace("64", "4096"))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, 1, 256)).astype(np.float32)
    w = rng.standard_normal((256, 1024)).astype(np.float32) / 16
    one = CpuExecutable(p, threads=1).run({"x": x, "w": w})["h"]
    assert forks == []
    split = CpuExecutable(p, threads=3, split_elements=1)
    blas_threads, multiply = [], ops.multiply

    def recording(*a):  # BLAS holds to one thread per caller while the program runs split
        blas_threads.append(max((lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"), default=1))
        multiply(*a)
    monkeypatch.setattr(ops, "multiply", recording)
    np.testing.assert_allclose(split.run({"x": x, "w": w})["h"], one, rtol=1e-5, atol=1e-6)  # BLAS blocks differ
    assert forks == [3, 3] and blas_threads == [1, 1, 1]
    CpuExecutable(p, threads=3, split_elements=1 << 40).run({"x": x, "w": w})
    assert forks == [3, 3]


def test_an_error_in_a_worker_reaches_the_caller(forks):
    """A traced gather index out of range, in the piece a worker runs."""
    p = program("""tile @t {
  buffer x: f32[8,4] global input
  buffer idx: i64[8,1] global input
  buffer y: f32[8,1] global output
  stage g(i in 0:8) device {
    y[i, 0:1] = gather(x[i, 0:4], idx[i, 0:1], axis=0)
  }
}""")
    exe = CpuExecutable(p, threads=2, split_elements=1)
    idx = np.zeros((8, 1), np.int64)
    idx[7, 0] = 9  # the last point: the second piece
    with pytest.raises(LengthError, match="out of range"):
        exe.run({"x": np.ones((8, 4), np.float32), "idx": idx})
    assert forks == [2]
    idx[7, 0] = 3
    assert exe.run({"x": np.arange(32, dtype=np.float32).reshape(8, 4), "idx": idx})["y"][7, 0] == 31


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parallel_programs())
def test_random_programs_split_over_threads_match_the_pointwise_executor(case):
    """Random parallel-safe programs, every qualifying stage split into three pieces (GEMM
    stages too: the plan's GEMM rule is a speed policy, not a correctness one), give the
    pointwise executor's outputs on two runs."""
    p, index_info = case
    inputs = program_data(p, index_info, 1, "input")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(executor, "plan", lambda prog, n, least: threads.qualifying(prog, least))
        exe, temps = CpuExecutable(p, threads=3, split_elements=1), {}
        for run in range(2):
            got, want = exe.run(inputs), run_pointwise(p, inputs, temps)
            for name in want:
                np.testing.assert_allclose(got[name], want[name], rtol=1e-6, err_msg=f"{name}, run {run}\n{p}")


@pytest.mark.parametrize("name", ["flash_attention", "bigbird", "sliding_window_attention", "stacked_lstm"])
@pytest.mark.parametrize("ragged", [True, False], ids=["ragged", "regular"])
def test_zoo_models_split_over_threads_equal_the_interpreter(forks, name, ragged):
    """Small configurations in float64, every qualifying stage split into three pieces."""
    m = zoo.load(name)
    args = m.inputs("small", dtype=np.float64, ragged=ragged)
    compiled = m.model.compile(*args, target="cpu-generic")
    split = dataclasses.replace(compiled, _executable=CpuExecutable(compiled.tile_ir, threads=3, split_elements=1))
    got = m.outputs(split.run(*args))
    assert forks, "the test needs a split stage"
    assert zoo.max_abs_error(got, m.outputs(m.model(*args, backend="interpreter"))) < 1e-12


def test_thread_count_from_the_environment(monkeypatch):
    monkeypatch.setenv("FRACTAL_NUM_THREADS", "3")
    assert threads.workers() == 3
    monkeypatch.setenv("FRACTAL_NUM_THREADS", "0")
    assert threads.workers() == 1
    monkeypatch.setenv("FRACTAL_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="FRACTAL_NUM_THREADS must be a whole number of threads, got 'two'"):
        threads.workers()
    monkeypatch.setenv("FRACTAL_NUM_THREADS", "4")
    monkeypatch.setattr(threads, "_blas", False)  # threadpoolctl missing: BLAS's threads cannot be held
    assert threads.workers() == 1


def test_openblas_spinning_threads_are_stopped_and_restart():
    """A split run first ends OpenBLAS's worker threads (they spin ~100 ms after each
    multi-threaded call, on the cores the split stages need); BLAS starts them again at its
    next multi-threaded call and gives the same products."""
    if not any(lib["internal_api"] == "openblas" for lib in threadpool_info()):
        pytest.skip("NumPy's BLAS is not OpenBLAS here: nothing spins to be stopped")
    assert blas_workers._shutdowns(), "OpenBLAS exports blas_thread_shutdown_"
    a = np.random.default_rng(0).standard_normal((256, 256))
    want = a @ a
    with threads.Team(2).running():
        np.testing.assert_allclose(a @ a, want, rtol=1e-12)  # one thread inside a run
    np.testing.assert_allclose(a @ a, want, rtol=1e-12)  # threads restarted after it
