"""The emulated device: a module's CUDA C++ compiled by the host C++ compiler against
`cuda_emu.h` and launched on the CPU (`fractal.backends.cuda.emulation`).

Every launch runs twice, the blocks and threads in opposite orders, on copies of the
buffers, and the results are compared (`EmulatedModule.launch`): a race between blocks or a
missing `__syncthreads` in generated code fails the run with the kernel and the element,
instead of giving a plausible answer.  Buffers are NumPy arrays; the emulation is one
process-wide machine, so launches from several threads take turns.
"""

from __future__ import annotations

import threading

import numpy as np

from .emulation import EmulatedModule

_LOCK = threading.Lock()  # cuda_emu.h keeps the running launch in globals


class _Loaded:
    def __init__(self, module: EmulatedModule, device: "EmulatedDevice"):
        self.module, self.device = module, device

    def launch(self, kernel: str, blocks: int, threads: int, args, cooperative: bool = False) -> None:
        if cooperative:  # (a persistent kernel deals its points to however many blocks run)
            blocks = min(blocks, self.device.max_cooperative_blocks)
        with _LOCK:
            self.module.launch(kernel, blocks, threads, args, shuffle_seed=self.device.shuffle_seed,
                               check=self.device.check, cooperative=cooperative)


class EmulatedDevice:
    """`check=False` runs each launch once (no race check); `shuffle_seed` orders the blocks.
    A cooperative launch (a loop's persistent kernel) runs at most `max_cooperative_blocks`
    blocks: each is a template instance the host compiler builds."""

    name = "cuda-emulated"
    max_cooperative_blocks = 4
    xp = np  # its device memory is host memory: its arrays are NumPy arrays

    def __init__(self, check: bool = True, shuffle_seed: int = 0):
        self.check, self.shuffle_seed = check, shuffle_seed

    def load(self, source: str, kernels: dict[str, int]) -> _Loaded:
        cap = self.max_cooperative_blocks
        return _Loaded(EmulatedModule(source, {k: max(1, min(n, cap)) for k, n in kernels.items()}), self)

    def to_device(self, array: np.ndarray, name: str = "") -> np.ndarray:
        return np.array(array, copy=True, order="C")

    def zeros(self, size: int, dtype, name: str = "") -> np.ndarray:
        return np.zeros(size, dtype)

    def to_host(self, array: np.ndarray) -> np.ndarray:
        return np.array(array, copy=True)

    def adopt(self, value) -> None:
        """None: every input is copied in (so a run never writes a caller's array), and a
        GPU's array is no array of this device (`Compiled.run` says so)."""
        return None
