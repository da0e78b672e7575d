"""The systems fractal's CPU backend is compared with: NumPy, PyTorch and JAX implementations
of the zoo models.

A `Peer` is one implementation of one model.  `prepare(module, args)` turns the zoo's inputs
(`module.inputs(config)`) into the peer's own form -- padded tensors, a module holding the
weights, index arrays -- outside the timing, and returns a `Prepared`: `run()` is the timed
call (inputs in the peer's form to outputs in the peer's form, including any per-call work such
as packing sequences or re-batching), and `to_reference(out)` converts its result, untimed, to
the structure the zoo's NumPy `reference` returns, so the harness can check it.

Each family lives in its own module (`numpy_peers`, `torch_peers`, `jax_peers`) with a
`PEERS = {model name: (Peer, ...)}` table; a family whose library is not installed is skipped.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

FAMILIES = ("numpy", "torch", "jax")


@dataclass(frozen=True)
class Prepared:
    run: Callable[[], object]                 # the timed call
    to_reference: Callable[[object], object]  # its result in the structure of `module.reference`


@dataclass(frozen=True)
class Peer:
    name: str       # shown in tables and used as the key in the results, e.g. "torch nn.LSTM (packed)"
    family: str     # "numpy" | "torch" | "jax"
    library: bool   # a library kernel (nn.LSTM, scaled_dot_product_attention), not hand-written ops
    prepare: Callable[..., Prepared]  # (zoo module, inputs) -> Prepared


@dataclass(frozen=True)
class Family:
    name: str
    version: str | None   # None: not installed
    peers: dict           # model name -> tuple of Peer
    error: str | None = None


def load_family(name: str) -> Family:
    """The peers of one family, or an empty family when its library cannot be imported."""
    try:
        mod = importlib.import_module(f"{__name__}.{name}_peers")
    except ImportError as e:
        return Family(name, None, {}, f"{type(e).__name__}: {e}")
    mod.setup()
    return Family(name, mod.version(), mod.PEERS)


def load_families() -> dict[str, Family]:
    return {name: load_family(name) for name in FAMILIES}
