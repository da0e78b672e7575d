"""The `dataflow` backend: tile programs planned onto a mesh of PEs and run on its simulator.

    t = ft.targets.mesh(8, 8, preset="wse2")        # a machine (fractal.backends.dataflow.spec)
    compiled = f.compile(*args, target=t)           # traced, lowered, planned (plan.plan)
    compiled.run(*args)                             # on the BSP simulator (bsp.run_bsp)
    compiled.run(*args, executor="event")           # on the event-driven simulator (event.run_event)
    compiled.run(*args, executor="mpi", ranks=4)    # for real, on 4 MPI ranks (mpi.run_mpi)
    compiled.report                                 # what the plan costs (cost.CostSummary)

A run's outputs are the simulator's, exact; its costs are the plan's, which do not depend on
the data: `report` is the BSP engine's summary of one run, computed once per compiled plan.
"""

from __future__ import annotations

import threading

import numpy as np

from fractal.lang.errors import ArgumentError
from fractal.lower.target import Target

from .bsp import run_bsp
from .event import run_event
from .mpi import run_mpi
from .mesh_ir import MeshProgram
from .mesh_printer import print_mesh
from .mesh_verify import verify_mesh
from .plan import plan
from .policy import MeshPolicy, mesh_hardware
from .spec import PRESETS, mesh_spec

# Named targets: each preset at a size a laptop plans in seconds (wse2's own grid has 745k PEs).
NAMED = {"mesh-tiny": ("tiny", None, None), "ipu_mk2": ("ipu_mk2", None, None), "ipu_mk1": ("ipu_mk1", None, None),
         "wse2-64x64": ("wse2", 64, 64), "wse3-64x64": ("wse3", 64, 64), "wormhole": ("wormhole", None, None)}


def mesh_target(rows: int | None = None, cols: int | None = None, preset: str = "tiny", *, name: str | None = None,
                **numbers) -> Target:
    """A target for the `dataflow` backend: `preset`'s machine as rows x cols PEs, any `MeshSpec`
    field replaced by a keyword."""
    spec = mesh_spec(rows, cols, preset, name=name, **numbers)
    return Target(spec.name, "dataflow", mesh_hardware(spec), MeshPolicy(spec),
                  f"a {spec.rows}x{spec.cols} {spec.kind} of PEs, the {preset} preset's numbers (each with its source below)")


EXECUTORS = ("bsp", "event", "mpi")


class DataflowExecutable:
    """A planned program: `run` on an executor, `report` its costs, `source` its mesh IR."""

    def __init__(self, program: MeshProgram):
        self.program = program
        self._report = None
        self.event_report = None     # the event engine's summary of its last run
        self.mpi_seconds = None      # rank 0's wall time of the last MPI run
        self._lock = threading.Lock()

    @property
    def spec(self):
        return self.program.spec

    @property
    def source(self) -> str:
        """The mesh program's text (`mesh_printer`; `mesh_parser.parse_mesh` reads it back)."""
        return print_mesh(self.program)

    def run(self, inputs, profile: dict | None = None, executor: str = "bsp", ranks: int | None = None,
            timeout: float | None = None) -> dict:
        if executor not in EXECUTORS:
            raise ArgumentError(f"unknown executor {executor!r}; the dataflow backend runs on {', '.join(EXECUTORS)}")
        if ranks is not None and executor != "mpi":
            raise ArgumentError(f"ranks={ranks}: only the 'mpi' executor runs on ranks (executor={executor!r})")
        if timeout is not None and executor != "mpi":
            raise ArgumentError(f"timeout={timeout}: only the 'mpi' executor has a time limit (executor={executor!r})")
        if executor == "bsp":
            outputs, summary = run_bsp(self.program, inputs)
            with self._lock:
                self._report = self._report or summary
        elif executor == "event":
            outputs, summary = run_event(self.program, inputs)
            with self._lock:
                self.event_report = summary
        else:
            outputs, self.mpi_seconds = run_mpi(self.program, inputs, ranks=4 if ranks is None else ranks,
                                                **({} if timeout is None else {"timeout": timeout}))
        return {k: np.asarray(v) for k, v in outputs.items()}

    @property
    def report(self):
        """The plan's costs (`cost.CostSummary`), from the BSP engine (the costs do not depend on
        the data: before any run, it costs the plan without data)."""
        with self._lock:
            if self._report is None:
                self._report = run_bsp(self.program, None)[1]
            return self._report


class DataflowBackend:
    name = "dataflow"
    description = ("a mesh of PEs with private SRAM (IPU, WSE, Tenstorrent-like): mesh programs planned from the "
                   "tile IR, run on a BSP simulator with a cost model")
    consumes = "tile"

    def default_target(self) -> Target:
        return mesh_target(4, 4, "tiny", name="mesh-tiny")

    def targets(self):
        return {name: (lambda preset=preset, r=r, c=c, name=name: mesh_target(r, c, preset, name=name))
                for name, (preset, r, c) in NAMED.items()}

    def build(self, program, target: Target) -> DataflowExecutable:
        policy = target.policy
        if not isinstance(policy, MeshPolicy):
            raise ArgumentError(f"target {target.name!r} is not a mesh (ft.targets.mesh(...) makes one)")
        program = plan(program, policy.spec)
        verify_mesh(program)   # (names, bounds, lifetimes, SRAM and channels, before anything runs)
        return DataflowExecutable(program)


__all__ = ["DataflowBackend", "DataflowExecutable", "mesh_target", "PRESETS"]
