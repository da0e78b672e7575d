"""User-facing errors and the source locations they point at.

Every mistake a user can make gets a `FractalError` subclass whose message
names the user's file, line and source text, e.g.::

    fractal.ShapeError: matmul: inner dimensions differ: f32[1,4] @ f32[5,8]
      at model.py:12, in cell
        h = x @ w

Source locations are taken from the Python call stack at the moment an
operation is recorded or executed: the innermost frame that is not inside the
`fractal` package itself is the user's line.
"""

from __future__ import annotations

import linecache
import os
import sys
from dataclasses import dataclass

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class SourceLoc:
    """A position in the user's source: file, line and enclosing function."""

    file: str
    line: int
    function: str = ""

    def source_text(self) -> str:
        return linecache.getline(self.file, self.line).strip()

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}, in {self.function}" if self.function else where


UNKNOWN_LOC = SourceLoc("<unknown>", 0)


def _is_internal(filename: str) -> bool:
    path = os.path.abspath(filename)
    return path.startswith(_PACKAGE_DIR + os.sep) and os.sep + "tests" + os.sep not in path


def _short_path(filename: str) -> str:
    """Paths under the working directory print relative to it, for readable program text."""
    try:
        rel = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if rel.startswith("..") else rel


def user_location() -> SourceLoc:
    """The innermost stack frame outside the fractal package (the user's line)."""
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if not _is_internal(code.co_filename) and not code.co_filename.startswith("<frozen"):
            return SourceLoc(_short_path(code.co_filename), frame.f_lineno, code.co_name)
        frame = frame.f_back
    return UNKNOWN_LOC


class FractalError(Exception):
    """Base class of every error fractal reports about a user's program or data."""

    def __init__(self, message: str, loc: SourceLoc | None = None):
        self.message = message
        self.loc = loc if loc is not None else user_location()
        super().__init__(self._format())

    def _format(self) -> str:
        loc = self.loc
        if loc is None or loc is UNKNOWN_LOC or loc.line <= 0:
            return self.message
        text = loc.source_text()
        lines = [self.message, f"  at {loc}"]
        if text:
            lines.append(f"    {text}")
        return "\n".join(lines)

    def __reduce__(self):  # keep errors picklable (multiprocessing, notebooks)
        return (type(self), (self.message, self.loc))


class FractalTypeError(FractalError, TypeError):
    """A value or annotation has the wrong type (dtype, depth, tensor vs list)."""


class ShapeError(FractalError, ValueError):
    """Tensor shapes do not fit an operation (matmul, broadcasting, reshape...)."""


class LengthError(FractalError, ValueError):
    """List lengths do not fit (zip of unequal lengths, index out of range...)."""


class TraceError(FractalError):
    """A Python construct cannot be traced (data-dependent control flow, escaping values...)."""


class ParseError(FractalError):
    """Program text does not follow the program IR grammar."""


class VerifyError(FractalError):
    """A program IR violates a typing or scoping rule (found by `verify()`)."""


class ArgumentError(FractalError, ValueError):
    """An argument of an op has a value it cannot take (window size 0, split into 0 parts...)."""


class UnsupportedError(FractalError, NotImplementedError):
    """A valid program that a compiler backend cannot lower yet (the interpreter still runs it)."""


class ResourceError(FractalError, MemoryError):
    """A program or an op needs more than the machine holds (memory) or the compiler handles
    (points of a loop nest): refused before it runs (`fractal.lang.limits`)."""


class CudaCompileError(FractalError):
    """CUDA C++ that the CUDA compiler (NVRTC or nvcc) refuses, or no CUDA compiler here: the
    message quotes the compiler's log with each failing line of the source; `log` is the log as
    the compiler wrote it and `lines` the source lines its errors point at, e.g.::

        fractal.CudaCompileError: CUDA C++ does not compile for sm_90 (NVRTC 12.9): kernel.cu
        kernel.cu(2): error: expected a ";"
            2 |     x[0] = 1.0f
    """

    def __init__(self, message: str, loc: SourceLoc | None = None, *, log: str = "", lines: tuple = ()):
        self.log, self.lines = log, tuple(lines)
        super().__init__(message, loc)

    def __reduce__(self):
        return (type(self), (self.message, self.loc), {"log": self.log, "lines": self.lines})


class DeviceError(FractalError):
    """A program compiled for a device that this machine cannot run it on: no GPU, no CuPy, a
    GPU older than the target's architecture, a module the driver refuses; the message says
    what to do instead (often: the same kernels on the CPU, `ft.targets.cuda(..., emulate=True)`)."""


def located(e: FractalError, loc: SourceLoc) -> FractalError:
    """`e` pointing at `loc` (the equation that failed), unless an inner equation already
    located it: re-raise the result `from None`."""
    if getattr(e, "_located", False):
        return e
    err = type(e)(e.message, loc)
    err._located = True
    return err
