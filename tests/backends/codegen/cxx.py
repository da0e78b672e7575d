"""A tiny ctypes harness: compile generated C++ with g++ into one shared library per test module.

    lib = build(tmp_path_factory, "index", source)      # skips the module without g++
    lib.eval_index(k, values)                            # an `extern "C"` function of `source`

Tests batch many generated functions into one source (one compile per module) and call them
through a dispatcher by number.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

GXX = shutil.which("g++")
NVCC = shutil.which("nvcc")


def build(tmp_path_factory, name: str, source: str) -> ctypes.CDLL:
    """`source` compiled with g++ -O1 (IEEE arithmetic: no fast-math) and loaded."""
    if GXX is None:
        pytest.skip("g++ is not installed: the generated C++ cannot be compiled")
    d = tmp_path_factory.mktemp(f"cxx_{name}")
    src, lib = d / f"{name}.cpp", d / f"lib{name}.so"
    src.write_text(source)
    run = subprocess.run([GXX, "-std=c++17", "-O1", "-shared", "-fPIC", "-Wall", "-Werror", "-Wno-unused-function",
                          "-Wno-tautological-compare",
                          "-o", str(lib), str(src)], capture_output=True, text=True)
    assert run.returncode == 0, f"g++ failed on {src}:\n{run.stderr[:4000]}"
    return ctypes.CDLL(str(lib))


def pointer(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


def dispatcher(ret: str, name: str, params: str, args: str, count: int, fn: str) -> str:
    """`extern "C" ret name(int k, params)` calling `fn<k>(args)`."""
    cases = "".join(f"    case {k}: return {fn}{k}({args});\n" for k in range(count))
    default = "" if ret == "void" else f"    default: return {ret}();\n"
    return f'extern "C" {ret} {name}(int k, {params}) {{\n  switch (k) {{\n{cases}{default}  }}\n}}\n'
