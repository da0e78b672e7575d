"""The executor's cores: a stage's box split over threads.

NumPy runs each ufunc and reduction on one core.  The points of a stage are independent
(the tile IR's contract), so a stage may be cut along one box dim into one sub-box per
thread, each running every op of the stage over its own sub-box (op-major within the
sub-box, as before).  NumPy and BLAS release the GIL inside their loops, so Python threads
suffice; each thread has its own compiled copy of the ops (their scratch is theirs).

BLAS and the split stages must not share the cores: OpenBLAS's threads spin between calls,
and a split stage after a multi-threaded GEMM runs on a core that spinning thread holds
(measured: no gain, or half speed).  So a program either runs split (`plan`: every stage
holding a GEMM is split, and BLAS stays on one thread per caller for the whole run) or on
one thread with BLAS's own threads, as before.  Measured on 2 cores (flash attention's
step: two batched 64x64 GEMMs and its softmax): 2.0x faster split than with BLAS threads
and serial NumPy.  A GEMM that runs alone (the recurrent [64,256] @ [256,1024] of an LSTM
step) is faster on BLAS's threads: 230 us against 300-330 us cut over two Python threads.

A stage of GEMMs that each fold into one BLAS call (an operand every point shares) is
not worth splitting: BLAS's threads split that one call as well.  A stage over a polygon
(`polygon`) has no box to cut: it never qualifies, so a program with one holding a GEMM
runs on one thread with BLAS's threads.

Forking costs: waking a parked thread and joining it takes 50-70 us on the 2-core VMs this
was measured on, so a stage is split only when its largest box touches `min_elements`
elements (the target's `CpuPolicy.split_elements`), and a run of it only when that run's
box does.  `FRACTAL_NUM_THREADS` sets the
number of threads (default: the cores this process may run on; 1: none); without
threadpoolctl (to hold BLAS to one thread) programs run on one.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import NamedTuple

import numpy as np

from fractal.lower.rewrite import points, var_ranges
from fractal.lower.tile_ir import Gemm, Scatter, Stage, TileProgram

from ..blas_workers import stop_blas_workers

_local = threading.local()  # .team: the Team the calling thread may fork (None inside a split)
_pool: ThreadPoolExecutor | None = None  # shared by every executable; grown on demand
_pool_size = 0
_pool_lock = threading.Lock()
_lease = threading.Lock()  # held by the one run that may fork now (`Team.running`)
_blas = None  # threadpoolctl's BLAS controllers, found once


def workers() -> int:
    """Threads a program runs on: `FRACTAL_NUM_THREADS`, else this process's cores; 1 when
    threadpoolctl (to keep BLAS on one thread per core) is not installed."""
    text = os.environ.get("FRACTAL_NUM_THREADS", "").strip()
    if text:
        try:
            n = int(text)
        except ValueError:
            raise ValueError(f"FRACTAL_NUM_THREADS must be a whole number of threads, got {text!r}") from None
    else:
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            n = os.cpu_count() or 1
    return max(1, n) if _blas_controller() is not None else 1


def _blas_controller():
    global _blas
    if _blas is None:
        try:  # imported on first use; without it BLAS keeps its own thread count
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _blas = False
        else:
            _blas = ThreadpoolController().select(user_api="blas")
    return _blas or None


class Team:
    """`n` threads (the caller and `n - 1` pooled workers) for one program run."""

    def __init__(self, n: int):
        self.size = n

    @contextlib.contextmanager
    def running(self):
        """Within: stages run by this thread may fork, and BLAS runs on one thread (a stage
        run unsplit, its box small that step, runs its GEMMs on one core: had BLAS threads
        run them, they would spin on the cores the next split stage needs).

        One run at a time per process holds the workers (`_lease`): the pool and BLAS's thread
        count are the process's, and a second run forking over them would only queue behind
        the first (or, restoring BLAS's count as it ends, leave the first with BLAS threads).
        A run that starts while another holds them runs on its calling thread, unsplit."""
        blas = _blas_controller()  # None without threadpoolctl: BLAS's threads would fight ours
        if self.size == 1 or blas is None or not _lease.acquire(blocking=False):
            yield
            return
        previous = getattr(_local, "team", None)
        _local.team = self
        try:
            with blas.limit(limits=1):
                stop_blas_workers()
                yield
        finally:
            _local.team = previous
            _lease.release()

    def fork(self, tasks) -> None:
        """Runs zero-argument `tasks` at once, the first on the calling thread; returns when
        all are done, raising the first error.  Nothing inside a task forks again."""
        futures = [_workers(len(tasks) - 1).submit(_task, t) for t in tasks[1:]]
        _local.team = None
        try:
            tasks[0]()
        finally:
            _local.team = self
            wait(futures)  # every worker joins before anything is raised
        for f in futures:
            f.result()


def _workers(n: int) -> ThreadPoolExecutor:
    """The shared pool, with at least `n` threads (parked between forks)."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < n:
            _pool, _pool_size = ThreadPoolExecutor(n, thread_name_prefix="fractal-cpu"), n
        return _pool


def _task(fn) -> None:
    with np.errstate(all="ignore"):  # NumPy's error state is per thread: the executor's, here too
        fn()


def current() -> Team | None:
    """The team the calling thread may fork now, or None."""
    return getattr(_local, "team", None)


def cut(box: tuple, dims, parts: int) -> int | None:
    """The box dim to cut into `parts` pieces: the outermost candidate that splits evenly
    enough (the largest piece at most 1.25x the mean), else the one that splits most evenly;
    None when no candidate has two points."""
    best, best_ratio = None, None
    for d in dims:
        n = box[d]
        if n < 2:
            continue
        k = min(parts, n)
        ratio = -(-n // k) * k / n
        if ratio <= 1.25:
            return d
        if best_ratio is None or ratio < best_ratio:
            best, best_ratio = d, ratio
    return best


def pieces(n: int, parts: int) -> list[tuple[int, int]]:
    """(start, size) of up to `parts` consecutive, as even as possible pieces of `n`."""
    k = min(parts, n)
    out, lo = [], 0
    for i in range(k):
        size = n // k + (i < n % k)
        out.append((lo, size))
        lo += size
    return out


class Split(NamedTuple):
    """How a stage is split: the box dims it may be cut along, the elements a point touches,
    and the elements a run's box must touch to be cut."""
    dims: tuple[int, ...]
    per_point: int
    min_elements: int


def plan(program: TileProgram, n_threads: int, min_elements: int) -> dict[str, Split]:
    """The stages to split over `n_threads` threads, by name; empty: run on one thread.
    Only when every stage holding a GEMM qualifies (see the module docstring), and some
    qualifying stage is more than GEMMs each of one BLAS call (`one_call_gemms`)."""
    if n_threads == 1:
        return {}
    splits = qualifying(program, min_elements)
    stages = {st.name: st for st in program.stages()}
    gemm_stages = {name for name, st in stages.items() if any(isinstance(op, Gemm) for op in st.body)}
    if not gemm_stages <= splits.keys() or all(one_call_gemms(stages[name]) for name in splits):
        return {}
    return splits


def one_call_gemms(st: Stage) -> bool:
    """Whether the stage is only GEMMs each with an operand every point shares (`x @ W`):
    the executor folds the whole box into one BLAS call, which BLAS's own threads split as
    well as ours (b2b_gemm's two [8192, 64] @ [64, 256]-sized products: 3.1 ms on BLAS's
    threads, 3.6 ms cut over ours)."""
    names = {d.var for d in st.dims}

    def shared(r) -> bool:
        return not any(names & x.vars() for x in r.start)
    return all(isinstance(op, Gemm) and (shared(op.a) or shared(op.b)) for op in st.body)


def qualifying(program: TileProgram, min_elements: int) -> dict[str, Split]:
    """Every stage that may be split and is big enough to be worth it, by name: a box (not
    a polygon), some box dim named by every write (sub-boxes then never write one region),
    no scatter (its rows come from data), and its largest box touching `min_elements`."""
    ranges = var_ranges(program.body)
    out = {}
    for st in program.stages():
        split = _split(st, ranges, min_elements)
        if split is not None:
            out[st.name] = split
    return out


def _split(st: Stage, ranges, min_elements: int) -> Split | None:
    if not st.rectangular:  # a polygon runs as one flat axis of points, on one thread (`polygon`)
        return None
    writes = [r for op in st.body for r in op.writes]
    dims = tuple(i for i, d in enumerate(st.dims) if all(any(d.var in x.vars() for x in r.start) for r in writes))
    if not dims or any(isinstance(op, Scatter) for op in st.body):
        return None
    names = {d.var for d in st.dims}  # a region all points share (a gather's table) is not per-point work
    per_point = sum(max((int(np.prod(r.shape, dtype=np.int64)) for r in op.reads + op.writes
                         if any(names & x.vars() for x in r.start)), default=0) for op in st.body)
    if points(st, ranges) * per_point < min_elements:
        return None
    return Split(dims, per_point, min_elements)


class SplitStage:
    """A stage's compiled ops run over its box, cut over the team's threads when the box is
    big enough.  `compile_ops()` gives a fresh copy of the ops (one per thread: each keeps its
    own scratch), `per_point` is the elements one point touches, `dims` the box dims every
    write of the stage names (the dims it may be cut along)."""

    def __init__(self, compile_ops, split: "Split", n_threads: int):
        self.copies = [compile_ops() for _ in range(n_threads)]  # `plan` gives only stages with dims
        self.per_point, self.dims, self.min_elements = split.per_point, split.dims, split.min_elements

    def __call__(self, env, los, box) -> None:
        team = current()
        dim = None
        if team is not None and len(self.copies) > 1 \
                and int(np.prod(box, dtype=np.int64)) * self.per_point >= self.min_elements:
            dim = cut(box, self.dims, min(team.size, len(self.copies)))
        if dim is None:
            run_ops(self.copies[0], env, los, box)
            return
        tasks = []
        for ops, (start, size) in zip(self.copies, pieces(box[dim], len(self.copies))):
            sub_los = los[:dim] + (los[dim] + start,) + los[dim + 1:]
            sub_box = box[:dim] + (size,) + box[dim + 1:]
            tasks.append(lambda ops=ops, sub_los=sub_los, sub_box=sub_box: run_ops(ops, env, sub_los, sub_box))
        team.fork(tasks)


def run_ops(ops, env, los, box) -> None:
    for op in ops:
        op(env, los, box)
