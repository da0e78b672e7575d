"""The lowering pipeline: program IR -> first tile IR -> the paper's transformations.

    lowered = lower_program(program, args)                  # fractal.lower.lower_program
    tile, ctx = run_pipeline(lowered.program, verify=True)  # the passes below, in order

Two of the paper's transformations happen while lowering, where list structure is still
known: *data reordering* (rows laid out `[sequential dims, map dims]`, the paper's
`[depth, length, batch, hidden]`, so a stage's batch is contiguous; a ragged batch sorted
by length, so a step's live sequences are a prefix (`lower_ragged`); a fold's list state kept
in the buffer its steps write; padded windows read from one padded copy) and the view-or-
gather half of *access materialisation* (a list element whose rows are affine in the loop
variables is a strided view, any other one a gather through a constant table).

Each pass is a pure function `(TileProgram, PassContext) -> TileProgram`; the program holds
all its data (const buffers declare theirs), so a pass that adds a table adds a const buffer
with it, and the context carries only the hardware and the notes.  Under tests
(`verify=True`) the IR is verified after every pass; `FRACTAL_DUMP_IR=<dir>` (or `dump=`)
writes the IR before the first pass and after each one, and notes passes that changed nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .bucket import bucket
from .coarsen import coarsen
from .contract import contract
from .hardware import Hardware, this_cpu
from .hoist import hoist
from .materialise import materialise
from .schedule import schedule
from .sink import sink
from .tile_ir import TileProgram
from .tiling import tile
from .wavefront import wavefront


@dataclass
class PassContext:
    hardware: Hardware
    notes: list[str] = field(default_factory=list)  # what each pass decided, for the dump and tests


PASSES = [
    # 0. data reordering of a sum of GEMMs (a reduce adding one product per element): the
    #    blocks are laid side by side and the loop becomes one GEMM over the summed axis
    ("contract", contract),
    # 1. schedule: distribute the parallel (map) loops over their statements and sink them
    #    below the sequential loops, so every stage sits directly inside its map loops
    ("schedule", schedule),
    # 1b. batch across time: stages of a sequential loop that read nothing the loop writes
    #    (the input projections of an RNN) move before it, the loop variable a batch dim
    ("hoist", hoist),
    # 1c. wavefront: a nest of two sequential loops whose dependences all point forward
    #    along the anti-diagonal (a stacked RNN) becomes one loop over the diagonals
    ("wavefront", wavefront),
    # 1d. the reverse of 1b: a parallel nest reading each step's (big) result of a sequential
    #    loop, with no operand shared by the steps, runs inside it, reading it from cache
    ("sink", sink),
    # 2. graph coarsening: map loops around a stage become its batch dims; stages with the
    #    same dims and point-local dependences merge; element-wise chains fuse into one
    #    expression; a gemm's `+` epilogue becomes an accumulating gemm
    ("coarsen", coarsen),
    # 2b. ragged batches: stages of a step of a sorted ragged batch shrink to the sequences
    #    still running (the `active` prefix the lowering marked), as packed sequences run
    ("bucket", bucket),
    # 3. access materialisation: temporaries only live within one step of a sequential loop
    #    keep one step's rows (storage contraction)
    ("materialise", materialise),
    # 4. tiling: big multi-op stages split into cache-sized tiles (from the hardware record)
    ("tile", tile),
]


def run_pipeline(program: TileProgram, *, hardware: Hardware | None = None, verify: bool = False,
                 dump: str | os.PathLike | None = None, passes=None) -> tuple[TileProgram, PassContext]:
    ctx = PassContext(hardware or this_cpu())
    dump = dump if dump is not None else os.environ.get("FRACTAL_DUMP_IR")
    out = Path(dump) if dump else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{program.name}.00-lowered.tile").write_text(str(program) + "\n")
    if verify:
        program.verify()
    for k, (name, run) in enumerate(passes if passes is not None else PASSES, 1):
        before = program
        program = run(program, ctx)
        if verify:
            program.verify()
        if out is not None:
            text = str(program) + "\n" if program != before else f"// {name}: (unchanged)\n"
            (out / f"{program.name}.{k:02d}-{name}.tile").write_text(text)
    return program, ctx
