"""Lowering: the shared tile IR that every backend consumes (cpu, CUDA, dataflow).

So far: the tile IR itself — nodes (`tile_ir`, `tile_affine`, `tile_expr`), its text form
(`tile_printer`, `tile_ir.lark`, `tile_parser`) and `verify()` (`tile_verify`).  The passes
(schedule, coarsening, data reordering, access materialisation, tiling), hardware records and
the CPU backend come next (issue 5); nothing lowers a program to tile IR yet.
"""

from .tile_affine import Aff, FloorDiv, Max, Min, Mod, aff, amax, amin, floordiv, mod
from .tile_expr import Binary, Const, Load, Region, Unary, Where
from .tile_ir import (Buffer, Convert, Copy, Dim, Elementwise, Gather, Gemm, If, Loop, Reduce, Scatter, Stage,
                      TileProgram)
from .tile_parser import parse_index, parse_region, parse_tile_program
from .tile_printer import print_tile_program
from .tile_verify import verify_tile_program

__all__ = ["Aff", "FloorDiv", "Max", "Min", "Mod", "aff", "amax", "amin", "floordiv", "mod", "Binary", "Const",
           "Load", "Region", "Unary", "Where", "Buffer", "Convert", "Copy", "Dim", "Elementwise", "Gather", "Gemm",
           "If", "Loop", "Reduce", "Scatter", "Stage", "TileProgram", "parse_index", "parse_region",
           "parse_tile_program", "print_tile_program", "verify_tile_program"]
