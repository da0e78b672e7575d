"""Every compile the tests run verifies the tile IR after each pass (`FRACTAL_VERIFY=1`):
a pass that breaks a rule or the contract fails the test that compiled, naming the pass.  A
call that names no target runs on the cpu backend (`FRACTAL_BACKEND=cpu`, below)."""

import os

os.environ.setdefault("FRACTAL_VERIFY", "1")
# A call naming no target runs on the NumPy cpu backend here, not on C++ (`ft.targets.default()`
# picks native where a compiler is found): thousands of small programs would each be a C++
# build.  The native backend's own tests name it; tests/test_targets.py checks the default.
os.environ.setdefault("FRACTAL_BACKEND", "cpu")
