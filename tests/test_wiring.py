"""How the package wires the stages together around `@ft.function`.

Specification checked here:

* The language layer does not compile: `Function.__call__` and `Function.compile` delegate to
  the runner the `fractal` package installs (`fractal.compile.RUNNER`), once.
* `f(*args)` compiles for the host, caches the compiled program in the function per argument
  sizes and target, and runs it; `f(*args, backend="interpreter")` interprets (the interpreter
  backend: no lowering); a function that takes a `backend` or `target` parameter itself gets
  it.  While tracing, a call inlines.
* `f.compile(*args, target=..., backend=...)` hands the runner's options to the runner and the
  other keywords to the function.
* A program the backend cannot lower runs in the interpreter with a warning that points at
  the caller's line.
* The analysis of a function is `ft.analyze(f, *args)`, in words `ft.explain(f, *args)`.
"""

from __future__ import annotations

import numpy as np
import pytest

import fractal as ft
import fractal.compile
from fractal.lang import runner as runner_module
from fractal.lang.runner import Runner, install_runner, installed_runner


def rows(*lengths):
    return ft.fractal([[np.full((1, 2), float(i), np.float32)] * n for i, n in enumerate(lengths)])


@ft.function
def doubled(xss):
    return ft.map(lambda xs: ft.map(lambda x: x * 2.0, xs), xss)


def test_the_package_installs_the_compile_layer_runner():
    assert installed_runner() is fractal.compile.RUNNER
    assert installed_runner().call_options == {"backend", "target"}


def test_a_call_compiles_once_per_sizes_and_keeps_the_compiled_program_in_the_function():
    @ft.function
    def f(xss):
        return ft.map(lambda xs: ft.map(lambda x: x + 1.0, xs), xss)

    assert f(rows(2, 1)) == f(rows(2, 1), backend="interpreter")
    assert len(f.runner_cache) == 2  # one per target: the host, the interpreter
    f(rows(2, 1))
    assert len(f.runner_cache) == 2  # same sizes: the cached program runs
    f(rows(3))
    assert len(f.runner_cache) == 3  # other lengths: compiled again
    assert f.compile(rows(3)) is f.compile(rows(3))
    assert f.compile(rows(3), target="cpu-generic") is not f.compile(rows(3))  # another target


def test_a_call_on_the_interpreter_does_not_lower():
    @ft.function
    def f(xs):
        return ft.map(lambda x: x * 3.0, xs)

    out = f(rows(2)[0], backend="interpreter")
    (compiled,) = f.runner_cache.values()
    assert out.lengths() == 2 and compiled.tile_ir is None and compiled.target.backend == "interpreter"


def test_a_function_with_a_backend_parameter_receives_it():
    @ft.function
    def scaled(xs, backend=1.0):
        return ft.map(lambda x: x * backend, xs)

    xs = ft.fractal([np.ones((1, 2), np.float32)] * 2)
    assert scaled(xs, backend=4.0) == ft.fractal([np.full((1, 2), 4.0, np.float32)] * 2)


def test_a_call_while_tracing_inlines_the_body_and_drops_the_backend_option():
    @ft.function
    def outer(xss):
        return doubled(xss, backend="interpreter")

    program = outer.trace(rows(2, 1))
    assert [e.op for e in program.body.eqns] == ["map"]
    assert outer(rows(2, 1)) == doubled(rows(2, 1))


def test_compile_hands_the_runner_its_options(monkeypatch):
    seen = []
    fake = Runner(call=lambda *a, **k: None, compile=lambda f, args, kwargs, **options: seen.append(
        (f, args, kwargs, options)) or "compiled", call_options=frozenset({"backend", "target", "fast"}))
    monkeypatch.setattr(runner_module, "_installed", fake)
    xs = rows(2)
    assert doubled.compile(xs, target="h100") == "compiled"
    assert doubled.compile(xs, backend="cuda", fast=True) == "compiled"
    assert seen == [(doubled, (xs,), {}, {"target": "h100"}),
                    (doubled, (xs,), {}, {"backend": "cuda", "fast": True})]


def test_compile_rejects_an_unknown_backend():
    with pytest.raises(ft.ArgumentError, match="unknown backend 'gpu'"):
        doubled.compile(rows(1), backend="gpu")


def test_without_a_runner_calls_and_compiles_say_what_is_missing(monkeypatch):
    monkeypatch.setattr(runner_module, "_installed", None)
    with pytest.raises(RuntimeError, match="no runner is installed to compile and run fractal functions"):
        doubled(rows(1))
    with pytest.raises(RuntimeError, match="no runner is installed"):
        doubled.compile(rows(1))


def test_the_runner_is_installed_once():
    install_runner(fractal.compile.RUNNER)  # the same one again: nothing changes
    other = Runner(call=lambda *a, **k: None, compile=lambda *a, **k: None)
    with pytest.raises(RuntimeError, match="a different runner is already installed"):
        install_runner(other)
    assert installed_runner() is fractal.compile.RUNNER


def test_the_interpreter_fallback_warning_points_at_the_call():
    @ft.function
    def pick_rows(xss, idx):  # traced gather indices into a list of lists: not lowered yet
        return ft.gather(xss, idx)

    # (the warning comes once per function name: this name is used by no other test)
    with pytest.warns(UserWarning, match="pick_rows: running in the interpreter; the cpu backend") as record:
        out = pick_rows(rows(1, 2, 3), np.array([2, 0], dtype=np.int64))
    assert out.lengths() == [3, 1]
    assert record[0].filename == __file__


def test_analyze_and_explain_take_a_function_and_its_arguments():
    a = ft.analyze(doubled, rows(2, 1))
    assert [tuple(d.kind for d in b.dims) for b in a.blocks] == [("map", "map")]
    assert str(ft.explain(doubled, rows(2, 1))) == str(a)


def test_analyze_rejects_a_plain_python_function():
    with pytest.raises(ft.FractalTypeError, match="ft.analyze takes an @ft.function, got function"):
        ft.analyze(lambda xs: xs, rows(1))
