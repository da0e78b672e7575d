"""Every compile the tests run verifies the tile IR after each pass (`FRACTAL_VERIFY=1`):
a pass that breaks a rule or the contract fails the test that compiled, naming the pass."""

import os

os.environ.setdefault("FRACTAL_VERIFY", "1")
