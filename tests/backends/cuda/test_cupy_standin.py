"""The 'cuda' backend's host side (`CupyDevice` with the runtime) on a stand-in for CuPy, whose
kernels run through the emulation (`standin_cupy`): what a GPU run does, short of the GPU.

* A program compiles with NVRTC into the cubin cache, loads from it (`RawModule(path=...)`),
  launches with sized integers, and agrees with the interpreter; a second executable of the
  same module loads nothing again.
* The device's arrays are read in place and `keep_on_device=True` returns them, a strided one
  made contiguous on the device.
"""

from __future__ import annotations

import functools
import os
import shutil

import numpy as np
import pytest

import fractal as ft
from fractal.backends.cuda import cupy_device, nvrtc

pytestmark = pytest.mark.skipif(not nvrtc.compilers() or shutil.which(os.environ.get("CXX") or "g++") is None,
                                reason="needs a CUDA compiler (NVRTC or nvcc) and a host C++ compiler (g++)")

from tests.backends.cuda import standin_cupy as cupy  # noqa: E402


@ft.function
def affine(x, w):
    return ft.tanh(x @ w + 1.0)


X = np.linspace(-1, 1, 4 * 8, dtype=np.float32).reshape(4, 8)
W = np.linspace(0, 1, 8 * 16, dtype=np.float32).reshape(8, 16)


@pytest.fixture
def gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("FRACTAL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cupy_device, "import_cupy", lambda: cupy)
    monkeypatch.setattr(cupy_device, "CubinCache", functools.partial(cupy_device.CubinCache,
                                                                     compile=cupy.compile_cuda))
    monkeypatch.setattr(cupy_device.CupyDevice, "_modules", {})
    return tmp_path / "cuda"


def test_a_program_compiles_into_the_cache_loads_from_it_and_agrees_with_the_interpreter(gpu):
    compiled = affine.compile(X, W, target="h100")
    device = compiled._executable.device
    assert (device.name, device.arch) == ("cuda:0 (Stand-in GPU)", "sm_90") and ft.backends.unavailable("cuda") is None
    out = compiled.run(X, W)
    assert type(out) is np.ndarray
    np.testing.assert_allclose(out, affine.interpret(X, W), rtol=2e-5, atol=2e-6)
    (entry,) = gpu.iterdir()
    assert entry.name.endswith("-sm_90.cubin") and cupy_device.whole_elf(entry.read_bytes())
    assert device.cache.compiles == 1
    again = cupy_device.CupyDevice.for_target(ft.targets.get("h100"))
    assert again.load(compiled.source, list(compiled._executable.module.kernels)) is compiled._executable._loaded
    assert again.cache.compiles == 0


def test_the_devices_arrays_are_read_in_place_and_kept_there(gpu):
    compiled = affine.compile(X, W, target="h100")
    x = cupy.asarray(X)
    out = compiled.run(x, cupy.asarray(W), keep_on_device=True)
    assert isinstance(out, cupy.ndarray) and out.shape == (4, 16)
    np.testing.assert_allclose(cupy.asnumpy(out), compiled.run(X, W), rtol=1e-6)
    strided = cupy.asarray(X.T).T  # a view of another layout: made contiguous on the device
    np.testing.assert_array_equal(cupy.asnumpy(compiled.run(strided, cupy.asarray(W), keep_on_device=True)),
                                  cupy.asnumpy(out))
