"""The `interpreter` backend: the NumPy reference interpreter, the semantics every other
backend is checked against.  It consumes the traced program itself (no lowering, no target
to speak of), and runs it for the flat arguments it is given."""

from __future__ import annotations

from fractal.lang.interpreter import run_program
from fractal.lower.target import Target


class _Interpreting:
    def __init__(self, program):
        self.program = program

    def run(self, inputs, profile: dict | None = None):
        """The flat results of the program on its flat arguments `inputs`."""
        return run_program(self.program, list(inputs))


class InterpreterBackend:
    name = "interpreter"
    description = "the NumPy reference interpreter: runs the program IR, the semantics oracle"
    consumes = "program"

    def default_target(self) -> Target:
        return Target("interpreter", "interpreter", None, None, "the program IR, interpreted (no hardware model)")

    def targets(self):
        return {"interpreter": self.default_target}

    def build(self, program, target: Target) -> _Interpreting:
        return _Interpreting(program)
