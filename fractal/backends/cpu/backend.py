"""The `cpu` backend: tile programs run with NumPy and BLAS (`CpuExecutable`), for CPU targets
(`machines`: presets and custom records; `host`: this machine, the default)."""

from __future__ import annotations



from fractal.lower.target import Target

from .executor import CpuExecutable
from .host import host_spec
from .machines import PRESETS, cpu_target
from .policy import CpuPolicy


def host_target() -> Target:
    """This machine (`fractal.backends.cpu.host`)."""
    return cpu_target(host_spec())


class CpuBackend:
    name = "cpu"
    description = "NumPy/BLAS on this machine's cores: one batched call per tile op and stage"
    consumes = "tile"

    def default_target(self) -> Target:
        return host_target()

    def targets(self):
        out = {"host": host_target}
        out.update({name: (lambda name=name: cpu_target(name)) for name in PRESETS})
        return out

    def build(self, program, target: Target) -> CpuExecutable:
        policy = target.policy if isinstance(target.policy, CpuPolicy) else CpuPolicy()
        return CpuExecutable(program, split_elements=policy.split_elements)



