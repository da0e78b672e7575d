"""A stand-in for the part of CuPy the 'cuda' backend uses, for running `CupyDevice` without a
GPU: its arrays are NumPy arrays of a class of their own (`ndarray`: "in GPU memory"), and a
`RawModule` loaded from a cubin runs the CUDA C++ that cubin was compiled from on the CPU,
through the emulation.  `compile_cuda` compiles with NVRTC, as the backend does, and remembers
each cubin's source for `RawModule`.  One GPU, "Stand-in GPU", of compute capability 9.0.
"""

from __future__ import annotations

import hashlib
import types
from pathlib import Path

import numpy as np

from fractal.backends.cuda import nvrtc
from fractal.backends.cuda.emulation import EmulatedModule

_SOURCES: dict[str, str] = {}  # sha256 of a cubin -> the source it was compiled from
__version__ = "stand-in"
float32, float64, int32, int64 = np.float32, np.float64, np.int32, np.int64


def compile_cuda(source, arch, **options) -> bytes:
    cubin = nvrtc.compile_cuda(source, arch, **options)
    _SOURCES[hashlib.sha256(cubin).hexdigest()] = source
    return cubin


class ndarray(np.ndarray):
    """An array in the stand-in GPU's memory."""

    @property
    def device(self):
        return Device(0)


def asarray(a, dtype=None) -> ndarray:
    return np.array(a, dtype=dtype).view(ndarray)


def zeros(n, dtype=float) -> ndarray:
    return np.zeros(n, dtype).view(ndarray)


def asnumpy(a) -> np.ndarray:
    return np.array(np.asarray(a).view(np.ndarray))


def transpose(a, axes=None):
    return np.transpose(a, axes)


def ascontiguousarray(a) -> ndarray:
    return np.ascontiguousarray(a).view(ndarray)


def from_dlpack(x) -> ndarray:
    return np.from_dlpack(x).view(ndarray)


class Device:
    def __init__(self, id=None):
        self.id, self.compute_capability = id or 0, "90"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self) -> None:
        pass


class OutOfMemoryError(Exception):
    pass


COOPERATIVE_BLOCKS = 16  # the most blocks a cooperative launch of the stand-in runs


class RawModule:
    """The module of a cubin this stand-in compiled: its kernels run through the emulation."""

    def __init__(self, *, path: str, enable_cooperative_groups: bool = False):
        self.source = _SOURCES[hashlib.sha256(Path(path).read_bytes()).hexdigest()]
        self.names: list[str] = []
        self.module = None
        self.cooperative = enable_cooperative_groups

    def get_function(self, name: str):
        self.names.append(name)

        def launch(grid, block, args):
            assert all(not isinstance(a, int) for a in args), "CuPy needs sized integers (numpy.int64)"
            if self.module is None:  # (a cooperative launch runs all its blocks at once)
                self.module = EmulatedModule(self.source, {n: COOPERATIVE_BLOCKS if self.cooperative else 1
                                                           for n in self.names})
            args = [a.view(np.ndarray) if isinstance(a, ndarray) else int(a) if isinstance(a, np.integer) else a
                    for a in args]
            if self.cooperative and grid[0] > COOPERATIVE_BLOCKS:
                raise RuntimeError(f"the stand-in runs at most {COOPERATIVE_BLOCKS} cooperative blocks")
            self.module.launch(name, grid[0], block[0], args, cooperative=self.cooperative)
        return launch


cuda = types.SimpleNamespace(
    Device=Device, memory=types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError),
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDeviceProperties=lambda i: {"name": b"Stand-in GPU"}))
