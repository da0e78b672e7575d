"""The CUDA backend's cost policy: the answers a GPU gives to the passes' "is it worth it?".

The rules are structural, not measured (no GPU has timed them yet: `benchmarks/gpu_check.py`
will, issue 18): each follows from how a GPU runs a stage, as one kernel launch whose
grid covers the stage's points, and reads nothing but the facts and the hardware record.

* batch across: always, except a recurrent statement (a stacked RNN's layer below).  A batched
  statement is one launch over `steps * points` points instead of `steps` launches (or grid-wide
  barriers) over `points`; more points fill more SMs, and a weight shared by the steps becomes
  one GEMM with `steps` times the rows, the shape tensor cores need.  (The CPU's reason to keep
  a step in cache does not apply: a GPU stage streams.)  A recurrent one is left to the
  wavefront pass, which weighs the batched schedule against the wavefront (below): the
  persistent wavefront kernel is the paper's win on a GPU.
* sink into: never.  Sinking trades a parallel nest for per-step work inside a sequential loop,
  which on a GPU is a launch or a grid barrier per step with fewer points each.
* tile rows: never (None).  Stages are not cut into host-side row blocks: the emitter tiles a
  stage into thread blocks itself, from the record's shared memory and MMA shapes.
* choose schedule: the legal schedule with the fewest sequential steps (each step is a grid-wide
  barrier or a launch, the dominant cost of a recurrence on a GPU); ties to the first listed.
* loop on device: a sequential loop of two or more steps whose stages the emitter can run in
  one persistent kernel (`device_loop.qualifies`) runs there when every step's points fit in
  the blocks the GPU holds at once (a cooperative launch needs them all resident): a grid-wide
  barrier costs about a microsecond, a launch from the host several.  Otherwise the host
  launches each stage per step, as many blocks as it has points.
"""

from __future__ import annotations

from dataclasses import dataclass

from fractal.lower.hardware import Hardware
from fractal.lower.policy import SpreadPolicy


@dataclass(frozen=True)
class DeviceLoopFacts:
    """A sequential loop the emitter could run as one persistent kernel: its steps (None where
    they depend on an enclosing loop) and the most points one of its stages has in a step."""

    steps: int | None
    max_points: int
    threads: int


@dataclass(frozen=True)
class CudaPolicy(SpreadPolicy):
    """The GPU cost policy (the module docstring gives each rule's reason).  `tf32`: float32
    GEMMs may run on tensor cores in TF32 (10 mantissa bits per operand, fp32 accumulation),
    the user's choice (`ft.targets.cuda(..., tf32=True)`), as in PyTorch and JAX."""

    tf32: bool = False

    def loop_on_device(self, facts: DeviceLoopFacts, hw: Hardware) -> bool:
        return (facts.steps is None or facts.steps >= 2) and facts.max_points <= resident_blocks(hw, facts.threads)


def resident_blocks(hw: Hardware, threads: int) -> int:
    """The blocks of `threads` threads the GPU holds at once (a cooperative launch's most)."""
    gpu = hw.gpu
    per_sm = min(gpu.max_blocks_per_sm, gpu.max_threads_per_sm // max(1, threads))
    return max(1, per_sm) * hw.cores
