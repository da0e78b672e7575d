"""Arrays on the device, and the source, through `Compiled` (`fractal.compile`) and the CUDA
runtime (`fractal.backends.cuda.runtime`), without a GPU.

* `compiled.source` is the generated CUDA C++ of a cuda backend, None for the CPU backend.
* A device backend takes tensor arguments already in its memory and reads them in place (no
  upload), returns outputs as its arrays with `keep_on_device=True`, and is told each buffer's
  name when it allocates it (a stand-in GPU here: the emulation, whose arrays are marked).
* The emulated GPU's memory is the host's: `keep_on_device=True` gives NumPy arrays there, so
  code written for a GPU runs unchanged on the emulation; a tensor of another library is refused.
* The CPU backend refuses `keep_on_device` and device arrays, saying what to do instead.
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest

import fractal as ft
from fractal.backends.cuda.emulated import EmulatedDevice
from fractal.backends.cuda.module import emit_module
from fractal.backends.cuda.runtime import CudaExecutable

EMULATED = ft.targets.cuda("sm_80", emulate=True)


@ft.function
def affine(x, w):
    return ft.tanh(x @ w + 1.0)


@ft.function
def scale_all(xs, a):
    return ft.map(lambda x: x * a, xs)


X = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)
W = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
XS = ft.fractal([np.ones((1, 3), np.float32), np.full((1, 3), 2.0, np.float32)])


class Gpu(np.ndarray):
    """An array in the stand-in GPU's memory."""


class GpuTensor:
    """Another library's tensor in GPU memory: DLPack says where it lives."""

    def __init__(self, array):
        self.array, self.shape, self.dtype = array, array.shape, array.dtype

    def __dlpack__(self, stream=None):
        raise AssertionError("read through the device's adopt")

    def __dlpack_device__(self):
        return (2, 0)


class StandInGpu(EmulatedDevice):
    """The emulation with its arrays marked `Gpu`, recording what is copied in and allocated."""

    name = "stand-in gpu"
    xp = types.SimpleNamespace(transpose=np.transpose,
                               ascontiguousarray=lambda a: np.ascontiguousarray(a).view(type(a)))

    def __init__(self):
        super().__init__(check=False)
        self.uploaded, self.allocated = [], []

    def load(self, source, kernels):
        loaded = super().load(source, kernels)
        launch = loaded.launch
        loaded.launch = lambda kernel, blocks, threads, args: launch(
            kernel, blocks, threads, [a.view(np.ndarray) if isinstance(a, Gpu) else a for a in args])
        return loaded

    def to_device(self, array, name=""):
        self.uploaded.append(name)
        return super().to_device(array).view(Gpu)

    def zeros(self, size, dtype, name=""):
        self.allocated.append(name)
        return super().zeros(size, dtype).view(Gpu)

    def adopt(self, value):
        if isinstance(value, GpuTensor):
            return value.array.view(Gpu)
        return value if isinstance(value, Gpu) else None


@pytest.fixture
def gpu():
    device = StandInGpu()

    class StandInBackend:
        name, description, consumes = "stand-in-gpu", "the emulation as a GPU with memory of its own", "tile"

        def default_target(self):
            return dataclasses.replace(EMULATED, name="stand-in", backend="stand-in-gpu")

        def targets(self):
            return {}

        def build(self, program, target):
            return CudaExecutable(emit_module(program, target.hardware, target.policy), device)
    backend = ft.backends.register(StandInBackend())
    yield device, backend.default_target()
    ft.backends.unregister(backend.name)


def test_the_source_is_the_generated_cuda_cpp_of_a_cuda_backend_and_none_on_the_cpu():
    compiled = affine.compile(X, W, target=EMULATED)
    assert compiled.source.startswith("// fractal: tile program @affine") and 'extern "C" __global__' in compiled.source
    assert compiled.source == compiled._executable.module.source
    assert affine.compile(X, W).source is None


def test_a_device_reads_its_own_arrays_in_place_and_keeps_the_outputs_when_asked(gpu):
    device, target = gpu
    compiled = affine.compile(X, W, target=target)
    uploads = list(device.uploaded)                       # (the constants, once)
    out = compiled.run(GpuTensor(X), W.view(Gpu), keep_on_device=True)
    assert isinstance(out, Gpu) and device.uploaded == uploads  # nothing copied in, nothing out
    np.testing.assert_allclose(np.asarray(out), np.tanh(X @ W + 1.0), rtol=1e-6)
    host = compiled.run(X, W)
    assert type(host) is np.ndarray and np.array_equal(host, np.asarray(out))
    assert device.uploaded[len(uploads):] == [b.name for b in compiled.tile_ir.buffers if b.role == "input"]
    assert set(device.allocated) == {b.name for b in compiled.tile_ir.buffers
                                     if b.role in ("temp", "output")} | {"status word"}


def test_a_device_argument_of_the_wrong_shape_is_refused_as_a_host_one_is(gpu):
    compiled = affine.compile(X, W, target=gpu[1])
    with pytest.raises(ft.FractalTypeError, match=r"argument 'x' of affine must be a tensor f32\[2,3\] as compiled, "
                                                  r"got tensor f32\[3,2\]"):
        compiled.run(GpuTensor(X.T.copy()), W)


def test_the_emulated_gpu_keeps_its_outputs_in_host_memory_as_numpy_arrays():
    compiled = affine.compile(X, W, target=EMULATED)
    kept = compiled.run(X, W, keep_on_device=True)
    assert type(kept) is np.ndarray and np.array_equal(kept, compiled.run(X, W))
    lists = scale_all.compile(XS, np.float32(3.0), target=EMULATED)
    out = lists.run(XS, np.float32(3.0), keep_on_device=True)   # a list output is a FractalTensor, on the host
    assert isinstance(out, ft.FractalTensor) and [np.asarray(x).tolist() for x in out] == [[[3.0] * 3], [[6.0] * 3]]


def test_a_tensor_of_another_library_is_refused_by_the_emulated_gpu():
    with pytest.raises(ft.ArgumentError, match=r"argument 'x' of affine is a tests.GpuTensor that the "
                                               r"'cuda-emulated' backend cannot take: it takes NumPy arrays \(device "
                                               r"arrays go to a GPU target, ft.targets.cuda\(...\)\); pass "
                                               r"np.asarray\(x\) \(x.cpu\(\).numpy\(\) for a torch tensor on a GPU\)"):
        affine.compile(X, W, target=EMULATED).run(GpuTensor(X), W)


def test_a_device_names_what_it_takes_when_it_refuses_an_array(gpu, monkeypatch):
    monkeypatch.setattr(StandInGpu, "adopt", lambda self, value: None)  # (a tensor on another GPU, say)
    with pytest.raises(ft.ArgumentError, match=r"argument 'w' of affine is a tests.GpuTensor that the "
                                               r"'stand-in-gpu' backend cannot take: it takes NumPy arrays and arrays "
                                               r"on its GPU; pass np.asarray\(x\)"):
        affine.compile(X, W, target=gpu[1]).run(X, GpuTensor(W))


def test_the_cpu_backend_refuses_keep_on_device():
    with pytest.raises(ft.ArgumentError, match=r"keep_on_device=True: the 'cpu' backend runs on the host and keeps "
                                               r"nothing on a device; drop it, or compile for a GPU target "
                                               r"\(ft.targets.cuda\(...\)\)"):
        affine.compile(X, W).run(X, W, keep_on_device=True)
