"""fractal: a FractalTensor-style language and compiler for neural networks.

    import fractal as ft

    @ft.function
    def rnn(xs, w, h0):
        return ft.scan(lambda h, x: ft.tanh(x @ w + h), xs, h0)

See README.md for a tour.
"""

from .lang import *  # noqa: F401,F403

__version__ = "0.1.0"

from .analysis import explain  # noqa: E402  (the package wires the stages together)
