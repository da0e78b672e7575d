"""What the native backend's tests share: they skip, with the reason, only where no C++
compiler exists; each test module compiles into a cache folder of its own, so a stale entry of
another run never stands in for a build (the cache's own behaviour is `test_backend.py`'s)."""

from __future__ import annotations

import pytest
from hypothesis import assume
from hypothesis import strategies as st

from fractal.backends.cxx_build import find_compiler
from fractal.lang.errors import VerifyError
from tests.backends.cpu.programs import program, tile

needs_compiler = pytest.mark.skipif(find_compiler() is None,
                                    reason="no host C++ compiler ($CXX, g++ or clang++): nothing to compile the native code")


@pytest.fixture(autouse=True, scope="module")
def _native_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("FRACTAL_CACHE_DIR", str(tmp_path_factory.mktemp("native_cache")))
    yield
    mp.undo()


def drawn_stage(draw, name: str, dim: str, templates) -> str:
    """A stage over `dim` of 1-2 ops drawn from `templates`, each touching a point's own rows or
    a neighbour's (`{o}`: 0 or 1)."""
    ops = [draw(st.sampled_from(templates)).format(o=draw(st.sampled_from([0, 1])))
           for _ in range(draw(st.integers(1, 2)))]
    return f"stage {name}({dim}) device {{ " + " ".join(ops) + " }"


def drawn_program(buffers: str, body: str):
    """The tile program, or hypothesis told to draw another where it is not one (a stage whose
    own points meet)."""
    try:
        return program(tile(buffers, body))
    except VerifyError:
        assume(False)
