"""`CpuExecutable`: a verified tile program compiled once into Python closures, run with NumPy.

Loops and ifs run as Python control flow over compiled bounds (`parallel` loops too: one
core runs them in order).  A stage runs each of its tile ops once for its whole box, op
after op (points are independent by contract, so op-major order equals point-major
order); `ops.RULES` turns each op into one batched NumPy call over views of the buffers.
A stage over a polygon (dims bounded by earlier dims) runs the same way over its points
as one flat axis, gathered and assigned by cached fancy indices (`polygon`).
Big stages of programs that qualify are cut into one sub-box per thread (`threads`).
A sequential loop that is a scan (one stage combining each step's result with the
previous one) runs as one accumulate (`scan`).

Storage: consts are copied once from their declared data into their layout (shared, never
written); temps are allocated as zeros in their layout once per *frame* and kept across
the runs that use it; outputs are allocated as zeros in their layout on every run; inputs
are used as given (any strides).

Runs are thread-safe: a frame is one run's state (every buffer's binding, the temps, the
closures compiled over them with their scratch and cached plans), and each run takes a
frame of its own from the executable's pool, building one when every frame is busy (so
concurrent runs compute concurrently, each as a run alone would).  At most `MAX_FREE_FRAMES`
idle frames are kept.  Cutting stages over the worker threads is one run's at a time per
process (`threads.Team.running`): a run that starts while another holds the workers runs
on its calling thread, its stages unsplit.
"""

from __future__ import annotations

import threading
from time import perf_counter
from typing import Mapping

import numpy as np

from fractal.lower.tile_ir import COMPARE, If, Loop, Stage, TileProgram

from ..inputs import checked_inputs
from .indices import compile_box, compile_index
from .ops import RULES
from .policy import CpuPolicy
from .polygon import compile_polygon
from .polygon_ops import RULES as POLYGON_RULES
from .scan import compile_scan, match_scan
from .threads import SplitStage, Team, plan, run_ops
from .threads import workers as threads_available
from .views import Memory, RegionAccess, allocate

MAX_FREE_FRAMES = 8  # idle frames an executable keeps (each holds its own temps)


class _Scope:
    """What compiling a stage's ops needs: buffer storage, dtypes and the stage variables."""

    def __init__(self, memory: Mapping[str, Memory], stage_vars: tuple[str, ...]):
        self.memory, self.stage_vars = memory, stage_vars
        self.dtypes = {name: m.buffer.dtype for name, m in memory.items()}

    def access(self, region, pads: int = 0) -> RegionAccess:
        return RegionAccess(region, self.memory[region.buffer], self.stage_vars, pads)


class CpuExecutable:
    """Runs a verified `TileProgram` on the CPU: `CpuExecutable(program).run(inputs)`.

    `threads`: how many to cut big stages over (default: this process's cores, or
    `FRACTAL_NUM_THREADS`); `split_elements`: the elements a stage's box must touch to be cut
    (the target's `CpuPolicy.split_elements`).  `run` may be called from several threads at
    once (see the module docstring)."""

    def __init__(self, program: TileProgram, threads: int | None = None, split_elements: int | None = None):
        self.program = program
        self.threads = threads_available() if threads is None else max(1, int(threads))
        self._roles = {role: [b for b in program.buffers if b.role == role]
                       for role in ("input", "output", "temp", "const")}
        self._consts = {}
        for b in self._roles["const"]:  # (verify: the data has the buffer's shape and dtype)
            storage = allocate(b)
            storage[...] = b.data.value
            storage.flags.writeable = False  # shared by every frame
            self._consts[b.name] = storage
        split_elements = CpuPolicy().split_elements if split_elements is None else split_elements
        self._plan = plan(program, self.threads, split_elements)  # stage name -> how to split it
        self.threads = self.threads if self._plan else 1
        self._team = Team(self.threads)
        self._lock = threading.Lock()
        self._first = _Frame(self)  # compiled now: a program the executor cannot run fails here
        self._free = [self._first]  # idle frames, the last used on top

    @property
    def memory(self) -> dict[str, Memory]:
        """The buffers of the frame a run takes when no other run is under way (tests set a
        temp's initial contents through it)."""
        return self._first.memory

    def run(self, inputs: Mapping[str, np.ndarray], profile: dict | None = None) -> dict[str, np.ndarray]:
        """The output buffers after one run; `profile` (a dict) accumulates seconds per stage name."""
        checked = {b: v for b, (v, _) in checked_inputs(self._roles["input"], inputs).items()}
        with self._lock:
            frame = self._free.pop() if self._free else None
        if frame is None:  # every frame is running: this run gets a new one
            frame = _Frame(self)
        try:
            return frame.run(checked, profile)
        finally:
            with self._lock:
                if len(self._free) < MAX_FREE_FRAMES:
                    self._free.append(frame)


