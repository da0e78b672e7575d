"""`NativeExecutable`: a tile program compiled to C++ (`source.emit_program`), built by the
host compiler into a cached shared library (`fractal.backends.cxx_build`), run through ctypes.

    exe = NativeExecutable(program, threads=2)
    exe.source                                  # the generated C++
    outputs = exe.run(inputs)                   # {output buffer name: array}

Storage is one flat array per buffer in its layout's order (`fractal.backends.storage`):
inputs copied in where their strides or layout differ, consts prepared once and shared,
outputs allocated zeroed per run, temps zeroed once and kept for later runs (a run takes an
idle set, or makes one: as the cpu backend's frames).  Runs from several threads compute
concurrently: ctypes releases the GIL, and each run has its own temps, outputs and status.
The library's OpenMP loops use `threads` threads; its BLAS calls are split among those
threads, BLAS held to one thread meanwhile (`one_blas_thread`).
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import threading
from time import perf_counter
from typing import Mapping

import numpy as np

from fractal.lower.tile_ir import TileProgram

from .. import cxx_build
from ..blas_workers import stop_blas_workers
from ..inputs import checked_inputs
from ..storage import logical, physical, status_error
from . import blas as blas_lib
from .source import emit_program

# IEEE arithmetic (no fast-math: results follow the interpreter's), signed overflow wrapping as
# NumPy's, the host's own vector units, OpenMP for the point loops.  -fno-trapping-math changes
# no value (no one traps on floating-point exceptions here, NumPy neither): without it GCC 12
# would not turn a loop's two float selects (vecmath.h's clamps, a NaN-propagating max) into
# vector blends, and the loop ran scalar
FLAGS = ("-std=c++17", "-O3", "-march=native", "-fopenmp", "-fwrapv", "-fno-math-errno", "-fno-trapping-math",
         "-shared", "-fPIC", "-fvisibility=hidden", "-w")


MAX_FREE_FRAMES = 4   # idle sets of temps an executable keeps for its next runs
_blas_lock = threading.Lock()
_blas_runs = [0, None]   # native runs in progress, BLAS's thread count before the first


@contextlib.contextmanager
def one_blas_thread():
    """BLAS on one thread while native runs are in progress (process-wide: the first run to
    start sets it, the last to end restores it), its idle workers stopped (a run on more than
    one thread that calls no BLAS stops them too: sliding_window_attention took 21 ms right
    after a NumPy product, 13 ms half a second later).  A run splits its BLAS calls
    among its own OpenMP threads (`gemm._split_call`): BLAS's threads would otherwise compete
    with OpenMP's, which spin between parallel regions (15x slower on 2 cores).  NumPy's BLAS calls made by
    other Python threads meanwhile run on one thread too."""
    with _blas_lock:
        if _blas_runs[0] == 0:
            _blas_runs[1] = blas_lib.get_threads()
            blas_lib.set_threads(1)
            if (_blas_runs[1] or 1) > 1:
                # BLAS's idle workers spin for a while after NumPy's last multi-threaded call:
                # a run beside them took 2.5x as long (flash_attention: 169 ms against 68).
                # (The cpu backend stops them too, as its runs start: `cpu.threads`.)
                stop_blas_workers()
        _blas_runs[0] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_runs[0] -= 1
            if _blas_runs[0] == 0 and _blas_runs[1] is not None:
                blas_lib.set_threads(_blas_runs[1])


def machine_key() -> tuple[str, ...]:
    """What `-march=native` compiles for: the CPU's model and feature flags (a cache shared by
    machines of two kinds keeps one library per kind)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [x for x in f if x.startswith(("model name", "flags", "Features"))]
        return tuple(dict.fromkeys(x.strip() for x in lines))
    except OSError:
        import platform
        return (platform.machine(), platform.processor())


class NativeExecutable:
    """Runs a verified `TileProgram` as generated C++ (module docstring)."""

    def __init__(self, program: TileProgram, threads: int = 1, target=None):
        self.program = program
        blas = blas_lib.find_blas()
        self.module = emit_program(program, blas_lib.gemm_prelude(blas) if blas is not None else None, target)
        self.source = self.module.text
        t0 = perf_counter()
        path = cxx_build.build(self.source, FLAGS, "native", extra_key=machine_key())
        self.build_seconds = perf_counter() - t0
        self._lib = ctypes.CDLL(str(path))
        if self.module.uses_blas:
            blas_lib.bind(self._lib, blas)
        self.threads = max(1, int(threads))
        self._run = self._lib.ft_run
        self._run.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_int]
        self._run.restype = ctypes.c_int
        self._buffers = {b.name: b for b in program.buffers}
        self._roles = {role: [b for b in program.buffers if b.role == role]
                       for role in ("input", "output", "temp", "const")}
        self._frames: list[dict] = []   # idle temps of earlier runs (a run takes one, or makes one)
        self._frames_lock = threading.Lock()
        self._consts = {}
        for b in self._roles["const"]:
            storage = physical(np.asarray(b.data.value, b.dtype), b).copy()
            storage.flags.writeable = False   # shared by every run
            self._consts[b.name] = storage

    def run(self, inputs: Mapping[str, object], profile: dict | None = None) -> dict[str, np.ndarray]:
        checked = checked_inputs(self._roles["input"], inputs)
        with self._frames_lock:
            temps = self._frames.pop() if self._frames else None
        if temps is None:   # (zeroed once, then kept: a program writes a temp before it reads it)
            temps = {b.name: np.zeros(max(math.prod(b.shape), 1), b.dtype) for b in self._roles["temp"]}
        try:
            return self._run_on(checked, temps, profile)
        finally:
            with self._frames_lock:
                if len(self._frames) < MAX_FREE_FRAMES:
                    self._frames.append(temps)

    def _run_on(self, checked, temps: dict, profile: dict | None) -> dict[str, np.ndarray]:
        arrays = {**self._consts, **temps}
        for b, (value, _) in checked.items():
            arrays[b.name] = physical(value, b)
        for b in self._roles["output"]:
            arrays[b.name] = np.zeros(max(math.prod(b.shape), 1), b.dtype)
        pointers = (ctypes.c_void_p * max(len(self.module.buffers), 1))(
            *(arrays[name].ctypes.data for name in self.module.buffers))
        seconds = np.zeros(max(len(self.module.stages), 1)) if profile is not None else None
        if self.module.uses_blas:
            with one_blas_thread():
                code = self._run(pointers, None if seconds is None else seconds.ctypes.data, self.threads)
        else:
            if self.threads > 1:   # (BLAS's idle workers would spin on the cores the run's threads need)
                stop_blas_workers()
            code = self._run(pointers, None if seconds is None else seconds.ctypes.data, self.threads)
        if code:
            raise status_error(self.module.status[code - 1])
        if profile is not None:   # seconds per stage, as the cpu backend gives them
            for name, s in zip(self.module.stages, seconds.tolist()):
                profile[name] = profile.get(name, 0.0) + s
        return {b.name: logical(arrays[b.name][:math.prod(b.shape)], b) for b in self._roles["output"]}
