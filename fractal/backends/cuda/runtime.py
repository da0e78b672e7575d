"""`CudaExecutable`: a tile program's CUDA module run on a device, a GPU or its emulation.

The host walks the program's statements as the CPU backend does (loops and ifs in Python,
their bounds evaluated per iteration) and launches a stage's kernel (`module.CudaModule`)
each time control reaches it: one block per point of the stage's box (times the kernel's
`chunks`), the box evaluated from the enclosing loop variables, and for a polygon the
interval bounds of its dims (the kernel skips points outside).  A device is a small object
(`EmulatedDevice` here, `cupy_device.CupyDevice` on a GPU) that loads a module's source,
holds flat arrays and launches kernels.  `name` says which, `xp` is its arrays' module (NumPy,
CuPy), `adopt(value)` takes a value already in its memory (a CuPy array, a torch CUDA tensor) as
one of its arrays without a copy, or says None (a host array: copied in); `to_device` and
`zeros` are given the buffer's name, which a device names when it runs out of memory.

Storage: every buffer is one flat array in its layout's order (`Buffer.layout`, the
outermost axis first); inputs are copied in (transposed once where the layout is not
row-major) and outputs copied out.  Constants are uploaded once and shared by runs; temps,
outputs and the status word are allocated (zeroed) per run, so runs from several threads
never share writable memory.  Inputs already on the device (`Device.adopt`) are read where they
are (no kernel writes an input buffer: the tile verifier refuses it), or transposed on the
device where the layout is not row-major; `run(..., keep_on_device=True)` returns the outputs
as the device's arrays.  A gather whose index is out of range sets the status word (the first
op's code to do so wins, `atomicMax`); it is read after the run and raised as the interpreter
raises it (`LengthError` for a traced gather, naming its index buffer).
"""

from __future__ import annotations

import math
import threading
from time import perf_counter
from typing import Any, Mapping, Protocol

import numpy as np

from fractal.lang.errors import ArgumentError
from fractal.lower.tile_ir import If, Loop, Stage

from ..inputs import checked_inputs
from ..storage import logical, physical, status_error
from .module import CudaModule

MAX_GRID = 2**31 - 1


class Device(Protocol):
    name: str
    xp: Any                                                              # numpy, cupy: its arrays' module

    def load(self, source: str, kernels: dict[str, int]) -> Any: ...
    # a module with .launch(kernel, blocks, threads, args, cooperative=False); `kernels` maps each
    # kernel to 0, or the most blocks of its cooperative launch (`CudaModule.launched`)

    def to_device(self, array: np.ndarray, name: str = "") -> Any: ...

    def zeros(self, size: int, dtype, name: str = "") -> Any: ...

    def to_host(self, array: Any) -> np.ndarray: ...

    def adopt(self, value: Any) -> Any | None: ...                       # a device array, or None


