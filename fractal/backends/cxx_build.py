"""Host C++ compiled into shared libraries, cached on disk: what the CUDA emulation and the
native CPU backend load with ctypes.

`find_compiler()` is `$CXX`, else `g++`, else `clang++` (None if none is on PATH);
`build(source, flags, folder)` returns the path of a library compiled from `source`, kept
under `cache_dir() / folder` and named by a hash of the source, `extra_key` (the headers it
includes), the compiler and the flags:

    lib = ctypes.CDLL(str(build('extern "C" int f() { return 42; }', SHARED + ("-O2",), "native")))
    assert lib.f() == 42

An entry is compiled in a temporary folder beside it and renamed into place, so processes
that race to build one entry each end with a whole library.  Its digest is kept in a sidecar
(`<folder>.sha256/<key>.sha256`, written before the library is renamed in; outside the
library folder, which holds only libraries), and a hit whose library does not match it (or
has none) is rebuilt, never loaded: a truncated or overwritten library would crash the
process that loads it, not raise.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from ..lang.errors import FractalError
from .disk_cache import cache_dir, write_atomic

SHARED = ("-shared", "-fPIC")  # the flags every shared library needs; `build` adds none itself
COMPILE_TIMEOUT_S = 300
FALLBACKS = ("g++", "clang++")
_LOG_LINES, _LOG_CHARS = 60, 8000  # how much of a compiler's log an error quotes


class CxxBuildError(FractalError):
    """The host C++ compiler could not build a library."""


class CompilerNotFoundError(CxxBuildError):
    """No host C++ compiler on PATH (`$CXX` names one that is not there, or neither g++ nor clang++ is)."""


class CxxCompileError(CxxBuildError):
    """The compiler refused the source, or ran past its time; `log` is its (trimmed) stderr."""

    def __init__(self, message: str, log: str, command: list[str]):
        self.log, self.command = log, command
        super().__init__(f"{message}:\n{log}" if log else message)


@dataclass(frozen=True)
class Compiler:
    path: str
    version: str  # the first line of `--version`: part of every cache key


@functools.lru_cache(maxsize=None)
def _probe(name: str) -> Compiler | None:
    path = shutil.which(name)
    if path is None:
        return None
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
        first = done.stdout.splitlines()[0] if done.stdout else name
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Compiler(path, first)


def find_compiler(name: str | None = None) -> Compiler | None:
    """The compiler `name`, else `$CXX`, else `g++`, else `clang++`; None if it is not on PATH.
    A name asked for (or `$CXX`) is not replaced by a fallback: the user chose it."""
    name = name or os.environ.get("CXX")
    if name:
        return _probe(name)
    return next((c for c in map(_probe, FALLBACKS) if c is not None), None)


def require_compiler(name: str | None = None) -> Compiler:
    """`find_compiler(name)`, or `CompilerNotFoundError` saying what was looked for."""
    found = find_compiler(name)
    if found is None:
        wanted = name or os.environ.get("CXX")
        raise CompilerNotFoundError(f"{wanted!r} is not on PATH" if wanted else
                                    f"neither {' nor '.join(map(repr, FALLBACKS))} is on PATH")
    return found


def entry_key(source: str, flags, extra_key=(), compiler: Compiler | None = None) -> str:
    """The name of `source`'s entry: a hash of everything that changes the library."""
    compiler = compiler or require_compiler()
    text = json.dumps([source, list(extra_key), compiler.path, compiler.version, list(flags)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def sidecar(library: Path) -> Path:
    """Where the digest of `library` is kept."""
    return library.parent.with_name(library.parent.name + ".sha256") / f"{library.stem}.sha256"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def intact(library: Path) -> bool:
    """Whether `library` is there and matches its sidecar (False for a missing or unreadable one)."""
    try:
        return sidecar(library).read_text().strip() == _digest(library)
    except OSError:
        return False


_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(library: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(library, threading.Lock())


def build(source: str, flags, folder: str, extra_key=(), compiler: Compiler | None = None,
          include_dirs=()) -> Path:
    """The path of a shared library compiled from `source` with `flags` (include `SHARED`) and
    `-I` each of `include_dirs`.  `extra_key` holds the texts of the headers it includes (their
    folder is not part of the key).  Raises `CompilerNotFoundError` or `CxxCompileError`."""
    compiler = compiler or require_compiler()
    flags = tuple(flags)
    library = cache_dir() / folder / f"{entry_key(source, flags, extra_key, compiler)}.so"
    # one build per entry at a time in this process; other processes race safely (renames)
    with _lock(library):
        if not intact(library):
            _compile(source, flags, compiler, [str(d) for d in include_dirs], library)
    return library


def _trim(log: str) -> str:
    lines = log.strip().splitlines()
    text = "\n".join(lines[:_LOG_LINES])[:_LOG_CHARS]
    return text + (f"\n... ({len(lines) - _LOG_LINES} more lines)" if len(lines) > _LOG_LINES else "")


def _compile(source: str, flags: tuple[str, ...], compiler: Compiler, include_dirs: list[str],
             library: Path) -> None:
    library.parent.mkdir(parents=True, exist_ok=True)
    # (inside the cache folder: the final rename stays on one file system, so it is atomic)
    with tempfile.TemporaryDirectory(dir=library.parent, prefix=".build-") as tmp:
        (Path(tmp) / "source.cpp").write_text(source)
        # relative names, run in the temporary folder: the compiler's messages say `source.cpp`,
        # not a random folder's path
        includes = [a for d in include_dirs for a in ("-I", os.path.abspath(d))]
        command = [compiler.path, *flags, *includes, "source.cpp", "-o", "library.so"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, cwd=tmp)
        except subprocess.TimeoutExpired as e:
            log = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or ""
            raise CxxCompileError(f"{compiler.path} ran past {COMPILE_TIMEOUT_S} s", _trim(log), command) from None
        if done.returncode != 0:
            raise CxxCompileError(f"{compiler.path} refused the source (exit {done.returncode})",
                                  _trim(done.stderr), command)
        # the sidecar first: a library in place always has a digest (a reader that sees a new
        # sidecar with an old library, or two racing builds that made different bytes, rebuild:
        # only wasted work, never a bad load)
        out = Path(tmp) / "library.so"
        write_atomic(sidecar(library), _digest(out).encode())
        os.replace(out, library)
