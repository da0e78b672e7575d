"""The `native` backend as users meet it: `backend="native"` and `ft.targets.host(native=True)`
run the program as compiled C++ (`compiled.source`) with the cpu backend's answers and
per-stage profiles; a second process loads the cached library without compiling; without a
C++ compiler the NumPy cpu backend runs it, after one warning."""

from __future__ import annotations

import dataclasses

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import fractal as ft
from fractal.backends.cpu.executor import CpuExecutable
from fractal.backends.native import backend as native_backend
from fractal.backends.native.executable import NativeExecutable
from tests.backends.native.conftest import needs_compiler


@ft.function
def cell(xs: ft.FractalTensor, w: np.ndarray):
    return ft.map(lambda x: ft.tanh(x @ w), xs)


def inputs():
    rng = np.random.default_rng(0)
    xs = ft.fractal([rng.standard_normal((1, 16)).astype(np.float32) for _ in range(5)])
    return xs, rng.standard_normal((16, 8)).astype(np.float32)


@needs_compiler
def test_backend_native_and_the_native_host_target_run_generated_cpp_with_the_cpu_backends_answers():
    args = inputs()
    want = np.stack(cell(*args, backend="cpu").to_list())
    for compiled in (cell.compile(*args, backend="native"), cell.compile(*args, target=ft.targets.host(native=True))):
        assert compiled.target.backend == "native" and isinstance(compiled._executable, NativeExecutable)
        assert "FT_EXPORT int ft_run(" in compiled.source
        np.testing.assert_allclose(np.stack(compiled.run(*args).to_list()), want, rtol=1e-5, atol=1e-6)
    native = ft.targets.host(native=True)
    assert native.hardware == ft.targets.host().hardware   # (the cpu policy but for what a polygon costs here)
    assert native.policy == dataclasses.replace(ft.targets.host().policy, polygon_gathers=False)
    assert native.name == ft.targets.host().name + "-native" and ft.targets.get("cpu-generic-native").backend == "native"


@needs_compiler
def test_a_profile_gets_seconds_per_stage():
    args = inputs()
    compiled = cell.compile(*args, backend="native")
    profile = {}
    compiled.run(*args, profile=profile)
    stages = {s.name for s in compiled.tile_ir.stages()}
    assert set(profile) == stages and all(v >= 0.0 for v in profile.values())


@needs_compiler
def test_a_second_process_loads_the_cached_library_without_compiling(tmp_path):
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(__import__('pathlib').Path(__file__).resolve().parents[3])!r})
        import numpy as np, fractal as ft
        from fractal.backends import cxx_build
        from tests.backends.native.test_backend import cell, inputs
        if sys.argv[1] == "cached":
            def refuse(*a, **k):
                raise AssertionError("compiled again")
            cxx_build._compile = refuse
        print(np.stack(cell(*inputs(), backend="native").to_list()).sum())
    """)
    env = {"FRACTAL_CACHE_DIR": str(tmp_path), "PATH": __import__("os").environ["PATH"]}
    first = subprocess.run([sys.executable, "-c", script, "first"], capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    again = subprocess.run([sys.executable, "-c", script, "cached"], capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


def test_without_a_compiler_the_cpu_backend_runs_it_after_one_warning(monkeypatch):
    monkeypatch.setattr(native_backend.cxx_build, "find_compiler", lambda name=None: None)
    monkeypatch.setattr(native_backend, "_warned", False)
    args = inputs()

    @ft.function   # (a function of its own: compiles are cached per function, arguments and target)
    def cell(xs: ft.FractalTensor, w: np.ndarray):
        return ft.map(lambda x: ft.tanh(x @ w), xs)
    with pytest.warns(RuntimeWarning, match="the native backend found no C\\+\\+ compiler .*NumPy cpu backend instead"):
        compiled = cell.compile(*args, target=ft.targets.host(native=True))
    assert isinstance(compiled._executable, CpuExecutable)
    np.testing.assert_allclose(np.stack(compiled.run(*args).to_list()),
                               np.stack(cell(*args, backend="interpreter").to_list()), rtol=1e-5, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = np.ones((16, 8), np.float32)   # (another program: no second warning)
        cell.compile(args[0], w * 2, target=ft.targets.host(native=True))


def test_blas_runs_on_one_thread_while_native_runs_are_in_progress_and_gets_its_count_back(monkeypatch):
    """The first run to start holds BLAS to one thread, the last to end restores its count (runs
    split their BLAS calls among their own threads instead)."""
    from fractal.backends.native import executable
    calls = []
    monkeypatch.setattr(executable.blas_lib, "get_threads", lambda: 6)
    monkeypatch.setattr(executable.blas_lib, "set_threads", calls.append)
    monkeypatch.setattr(executable, "stop_blas_workers", lambda: calls.append("stop"))
    with executable.one_blas_thread():
        with executable.one_blas_thread():   # (a second run meanwhile)
            assert calls == [1, "stop"]      # (BLAS's idle workers stopped: they would spin beside the run)
        assert calls == [1, "stop"]
    assert calls == [1, "stop", 6]
