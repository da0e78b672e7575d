"""The model zoo's common interface and registry.

Every model module `examples/<name>.py` defines:

* `DESCRIPTION`: one line saying what the model is.
* `CONFIGS`: `{"small": {...}, "cpu": {...}, "paper": {...}, ...}` of keyword sizes.
  `small` runs in well under a second in the interpreter (tests); `cpu` is the
  benchmark shape for a 2-core machine; `paper` the GPU shape of the reference
  benchmarks.  Extra variants (e.g. `cpu_small_batch`) are allowed.
* `inputs(config="small", *, dtype=np.float32, seed=0, ragged=True) -> tuple`:
  deterministic (seeded) arguments of `model`; sequence models make ragged
  batches (different lengths per sample) unless `ragged=False`.
* `model`: the `@ft.function` itself.
* `reference(*args)`: an independent plain-NumPy implementation, written the way
  a NumPy user would (vectorised over the batch, padded and masked for ragged
  batches), returning NumPy arrays / nested lists of arrays.
* `outputs(result)`: the model's result converted to the structure `reference` returns.
* optionally `torch_reference(*args)`: the same through PyTorch (`nn.LSTM`,
  `scaled_dot_product_attention`, ...), imported lazily; only used when torch is installed.
* `SIZES`: for property tests, each keyword size's small values that the model accepts in
  any combination, simplest first; `arguments(m, dtype)` draws configs from them (with a
  seed and raggedness) for `ft.testing.check`, which the zoo's reference test runs.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np

MODELS = (
    "stacked_lstm", "dilated_lstm", "grid_rnn", "b2b_gemm", "flash_attention", "bigbird",
    "transformer_block", "rnn_attention", "conv2d",
    "selective_scan", "retention", "bigru", "sliding_window_attention", "graphsage",
)


def load(name: str) -> ModuleType:
    """The model module `examples.<name>`."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; the zoo has: {', '.join(MODELS)}")
    return importlib.import_module(f"examples.{name}")


def available() -> list[str]:
    """Models whose module exists (the zoo grows one module at a time)."""
    out = []
    for name in MODELS:
        try:
            load(name)
        except ModuleNotFoundError as e:
            if e.name != f"examples.{name}":
                raise
            continue
        out.append(name)
    return out


def ragged_lengths(n: int, batch: int, ragged: bool, seed: int) -> list[int]:
    """Per-sample lengths: all `n`, or random in [n/2, n] when ragged (the first sample always
    has the full length, so the longest is `n`)."""
    if not ragged:
        return [n] * batch
    rng = np.random.default_rng(seed + 1)
    lengths = rng.integers(max(1, n // 2), n + 1, size=batch)
    lengths[0] = n
    return [int(v) for v in lengths]


def lengths_for(config: dict, ragged: bool, seed: int) -> list[int]:
    """Sequence lengths for a config with `length` and `batch` (see `ragged_lengths`)."""
    return ragged_lengths(config["length"], config["batch"], ragged, seed)


def max_abs_error(got, want) -> float:
    """Largest absolute difference between two equally nested structures of arrays."""
    if isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            raise ValueError(f"structure differs: {type(got).__name__} of {len(got)} vs "
                             f"{type(want).__name__} of {len(want)}")
        return max((max_abs_error(g, w) for g, w in zip(got, want)), default=0.0)
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        raise ValueError(f"shape differs: {got.shape} vs {want.shape}")
    return float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)), initial=0.0))


def tolerance(dtype) -> float:
    """Agreement expected between fractal and an independent reference."""
    return 1e-9 if np.dtype(dtype) == np.float64 else 2e-4


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def arguments(m: ModuleType, dtype=np.float32):
    """A hypothesis strategy of `m.inputs(config, dtype=dtype, seed=..., ragged=...)` tuples,
    the config drawn from `m.SIZES` (shrinking to each size's first value, a seed of 0, and
    regular batches): what `ft.testing.check(m.model, m.reference, arguments=...)` takes."""
    from hypothesis import strategies as st  # (the testing extra; not needed to run the zoo)

    config = st.fixed_dictionaries({k: st.sampled_from(v) for k, v in m.SIZES.items()})
    return st.builds(lambda cfg, seed, ragged: m.inputs(cfg, dtype=dtype, seed=seed, ragged=ragged),
                     config, st.integers(0, 2 ** 16), st.booleans())
