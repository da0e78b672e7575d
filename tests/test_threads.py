"""Compiled functions and tracing from several threads at once.

Specification checked here:

* One compiled function called from 4 threads, hundreds of calls in all, returns for every
  call what a call alone returns: with `FRACTAL_NUM_THREADS=1`, with the default threads, and
  with 2 threads and every stage big enough to be cut over them (the runs that find the
  workers busy run on their calling thread, and BLAS's thread count is what it was after).
  Runs that overlapped each had a frame of their own, and at most `MAX_FREE_FRAMES` idle
  frames are kept.
* The pointwise and interpreter backends, called from several threads, agree too.
* Tracing is per thread: concurrent first calls of several functions (and of one function
  with several argument types) trace each key once and all return right results; an eager
  `ft.zeros` in one thread while another thread traces returns an array, never a tracer, and
  the trace holds only its own thread's operations.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

import fractal as ft
from fractal.backends.cpu.executor import MAX_FREE_FRAMES
from fractal.backends.cpu.policy import CpuPolicy
from fractal.compile import resolve_target
from fractal.lang.tracing import Tracer

H, STEPS, BATCH, KINDS = 128, 8, 4, 8


def rnn_function():
    @ft.function
    def rnn(xss, w, u):
        return ft.map(lambda xs: ft.scan(lambda h, x: ft.tanh(x @ w + h @ u), xs, ft.zeros((1, H))), xss)
    return rnn


def rnn_inputs(k: int):
    """The k-th argument set: every one gives other results."""
    rng = np.random.default_rng(k)
    xss = ft.fractal([[rng.standard_normal((1, H)).astype(np.float32) for _ in range(STEPS)]
                      for _ in range(BATCH)])
    w, u = ((rng.standard_normal((H, H)) / np.sqrt(H)).astype(np.float32) for _ in range(2))
    return xss, w, u


def hammer(call, n_threads: int = 4, calls: int = 60):
    """`call(k)` for k cycling over the argument sets, `calls` times in each of `n_threads`
    threads started together; the (k, result) pairs."""
    start = threading.Barrier(n_threads)

    def work(t):
        start.wait()
        return [(k, call(k)) for k in ((t + i) % KINDS for i in range(calls))]
    with ThreadPoolExecutor(n_threads) as pool:
        return [pair for part in pool.map(work, range(n_threads)) for pair in part]


@pytest.mark.parametrize("threads, split", [("1", False), (None, False), ("2", True)],
                         ids=["FRACTAL_NUM_THREADS=1", "default threads", "2 threads, stages cut"])
def test_one_compiled_rnn_called_from_four_threads_gives_every_call_its_own_result(monkeypatch, threads, split):
    if threads is None:
        monkeypatch.delenv("FRACTAL_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("FRACTAL_NUM_THREADS", threads)
    target = resolve_target()
    if split:  # every stage big enough to be cut over the 2 threads (BLAS held to 1 meanwhile)
        threadpoolctl = pytest.importorskip("threadpoolctl")
        target = replace(target, policy=replace(target.policy, split_elements=1))
        blas_threads = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    rnn = rnn_function()
    args = [rnn_inputs(k) for k in range(KINDS)]
    compiled = rnn.compile(*args[0], target=target)
    if split:
        assert compiled._executable.threads == 2
    alone = [compiled(*a).to_numpy() for a in args]
    results = hammer(lambda k: compiled(*args[k]).to_numpy())
    assert len(results) == 240
    wrong = sum(not np.allclose(got, alone[k], rtol=1e-5, atol=1e-6) for k, got in results)
    assert wrong == 0, f"{wrong} of {len(results)} results wrong"
    assert 1 <= len(compiled._executable._free) <= MAX_FREE_FRAMES
    if split:  # one run at a time held BLAS to one thread, and gave its count back
        assert [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"] == blas_threads


@pytest.mark.parametrize("backend", ["pointwise", "interpreter"])
def test_the_other_backends_called_from_several_threads_agree(backend):
    @ft.function
    def scaled(xs, w):
        return ft.map(lambda x: ft.tanh(x @ w) * 2.0, xs)

    rng = np.random.default_rng(0)
    args = [(ft.fractal([rng.standard_normal((1, 8)) for _ in range(3)]), rng.standard_normal((8, 8)))
            for _ in range(KINDS)]
    alone = [scaled(*a, backend=backend).to_numpy() for a in args]
    results = hammer(lambda k: scaled(*args[k], backend=backend).to_numpy(), calls=10)
    assert all(np.allclose(got, alone[k]) for k, got in results)


@pytest.mark.parametrize("backend", ["cpu", "interpreter"])
def test_concurrent_first_calls_trace_once_per_key_and_all_return_right_results(backend):
    traces = []

    def counted(fn):
        def body(*args):
            traces.append(threading.get_ident())
            return fn(*args)
        return ft.function(body)

    fns = [counted(lambda xs, c=c: ft.map(lambda x: x * float(c) + 1.0, xs)) for c in range(4)]
    lists = {np.dtype(d): ft.fractal([np.full((1, 3), 2.0, d)] * 2) for d in ("float32", "float64")}
    jobs = [(c, d) for c in range(4) for d in lists] * 5  # 40 calls, 8 keys, all started together
    start = threading.Barrier(len(jobs))

    def call(job):
        c, d = job
        start.wait()
        return job, fns[c](lists[d], backend=backend)
    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(call, jobs))
    for (c, d), out in results:
        assert not isinstance(out, Tracer)
        np.testing.assert_array_equal(out.to_numpy(), np.full((2, 1, 3), 2.0 * c + 1.0, d))
        assert out.to_numpy().dtype == d
    assert len(traces) == 8  # one trace per function and dtype
    assert all(len(f.runner_cache) == 2 for f in fns)  # one compile per dtype


def test_an_eager_op_in_one_thread_while_another_traces_is_eager():
    tracing, eager_done = threading.Event(), threading.Event()
    seen = {}

    @ft.function
    def slow(x):
        y = x + 1.0
        tracing.set()
        assert eager_done.wait(10)  # the other thread runs eagerly while this one traces
        return y * 2.0

    def eager():
        assert tracing.wait(10)
        seen["zeros"] = ft.zeros((2,))
        seen["sum"] = ft.zeros((2,)) + np.ones(2)
        eager_done.set()
    other = threading.Thread(target=eager)
    other.start()
    program = slow.trace(np.ones(3))
    other.join()
    assert isinstance(seen["zeros"], np.ndarray) and not isinstance(seen["zeros"], Tracer)
    np.testing.assert_array_equal(seen["sum"], np.ones(2))
    assert program == ft.function(slow.fn).trace(np.ones(3))  # traced alone (the events are set now)
    assert all("slow" in str(e.loc) for e in program.body.eqns)  # no line of the other thread's
