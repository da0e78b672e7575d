"""The native CPU backend: a tile program as one C++ translation unit (`source`, with the
per-op rules of `ops` and `gemm` on the shared emitter `fractal.backends.codegen`), compiled
by the host compiler into a cached library (`fractal.backends.cxx_build`) and run through
ctypes (`executable`), big products on a real BLAS through C function pointers (`blas`)."""

from .backend import NativeBackend, native_target
from .executable import NativeExecutable

__all__ = ["NativeBackend", "NativeExecutable", "native_target"]
