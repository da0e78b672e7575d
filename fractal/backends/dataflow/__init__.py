"""The dataflow backend: tile programs on a mesh of PEs with private SRAM (issue 19).

    t = ft.targets.mesh(8, 8, preset="wse2")          # spec: MeshSpec and its presets
    compiled = f.compile(*args, target=t)             # backend: plan, verify, run
    compiled.run(*args, executor="bsp" | "event" | "mpi", ranks=4)
    compiled.report, compiled.source                  # cost.CostSummary; the mesh program's text

The modules, in the order the data flows:

* the machine: `spec` (MeshSpec, presets, provenance), `policy` (the passes' rules, the Hardware
  record), `routes` (XY routes, ring embeddings), `cost` (roofline, message cost, CostSummary);
* the mesh IR: `mesh_ir` (nodes), `mesh_printer` / `mesh_ir.lark` / `mesh_parser` (text form),
  `mesh_verify` and `mesh_resources` (rules, SRAM walk, channels), `collectives` (as sends);
* the planner: `plan` (homes, statements), `home` (block layouts), `plan_copy`, `plan_gemm` and
  `gemm_choice` (product stages), `plan_window` and `residency` (every other stage), `split`
  (a product too big for one PE, cut into blocks);
* the executors: `bsp` with `messages` and `traffic` (the default), `event` with `streams` and
  `waitfor`, `mpi` with `blocked`, `run` and `plan_file`; `local` is one PE's semantics and
  `host` the host arrays every executor starts from (the inputs checked);
* `report` (JSON, table, heat maps), `errors`, `backend` (the registry's entry).
"""

from . import mesh_printer  # noqa: F401  (gives the mesh IR's nodes their text form: `str(program)`)
