"""The mesh cost policy: a mesh's answers to the passes' "is it worth it?", and its machine.

A mesh target carries its `MeshSpec` here (the planner reads it; the `Hardware` record the
passes read is derived from it by `mesh_hardware`).  The pass rules follow from how the
planner runs a stage, all its points spread over the PEs at once:

* batch across: always, except a recurrent statement (a stacked RNN's layer below), which the
  wavefront pass weighs instead: more points per stage fill more PEs, and a mesh pays a
  superstep (a barrier and a round trip through the homes) per stage run;
* sink into: never (it trades a parallel nest for per-step stages: more supersteps);
* tile rows: never (None): a stage's points are spread over the PEs and cut into rounds that
  fit the SRAM by the planner itself;
* choose schedule: the legal schedule with the fewest sequential steps (each is at least one
  superstep);
* roll final states: never (the reduce planner needs every state of a reduce its own rows).
"""

from __future__ import annotations

from dataclasses import dataclass

from fractal.lower.hardware import Hardware, pe_mesh
from fractal.lower.policy import SpreadPolicy

from .spec import MeshSpec


@dataclass(frozen=True)
class MeshPolicy(SpreadPolicy):
    spec: MeshSpec

    def roll_final_states(self, hw: Hardware) -> bool:
        """No: the reduce planner (`plan_reduce`) finds which of a reduce's states other ops
        read from the elements each step writes, which needs every state its own rows."""
        return False

    def __repr__(self) -> str:
        return "MeshPolicy, machine:\n" + "\n".join("    " + line for line in str(self.spec).splitlines())


def mesh_hardware(spec: MeshSpec) -> Hardware:
    """The `Hardware` record the passes read, from the mesh's numbers."""
    ghz = spec.clock_hz / 1e9
    return pe_mesh(spec.rows, spec.cols, sram_kib=spec.sram_bytes / 1024, link_gbs=spec.link_bytes_per_cycle * ghz,
                   reserved_kib=spec.reserved_bytes / 1024, hop_latency_cycles=spec.hop_latency_cycles,
                   clock_ghz=ghz, flops_per_cycle=spec.rate("float32"),
                   sram_bytes_per_cycle=spec.sram_bytes_per_cycle, name=spec.name)
