"""`fractal.backends.cxx_build`: host C++ compiled into shared libraries, cached on disk.

An entry is built once and reused (by this process and by others) without the compiler; a
change of flags or of compiler is another entry; a library that does not match its digest,
or has none, is rebuilt and never loaded; a compile error quotes the compiler; threads that
build one entry at once each get a whole library."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from fractal.backends import cxx_build
from fractal.backends.cxx_build import Compiler, CxxCompileError, build, find_compiler, sidecar
from fractal.lang.errors import FractalError

COMPILER = find_compiler()
pytestmark = pytest.mark.skipif(COMPILER is None, reason="no host C++ compiler ($CXX, g++ or clang++) on PATH")

SOURCE = 'extern "C" int f() { return 42; }'
FLAGS = cxx_build.SHARED + ("-O1",)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FRACTAL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def call_f(library: Path) -> int:
    return ctypes.CDLL(str(library)).f()


def test_a_second_build_is_a_hit_without_the_compiler(monkeypatch):
    library = build(SOURCE, FLAGS, "tests", compiler=COMPILER)
    before = library.stat()
    monkeypatch.setattr(cxx_build.subprocess, "run", lambda *a, **k: pytest.fail("the compiler ran"))
    assert build(SOURCE, FLAGS, "tests", compiler=COMPILER) == library
    after = library.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_another_process_reuses_the_entry():
    library = build(SOURCE, FLAGS, "tests", compiler=COMPILER)
    before = library.stat()
    # (argv: the source, the compiler's path and version, the flags; running anything fails)
    script = ("import sys; from fractal.backends import cxx_build as c; c.subprocess.run = None; "
              "print(c.build(sys.argv[1], tuple(sys.argv[4:]), 'tests', compiler=c.Compiler(*sys.argv[2:4])))")
    done = subprocess.run([sys.executable, "-c", script, SOURCE, COMPILER.path, COMPILER.version, *FLAGS],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(library)
    after = library.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_two_processes_building_one_entry_at_once_both_get_a_whole_library():
    script = ("import sys; from fractal.backends import cxx_build as c; "
              "print(c.build(sys.argv[1], tuple(sys.argv[4:]), 'tests', compiler=c.Compiler(*sys.argv[2:4])))")
    source = SOURCE.replace("42", "9")
    procs = [subprocess.Popen([sys.executable, "-c", script, source, COMPILER.path, COMPILER.version, *FLAGS],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    paths = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs) and len(paths) == 1
    library = Path(paths.pop())
    assert cxx_build.intact(library) and ctypes.CDLL(str(library)).f() == 9
    assert [p.name for p in library.parent.iterdir()] == [library.name]


def test_another_flag_or_compiler_version_is_another_entry():
    library = build(SOURCE, FLAGS, "tests", compiler=COMPILER)
    other_flags = build(SOURCE, FLAGS + ("-DUNUSED=1",), "tests", compiler=COMPILER)
    other_version = build(SOURCE, FLAGS, "tests", compiler=Compiler(COMPILER.path, COMPILER.version + " (patched)"))
    other_source = build(SOURCE + "\n", FLAGS, "tests", compiler=COMPILER)
    other_header = build(SOURCE, FLAGS, "tests", extra_key=("#define X 1",), compiler=COMPILER)
    entries = {library, other_flags, other_version, other_source, other_header}
    assert len(entries) == 5 and all(call_f(e) == 42 for e in entries)


@pytest.mark.parametrize("damage", ["overwritten", "truncated", "sidecar deleted", "sidecar wrong"])
def test_a_damaged_entry_is_rebuilt_not_loaded(damage, monkeypatch):
    library = build(SOURCE, FLAGS, "tests", compiler=COMPILER)
    if damage == "overwritten":
        with open(library, "r+b") as f:
            f.seek(64)
            f.write(b"\xff" * 256)
    elif damage == "truncated":
        os.truncate(library, library.stat().st_size // 2)
    elif damage == "sidecar deleted":
        sidecar(library).unlink()
    else:
        sidecar(library).write_text("0" * 64)
    assert not cxx_build.intact(library)
    damaged = library.stat().st_ino
    runs = []
    real_run = cxx_build.subprocess.run
    monkeypatch.setattr(cxx_build.subprocess, "run", lambda *a, **k: runs.append(a) or real_run(*a, **k))
    assert build(SOURCE, FLAGS, "tests", compiler=COMPILER) == library
    assert len(runs) == 1 and cxx_build.intact(library) and call_f(library) == 42
    assert library.stat().st_ino != damaged  # renamed over it, not written into it (a loaded copy stays whole)


def test_a_compile_error_quotes_the_compiler():
    with pytest.raises(CxxCompileError, match=r"(?s)refused the source.*undeclared_name") as caught:
        build('extern "C" int f() { return undeclared_name; }', FLAGS, "tests", compiler=COMPILER)
    assert "undeclared_name" in caught.value.log and caught.value.command[0] == COMPILER.path
    assert isinstance(caught.value, FractalError)


def test_a_long_compiler_log_is_trimmed():
    log = cxx_build._trim("\n".join(f"error {i}" for i in range(1000)))
    assert log.startswith("error 0\n") and log.endswith("(940 more lines)") and len(log) < 2000


def test_no_compiler_is_none_or_a_clear_error(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    assert find_compiler() is None and find_compiler("g++-no-such") is None
    with pytest.raises(cxx_build.CompilerNotFoundError, match=r"'no-such-compiler-xyz' is not on PATH"):
        build(SOURCE, FLAGS, "tests")
    monkeypatch.delenv("CXX")
    assert find_compiler() == find_compiler() is not None  # (g++ or clang++ here: the module is not skipped)


def test_threads_building_one_entry_at_once_each_get_a_whole_library(monkeypatch):
    source = SOURCE.replace("42", "7")
    libraries, errors, runs = [], [], []
    real_run = cxx_build.subprocess.run
    monkeypatch.setattr(cxx_build.subprocess, "run", lambda *a, **k: runs.append(a) or real_run(*a, **k))

    def one():
        try:
            libraries.append(build(source, FLAGS, "tests", compiler=COMPILER))
        except BaseException as e:  # (reported below, not lost in the thread)
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(libraries) == 4 and len(set(libraries)) == 1
    assert len(runs) == 1  # one compile: the others waited for it, then found it whole
    assert cxx_build.intact(libraries[0]) and ctypes.CDLL(str(libraries[0])).f() == 7