class _Frame:
    """One run's state: every buffer's `Memory` (consts bound to the executable's shared
    storage, temps to this frame's own) and the statements compiled over them."""

    def __init__(self, exe: CpuExecutable):
        self.exe = exe
        self.memory = {b.name: Memory(b) for b in exe.program.buffers}
        for name, storage in exe._consts.items():
            self.memory[name].bind(storage)
        for b in exe._roles["temp"]:
            self.memory[b.name].bind(allocate(b))
        self.profile: dict | None = None
        self.body = [self._stmt(s) for s in exe.program.body]

    def run(self, inputs: dict, profile: dict | None) -> dict[str, np.ndarray]:
        roles = self.exe._roles
        for b, value in inputs.items():
            self.memory[b.name].bind(value)
        outputs = {b.name: allocate(b) for b in roles["output"]}
        for name, array in outputs.items():
            self.memory[name].bind(array)
        self.profile = profile
        try:
            with np.errstate(all="ignore"), self.exe._team.running():  # padded rows may overflow; never read
                env: dict[str, int] = {}
                for stmt in self.body:
                    stmt(env)
        finally:
            self.profile = None
            for b in roles["input"] + roles["output"]:  # hold no caller memory
                self.memory[b.name].release()
        return outputs

    # --- statements, compiled to closures `run(env)` ------------------------------------------

    def _stmt(self, s):
        if isinstance(s, Loop):
            return self._loop(s)
        if isinstance(s, If):
            return self._if(s)
        if isinstance(s, Stage):
            return self._stage(s)
        raise TypeError(f"not a tile statement: {type(s).__name__}")  # verify() rules this out

    def _loop(self, s: Loop):
        start, stop, step, var = compile_index(s.start), compile_index(s.stop), s.step, s.var
        body = [self._stmt(x) for x in s.body]

        def run(env):
            for value in range(start(env), stop(env), step):
                env[var] = value
                for stmt in body:
                    stmt(env)
        if match_scan(s):  # one accumulate for the whole loop
            scan = compile_scan(s, self.memory, compile_box(s.body[0].dims), run, lambda: self.profile)
            return scan or run
        return run

    def _if(self, s: If):
        lhs, op, rhs = s.cond
        a, b, compare = compile_index(lhs), compile_index(rhs), COMPARE[op]
        then, orelse = [self._stmt(x) for x in s.then], [self._stmt(x) for x in s.orelse]

        def run(env):
            for stmt in then if compare(a(env), b(env)) else orelse:
                stmt(env)
        return run

    def _stage(self, s: Stage):
        if not s.rectangular:
            return self._polygon(s)
        scope = _Scope(self.memory, tuple(d.var for d in s.dims))
        ops = self._ops(s, scope)
        box_of = compile_box(s.dims)
        name = s.name

        def run(env):
            box = box_of(env)
            if box is None:  # no point runs
                return
            los, box = box
            profile = self.profile
            t0 = perf_counter() if profile is not None else 0.0
            ops(env, los, box)
            if profile is not None:
                profile[name] = profile.get(name, 0.0) + perf_counter() - t0
        return run

    def _polygon(self, s: Stage):
        """A stage over a polygon: its points as one flat axis (`polygon`)."""
        points, name = compile_polygon(s, self.memory, POLYGON_RULES), s.name

        def run(env):
            profile = self.profile
            t0 = perf_counter() if profile is not None else 0.0
            if points(env) and profile is not None:
                profile[name] = profile.get(name, 0.0) + perf_counter() - t0
        return run

    def _ops(self, s: Stage, scope):
        """One callable `run(env, los, box)` for a stage's ops, split over the threads when
        the plan says so (`threads.plan`)."""
        compile_ops = lambda: [RULES[type(op)](op, scope) for op in s.body]  # noqa: E731
        split = self.exe._plan.get(s.name)
        if split is None:
            ops = compile_ops()
            return lambda env, los, box: run_ops(ops, env, los, box)
        return SplitStage(compile_ops, split, self.exe.threads)
