"""fractal: a FractalTensor-style language and compiler for neural networks.

    import fractal as ft

    @ft.function
    def rnn(xs, w, h0):
        return ft.scan(lambda h, x: ft.tanh(x @ w + h), xs, h0)

    rnn(xs, w, h0)              # compiled for this machine (ft.targets.host()) and run
    rnn(xs, w, h0, target=ft.targets.get("cpu-generic"))   # ... or for a named target
    ft.analyze(rnn, xs, w, h0)  # the ETDG analysis; ft.explain(...) says it in words

See README.md for a tour.  The package wires the stages together: the language
(`fractal.lang`) knows nothing of the layers above it, so it is given here what
compiles and runs its functions (`fractal.compile.RUNNER`).
"""

from .lang import *  # noqa: F401,F403
from .lang.runner import install_runner as _install_runner
from .compile import RUNNER as _RUNNER
from .analysis import analyze, explain
from . import backends, targets  # noqa: F401  (ft.backends.register, ft.targets.get, ...)

__version__ = "0.1.0"

_install_runner(_RUNNER)


def __getattr__(name):
    """`ft.testing` (hypothesis strategies and `check`), imported on first use: hypothesis is
    an optional dependency, and `import fractal` does not need it.  (By name, through
    importlib: `fractal.testing` imports this package, and is no part of its import graph.)"""
    if name == "testing":
        import importlib
        return importlib.import_module("fractal.testing")
    raise AttributeError(f"module 'fractal' has no attribute {name!r}")
