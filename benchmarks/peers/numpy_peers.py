"""NumPy peers beyond the zoo's own `reference` (which the harness always times).

* b2b_gemm: the two GEMMs `(A @ B) @ C` on the dense operands, which are assembled from the
  blocked inputs outside the timing (the zoo reference re-assembles them on every call).
"""

from __future__ import annotations

import numpy as np

from benchmarks.peers import Peer, Prepared


def setup() -> None:
    pass


def version() -> str:
    return np.__version__


def b2b_two_gemms(module, args) -> Prepared:
    a, b, c = (np.ascontiguousarray(x) for x in module._dense(*args))
    return Prepared(run=lambda: (a @ b) @ c, to_reference=lambda d: d)


PEERS = {
    "b2b_gemm": (Peer("numpy (A@B)@C", "numpy", True, b2b_two_gemms),),
}
