"""Lowering: the shared tile IR that every backend consumes (cpu, CUDA, dataflow).

* the tile IR: `tile_ir` (the programs, and every node re-exported) over the nodes
  (`tile_nodes`, `tile_affine`, `tile_expr`), their text form (`tile_printer`, which also
  makes it their `str()`; `tile_ir.lark`, `tile_parser`) and `verify()` (`tile_verify`);
* from program IR to tile IR, for one set of argument sizes: `lower_program` (with
  `lower_values`, `lower_tensor_ops`, `lower_access`, `lower_combinators`, `lower_ragged`);
* the passes, run in order by `pipeline.run_pipeline` (`PASSES`, numbered there): `contract`,
  `schedule`, `hoist`, `wavefront` (with `skew`), `sink`, `coarsen` and `merge_gemms`,
  `bucket`, `materialise` and `rolling` (with `rolling_finals`), `tiling`, `dead_points`; shared
  helpers in `rewrite`;
* legality: the dependence engine `dependences` (exact, isl: `tile_isl` builds the integer
  sets, `fractal.analysis.dependences` computes on them; `table_fit` describes a constant
  table too big to list as affine pieces) and the contract every backend may
  rely on (`tile_contract`); profitability: the target's cost policy (`policy`, `workload`);
* targets as data: `target` (a hardware record, the backend that runs it and its policy),
  `hardware` (A100/H100, a PE mesh; CPUs from `fractal.backends.cpu.machines`).
"""

from .tile_affine import Aff, FloorDiv, Max, Min, Mod, aff, amax, amin, floordiv, mod
from .tile_expr import Binary, Const, Load, Region, Unary, Where
from .tile_ir import (Active, Buffer, Convert, Copy, Dim, Elementwise, Gather, Gemm, If, Loop, Reduce, Scatter,
                      SegmentReduce, Stage, TileProgram)
from .tile_parser import parse_index, parse_region, parse_tile_program
from .tile_printer import print_tile_program
from .tile_verify import verify_tile_program
from .hardware import A100_SXM_80GB, H100_SXM, Hardware, MemoryLevel, pe_mesh
from .target import Target
from .pipeline import PASSES, run_pipeline

__all__ = ["Aff", "FloorDiv", "Max", "Min", "Mod", "aff", "amax", "amin", "floordiv", "mod", "Binary", "Const",
           "Load", "Region", "Unary", "Where", "Active", "Buffer", "Convert", "Copy", "Dim", "Elementwise", "Gather", "Gemm",
           "If", "Loop", "Reduce", "Scatter", "SegmentReduce", "Stage", "TileProgram", "parse_index", "parse_region",
           "parse_tile_program", "print_tile_program", "verify_tile_program", "A100_SXM_80GB", "H100_SXM",
           "Hardware", "MemoryLevel", "pe_mesh", "Target", "PASSES", "run_pipeline"]
