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
writes the IR before the first pass and after each one, and notes passes that changed nothing
(`dump`: file names, an unwritable folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from fractal.lang.errors import VerifyError

from .bucket import bucket
from .coarsen import batch, fuse, merge
from .contract import contract
from .dead_points import cut_dead
from .dump import Dump
from .hoist import hoist
from .materialise import contract_storage, forward_results, trim_storage
from .merge_gemms import merge_gemms, widen_gemms
from .rolling import roll_storage
from .schedule import schedule
from .sink import sink
from .target import Target
from .tile_ir import TileProgram
from .tiling import tile
from .wavefront import wavefront


@dataclass
class PassContext:
    """What a pass gets beside the program: the target it compiles for, and notes to leave."""

    target: Target
    notes: list[str] = field(default_factory=list)  # what each pass decided, for the dump and tests


PASSES = [
    # 0. data reordering of a sum of GEMMs (a reduce adding one product per element): the
    #    blocks are laid side by side and the loop becomes one GEMM over the summed axis
    ("contract", contract),
    # 1. schedule: distribute the parallel (map) loops over their statements and sink them
    #    below the sequential loops, so every stage sits directly inside its map loops
    ("schedule", schedule),
    # 2. batch across time: statements of a sequential loop that do not carry its recurrence
    #    (the input projections of an RNN) move before it, the loop variable a batch dim
    ("hoist", hoist),
    # 3. wavefront: a nest of sequential loops is skewed onto the hyperplane of its
    #    dependences (the analysis' engine), or batched and skewed inside, or left, as the
    #    target's cost policy prices them
    ("wavefront", wavefront),
    # 4. the reverse of 2: a parallel nest reading each step's (big) result of a sequential
    #    loop, with no operand shared by the steps, runs inside it, reading it from cache
    ("sink", sink),
    # 5-9. graph coarsening: map loops around a stage become its batch dims; stages with
    #    the same dims that meet point-locally merge; element-wise chains fuse into one
    #    expression; GEMMs sharing a left operand, or batched over a dim only their weights
    #    and results name, become one over side-by-side weights
    ("batch", batch),
    ("merge", merge),
    ("fuse", fuse),
    ("merge_gemms", merge_gemms),
    ("widen_gemms", widen_gemms),
    # 10. ragged batches: stages of a step of a sorted ragged batch shrink to the sequences
    #     still running (the `active` prefix the lowering marked), as packed sequences run
    ("bucket", bucket),
    # 11-14. access materialisation: a temporary copied whole into a result is the result;
    #     temporaries living within one step keep one step's rows; loop-carried ones a window;
    #     every temporary only the rows from the first to the last its accesses touch
    ("forward_results", forward_results),
    ("contract_storage", contract_storage),
    ("roll_storage", roll_storage),
    ("trim_storage", trim_storage),
    # 15. tiling: big multi-op stages split into cache-sized tiles (the target's policy)
    ("tile", tile),
    # 16. ragged maps: a stage's points that compute padding no one reads (past an image's
    #     own size, a sequence's own length) are cut, where the policy finds the polygon worth it
    ("cut_dead", cut_dead),
]


def verify_requested() -> bool:
    """Whether `FRACTAL_VERIFY=1` asks to verify the IR after every pass."""
    return os.environ.get("FRACTAL_VERIFY", "").strip() not in ("", "0")


def run_pipeline(program: TileProgram, *, target: Target, verify: bool | None = None,
                 dump: str | os.PathLike | None = None, passes=None) -> tuple[TileProgram, PassContext]:
    """The passes in order (`passes`, default `PASSES`) for `target`; verified after each pass
    when `verify` (default: `FRACTAL_VERIFY=1`), a failure naming the pass."""
    ctx = PassContext(target)
    verify = verify_requested() if verify is None else verify
    out = Dump(dump if dump is not None else os.environ.get("FRACTAL_DUMP_IR"), program, target)
    if out.folder is not None:
        out.write(0, "lowered", str(program) + "\n")
    if verify:
        _verified(program, "the lowering", ctx)
    for k, (name, run) in enumerate(passes if passes is not None else PASSES, 1):
        before = program
        program = run(program, ctx)
        if verify:
            _verified(program, f"pass {name}", ctx)
        if out.folder is not None:
            out.write(k, name, str(program) + "\n" if program != before else f"// {name}: (unchanged)\n")
    return program, ctx


def _verified(program: TileProgram, after: str, ctx: PassContext) -> None:
    try:
        program.verify()
    except VerifyError as e:
        raise VerifyError(f"after {after}: {e.message}", loc=e.loc) from None
