"""How an `@ft.function` is compiled and run: a hook that the layer above installs.

This layer traces functions and interprets programs.  Compiling a program for a backend,
running the compiled code and caching it belong to `fractal.compile`, which builds on this
layer (and on the analysis, the lowering and the backends), so this layer cannot import it.
Instead the `fractal` package installs `fractal.compile.RUNNER` once, when it is imported,
and `Function` delegates to it (dependency inversion):

    f(*args, **kwargs)           ->  runner.call(f, args, kwargs, **options)   (not while tracing)
    f.compile(*args, **kwargs)   ->  runner.compile(f, args, kwargs, **options)

A call's `options` are the keywords named in `runner.call_options` (`target`, `backend`) that
the function does not take itself; `kwargs` keeps the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Runner:
    """What the compile layer provides to `Function.__call__` and `Function.compile`."""

    call: Callable[..., Any]  # call(function, args, kwargs, **options) -> the results
    compile: Callable[..., Any]  # compile(function, args, kwargs, **options) -> a compiled program
    call_options: frozenset[str] = frozenset()  # keywords of a call meant for `call`, not the function
    memory: Callable[[], int] | None = None  # the host's memory in bytes (eager ops are checked against it)


_installed: Runner | None = None


def install_runner(runner: Runner) -> None:
    """Install the runner every `Function` delegates to; set once (by the `fractal` package)."""
    global _installed
    if _installed is not None and _installed != runner:
        raise RuntimeError("a different runner is already installed: fractal functions are compiled "
                           "and run by one runner, installed once by the fractal package")
    _installed = runner


def installed_runner() -> Runner:
    """The installed runner; an error names the missing wiring if there is none."""
    if _installed is None:
        raise RuntimeError("no runner is installed to compile and run fractal functions: import the "
                           "fractal package, which installs fractal.compile's")
    return _installed


def host_memory() -> int | None:
    """The host's memory in bytes, from the installed runner (None when it gives none)."""
    return _installed.memory() if _installed is not None and _installed.memory is not None else None