class CudaExecutable:
    """Runs a tile program's module on `device`: `run(inputs) -> outputs` as every tile
    backend (`fractal.backends.registry`); `source` is the generated CUDA C++."""

    def __init__(self, module: CudaModule, device: Device):
        self.module, self.device = module, device
        self.program = module.program
        self.source = module.source
        self._loaded = device.load(module.source, module.launched())
        self._roles = {role: [b for b in self.program.buffers if b.role == role]
                       for role in ("input", "output", "temp", "const")}
        self._consts = {b.name: device.to_device(physical(np.asarray(b.data.value, b.dtype), b), b.name)
                        for b in self._roles["const"]}
        self._lock = threading.Lock()

    def run(self, inputs: Mapping[str, Any], profile: dict | None = None,
            keep_on_device: bool = False) -> dict[str, Any]:
        """The outputs, NumPy arrays (or the device's arrays: `keep_on_device`), of a run on
        `inputs`: NumPy arrays, or arrays the device adopts (read in place)."""
        device, arrays = self.device, dict(self._consts)
        for b, (value, on_device) in checked_inputs(self._roles["input"], inputs, adopt=device.adopt).items():
            arrays[b.name] = (physical(value, b, device.xp) if on_device
                              else device.to_device(physical(value, b), b.name))
        for b in self._roles["temp"] + self._roles["output"]:
            arrays[b.name] = device.zeros(math.prod(b.shape), b.dtype, b.name)
        status = device.zeros(1, np.int32, "status word")
        env: dict[str, int] = {}
        self._block(self.program.body, env, arrays, status, profile)
        code = int(self.device.to_host(status)[0])
        if code:
            raise status_error(self.module.status[code - 1])
        if keep_on_device:
            return {b.name: logical(arrays[b.name], b, device.xp) for b in self._roles["output"]}
        return {b.name: logical(device.to_host(arrays[b.name]), b) for b in self._roles["output"]}

    def _block(self, stmts, env, arrays, status, profile) -> None:
        for s in stmts:
            if isinstance(s, Stage):
                self._launch(s, env, arrays, status, profile)
            elif isinstance(s, Loop) and id(s) in self.module.loops:
                self._launch_loop(s, env, arrays, status, profile)
            elif isinstance(s, Loop):
                for value in range(s.start.evaluate(env), s.stop.evaluate(env), s.step):
                    env[s.var] = value
                    self._block(s.body, env, arrays, status, profile)
                env.pop(s.var, None)
            elif isinstance(s, If):
                self._block(s.then if s.holds(env) else s.orelse, env, arrays, status, profile)

    def _launch(self, stage: Stage, env, arrays, status, profile) -> None:
        box = stage_box(stage, env)
        if box is None:
            return
        t0 = perf_counter() if profile is not None else 0.0
        for kernel in self.module.kernel(stage):
            blocks = kernel.blocks(box)
            if blocks > MAX_GRID:
                raise ArgumentError(f"stage {stage.name} has {blocks} blocks, more than a CUDA grid's {MAX_GRID}")
            if blocks == 0:
                continue
            args = [arrays[b] for b in kernel.buffers] + [env[v] for v in kernel.loop_vars]
            args += [x for lo_n in box for x in lo_n] + [status] + self._scratch(kernel, blocks)
            self._loaded.launch(kernel.name, blocks, kernel.threads, args)
        if profile is not None:
            profile[stage.name] = profile.get(stage.name, 0.0) + perf_counter() - t0


    def _launch_loop(self, loop: Loop, env, arrays, status, profile) -> None:
        """The whole loop in one cooperative launch of its persistent kernel (`device_loop`)."""
        kernel, blocks = self.module.loops[id(loop)], self.module.loop_blocks[id(loop)]
        args = [arrays[b] for b in kernel.buffers] + [env[v] for v in kernel.loop_vars] + [status]
        args += self._scratch(kernel, blocks)
        t0 = perf_counter() if profile is not None else 0.0
        self._loaded.launch(kernel.name, blocks, kernel.threads, args, cooperative=True)
        if profile is not None:
            profile[kernel.name] = profile.get(kernel.name, 0.0) + perf_counter() - t0


    def _scratch(self, kernel, blocks: int) -> list:
        """The kernel's global scratch for this launch (blocks x its bytes), if it has one: where
        an op that overwrites what it reads holds its values back (`block_ops`)."""
        if not kernel.scratch:
            return []
        return [self.device.zeros(blocks * kernel.scratch, np.uint8, f"scratch of kernel {kernel.name}")]


def stage_box(stage: Stage, env: Mapping[str, int]) -> list[tuple[int, int]] | None:
    """(start, extent) per dim: exact where a dim's bounds read loop variables only, the
    interval hull of a polygon's dims otherwise; None when no point runs."""
    ranges = {v: (x, x) for v, x in env.items()}
    box = []
    for d in stage.dims:
        lo, _ = d.start.bounds(ranges)
        _, hi = d.stop.bounds(ranges)
        if hi <= lo:
            return None
        box.append((lo, hi - lo))
        ranges[d.var] = (lo, hi - 1)
    return box
