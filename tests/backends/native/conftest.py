"""What the native backend's tests share: they skip, with the reason, only where no C++
compiler exists; each test module compiles into a cache folder of its own, so a stale entry of
another run never stands in for a build (the cache's own behaviour is `test_backend.py`'s)."""

from __future__ import annotations

import pytest

from fractal.backends.cxx_build import find_compiler

needs_compiler = pytest.mark.skipif(find_compiler() is None,
                                    reason="no host C++ compiler ($CXX, g++ or clang++): nothing to compile the native code")


@pytest.fixture(autouse=True, scope="module")
def _native_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("FRACTAL_CACHE_DIR", str(tmp_path_factory.mktemp("native_cache")))
    yield
    mp.undo()
