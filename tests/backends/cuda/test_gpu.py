"""The 'cuda' backend on a real GPU (these tests skip, saying why, on a machine without CuPy or
without an NVIDIA GPU; `benchmarks/gpu_check.py` runs them where there is one and fails when
they skip there).

* A program runs on the GPU and agrees with the interpreter and with the emulated GPU; its
  module is compiled once, into the cubin cache, and a second executable reuses it.
* CuPy arrays and torch CUDA tensors are read in place; `keep_on_device=True` returns CuPy
  arrays, so calls chain without host copies.
* Every zoo model at `small` agrees with its NumPy reference on the GPU.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

import fractal as ft
from fractal.backends.cuda import cupy_device
from fractal.backends.cuda.presets import REFERENCE


def _gpu():
    """(cupy, the target to compile for, "") on a machine with a GPU, else (None, None, why not)."""
    try:
        cupy = cupy_device.import_cupy()
        _, name, arch = cupy_device.gpu_of(cupy)
    except ft.DeviceError as e:
        return None, None, e.message
    fits = [a for a in REFERENCE if cupy_device._capability(a) <= cupy_device._capability(arch)]
    if not fits:
        return None, None, f"the GPU ({name}, {arch}) is older than every CUDA target"
    return cupy, ft.targets.cuda(arch if arch in REFERENCE else fits[-1]), ""


CUPY, TARGET, WHY = _gpu()
pytestmark = [pytest.mark.skipif(CUPY is None, reason=f"needs CuPy and an NVIDIA GPU: {WHY}"),
              pytest.mark.filterwarnings("ignore:target .* describes a sm_")]  # (a GPU newer than its target)


@ft.function
def affine(x, w):
    return ft.tanh(x @ w + 1.0)


X = np.linspace(-1, 1, 6 * 32, dtype=np.float32).reshape(6, 32)
W = np.linspace(0, 1, 32 * 48, dtype=np.float32).reshape(32, 48)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FRACTAL_CACHE_DIR", str(tmp_path))
    return tmp_path / "cuda"


def test_a_program_runs_on_the_gpu_and_agrees_with_the_interpreter_and_the_emulation(cache):
    compiled = affine.compile(X, W, target=TARGET)
    out = compiled.run(X, W)
    assert type(out) is np.ndarray
    np.testing.assert_allclose(out, affine.interpret(X, W), rtol=2e-5, atol=2e-6)
    emulated = affine(X, W, target=ft.targets.cuda(TARGET.hardware.gpu.name, emulate=True))
    np.testing.assert_allclose(out, emulated, rtol=2e-5, atol=2e-6)
    assert 'extern "C" __global__' in compiled.source
    entries = list(cache.iterdir())
    assert len(entries) == 1 and cupy_device.whole_elf(entries[0].read_bytes())
    fresh = cupy_device.CubinCache()  # (another process's view of the same folder)
    arch = compiled._executable.device.arch
    assert fresh.load(compiled.source, arch, Path.read_bytes) == entries[0].read_bytes() and fresh.compiles == 0


def test_cupy_arrays_are_read_in_place_and_outputs_stay_on_the_gpu():
    cupy = CUPY
    compiled = affine.compile(X, W, target=TARGET)
    x, w = cupy.asarray(X), cupy.asarray(W)
    out = compiled.run(x, w, keep_on_device=True)
    assert isinstance(out, cupy.ndarray) and out.shape == (6, 48)
    np.testing.assert_allclose(cupy.asnumpy(out), compiled.run(X, W), rtol=1e-6)
    square = affine.compile(np.zeros((6, 48), np.float32), np.eye(48, dtype=np.float32), target=TARGET)
    chained = square.run(out, cupy.eye(48, dtype=cupy.float32), keep_on_device=True)  # no host copy between
    np.testing.assert_allclose(cupy.asnumpy(chained), np.tanh(np.tanh(X @ W + 1.0) + 1.0), rtol=2e-5, atol=2e-6)
    transposed = cupy.asarray(X.T).T  # a strided view: made contiguous on the device
    np.testing.assert_allclose(cupy.asnumpy(compiled.run(transposed, w, keep_on_device=True)), cupy.asnumpy(out))


def test_a_torch_cuda_tensor_is_read_through_dlpack():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    compiled = affine.compile(X, W, target=TARGET)
    out = compiled.run(torch.from_numpy(X).cuda(), torch.from_numpy(W).cuda(), keep_on_device=True)
    np.testing.assert_allclose(CUPY.asnumpy(out), compiled.run(X, W), rtol=1e-6)
    with pytest.raises(ft.ArgumentError, match=r"argument 'x' of affine is a torch.Tensor that the 'cuda' backend "
                                               r"cannot take: it takes NumPy arrays and arrays on its GPU"):
        compiled.run(torch.from_numpy(X), W)  # a CPU tensor


def _zoo():
    try:
        return importlib.import_module("examples.zoo")
    except ImportError:
        return None


ZOO = _zoo()


@pytest.mark.skipif(ZOO is None, reason="the model zoo (examples/) is not importable from here")
@pytest.mark.parametrize("name", ZOO.available() if ZOO else [])
def test_every_zoo_model_at_small_agrees_with_its_reference_on_the_gpu(name):
    m = ZOO.load(name)
    args = m.inputs("small", dtype=np.float32)
    try:
        compiled = m.model.compile(*args, target=TARGET)
    except ft.UnsupportedError as e:
        pytest.skip(f"the cuda backend cannot compile {name} yet: {e.message}")
    got = m.outputs(compiled.run(*args))
    assert ZOO.max_abs_error(got, m.reference(*args)) <= ZOO.tolerance(np.float32)
