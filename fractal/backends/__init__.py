"""Backends that run compiled programs, found by name in a registry (`registry`): `cpu`
(NumPy/BLAS, the default), `pointwise` (the tile IR's reference executor) and `interpreter`
(the program IR's reference interpreter), `cuda-emulated` (the CUDA backend's kernels run on
the CPU), `cuda` (the same kernels on this machine's GPU, through CuPy) and `dataflow` (a mesh
of PEs, simulated) are registered here; a user's own plugs in with `register` (README:
"Writing a backend").  `fractal.compile` asks the registry for the backend a target names."""

from .cpu.backend import CpuBackend
from .cuda.backend import CudaBackend, CudaEmulatedBackend
from .dataflow.backend import DataflowBackend
from .interpreter import InterpreterBackend
from .native.backend import NativeBackend
from .pointwise import PointwiseBackend
from .registry import Backend, Executable, backends, get, names, register, unavailable, unregister

register(CpuBackend())
register(PointwiseBackend())
register(InterpreterBackend())
register(CudaEmulatedBackend())
register(CudaBackend())
register(DataflowBackend())
register(NativeBackend())

__all__ = ["Backend", "Executable", "backends", "get", "names", "register", "unavailable", "unregister"]
