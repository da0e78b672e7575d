"""A compilation target: the hardware record, the backend that runs it and its cost policy.

The pipeline reads everything it decides from the `Target` it is given, never from the
machine it runs on, so the same program, sizes and target give byte-identical tile IR text
anywhere.  Targets are built by `fractal.targets` (`ft.targets.host()`, named presets such as
`ft.targets.get("cpu-generic")`, `ft.targets.cpu(l2=..., ...)`); printed, a target shows
every number the compiler uses and where it came from::

    cpu-generic (backend cpu): generic x86-64 server core (documented estimates)
      hardware: ...
      policy: CpuPolicy(blas_rows=8, ...)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .hardware import Hardware
from .policy import CostPolicy


@dataclass(frozen=True)
class Target:
    """What the compiler compiles for: `backend` names the registered backend that runs it."""

    name: str
    backend: str
    hardware: Hardware
    policy: CostPolicy
    source: str = field(default="", compare=False)  # where the numbers come from

    def __str__(self) -> str:
        head = f"{self.name} (backend {self.backend})" + (f": {self.source}" if self.source else "")
        hw = "\n".join("    " + line for line in str(self.hardware).splitlines())
        return f"{head}\n  hardware:\n{hw}\n  policy: {self.policy!r}"
