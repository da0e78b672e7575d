"""The Extended Task Dependence Graph: buffers, nested blocks, operations, access maps.

* A `Buffer` is a FractalTensor-shaped store: a program input, an intermediate
  list a combinator produces (indexed by the iteration variables of the nest
  that writes it), a scan/fold state, or a constant.
* A `Block` is a combinator nest: one `Dim` per map/scan/fold/reduce level,
  outermost first; blocks nest like the program's regions.
* An `OpNode` is a tensor operation of a block's body.
* An `Access` is an edge between a block and a buffer with an exact
  quasi-affine access map (isl syntax) from the block's iteration space to
  buffer indices.

Printed (`str(etdg)`), the stacked LSTM reads (abridged)::

    buffer batch: input f32[1,8] [3, 5]
    buffer %30: state f32[1,8] [2, 3, 5]  written by block 0
    block 0: fold0(params.w)=2 map1(batch)=3 scan2(batch.1)=5
      op 0 matmul  examples/stacked_lstm.py:38
      ...
      read  batch  { [i0, i1, i2] -> [i1, i2] : i0 = 0 and ... }
      read  %30    { [i0, i1, i2] -> [i0 - 1, i1, i2] : i0 > 0 and ... }
      write %30    { [i0, i1, i2] -> [i0, i1, i2] : ... }
"""

from __future__ import annotations

import html
import shutil
import subprocess
from dataclasses import dataclass, field

from ..lang.errors import SourceLoc
from ..lang.types import TensorType


@dataclass(frozen=True)
class Dim:
    """One level of a combinator nest: `kind` in {"map", "scan", "fold", "reduce"}."""

    name: str
    kind: str
    extent: int
    source: str = ""        # the list it iterates, e.g. "batch.1" (level 1 of input batch)
    ragged: bool = False    # the extent is a per-sample bound (the maximum is shown)
    reverse: bool = False

    def __str__(self) -> str:
        return f"{self.name}({self.source})={self.extent}{'~' if self.ragged else ''}"


@dataclass(frozen=True)
class Buffer:
    name: str
    kind: str               # "input", "intermediate", "state", "const", "output"
    leaf: TensorType | None
    extents: tuple[int, ...]
    ragged: tuple[bool, ...] = ()
    label: str = ""         # what it is in the user's terms: `batch`, `map(batch)`, `tanh(...)`

    def __str__(self) -> str:
        return f"buffer {self.name}: {self.kind} {self.leaf} {list(self.extents)}"


@dataclass(frozen=True)
class OpNode:
    id: int
    op: str
    block: int | None
    loc: SourceLoc


@dataclass(frozen=True)
class Access:
    """An edge: `block` (or an op of it) reads or writes `buffer` through `map`."""

    block: int | None
    buffer: str
    kind: str               # "read" or "write"
    map: str                # isl map text, iteration space -> buffer indices
    op: int | None = None
    data_dependent: bool = False  # indices known only at run time
    carried: bool = False   # a scan/fold state read (the previous step's value)
    per_sample: bool = False  # positions depend on each ragged list's length (the map uses the longest)


@dataclass(frozen=True)
class Block:
    id: int
    dims: tuple[Dim, ...]
    parent: int | None
    loc: SourceLoc
    ops: tuple[int, ...] = ()
    children: tuple[int, ...] = ()


@dataclass(frozen=True)
class ETDG:
    name: str
    buffers: tuple[Buffer, ...]
    blocks: tuple[Block, ...]
    ops: tuple[OpNode, ...]
    accesses: tuple[Access, ...]
    outputs: tuple[str, ...] = field(default=())

    def buffer(self, name: str) -> Buffer:
        return next(b for b in self.buffers if b.name == name)

    def block_accesses(self, block: int, subtree: bool = False) -> list[Access]:
        ids = self.subtree(block) if subtree else {block}
        return [a for a in self.accesses if a.block in ids]

    def subtree(self, block: int) -> set[int]:
        out, todo = set(), [block]
        while todo:
            b = todo.pop()
            out.add(b)
            todo.extend(self.blocks[b].children)
        return out

    def __str__(self) -> str:
        lines = [f"etdg @{self.name}"]
        writers = {a.buffer: a.block for a in self.accesses if a.kind == "write"}
        for b in self.buffers:
            by = f"  written by block {writers[b.name]}" if b.name in writers else ""
            lines.append(f"  {b}{by}")
        # ops and accesses outside every combinator (block None) come first, as "top level"
        top = [op.id for op in self.ops if op.block is None]
        sections = [("  top level", top, None)] if top or self.block_accesses(None) else []
        for blk in self.blocks:
            parent = f" in block {blk.parent}" if blk.parent is not None else ""
            sections.append((f"  block {blk.id}: {' '.join(map(str, blk.dims))}{parent}", blk.ops, blk.id))
        for head, ops, block in sections:
            lines.append(head)
            for op_id in ops:
                op = self.ops[op_id]
                lines.append(f"    op {op.id} {op.op}  {op.loc.file}:{op.loc.line}")
            for a in self.block_accesses(block):
                flags = " (data-dependent)" if a.data_dependent else " (carried state)" if a.carried else \
                    " (per-sample)" if a.per_sample else ""
                lines.append(f"    {a.kind:<5} {a.buffer} {a.map}{flags}")
        return "\n".join(lines)

    # -- drawing ---------------------------------------------------------------------------
    def to_dot(self) -> str:
        """Graphviz DOT: blocks as nested clusters, buffers as ellipses, accesses as edges."""
        out = [f'digraph "{self.name}" {{', "  rankdir=LR; node [fontsize=10]; edge [fontsize=8];"]
        for b in self.buffers:
            shape = "doublecircle" if b.name in self.outputs else "ellipse"
            out.append(f'  "{b.name}" [shape={shape}, label="{b.name}\\n{b.leaf} {list(b.extents)}"];')

        def cluster(blk: Block, indent: str):
            dims = " x ".join(f"{d.kind} {d.name} [{d.extent}]" for d in blk.dims)
            out.append(f'{indent}subgraph cluster_{blk.id} {{ label="block {blk.id}: {dims}"; style=dashed;')
            out.append(f'{indent}  "block{blk.id}" [shape=hexagon, label="block {blk.id}"];')
            for op_id in blk.ops:
                out.append(f'{indent}  "op{op_id}" [shape=box, label="{self.ops[op_id].op}"];')
            for child in blk.children:
                cluster(self.blocks[child], indent + "  ")
            out.append(f"{indent}}}")

        for blk in self.blocks:
            if blk.parent is None:
                cluster(blk, "  ")
        for a in self.accesses:
            node = f"block{a.block}" if a.block is not None else "top"
            label = a.map.replace('"', "'")
            style = ", style=dotted, color=red" if a.data_dependent else ", style=dashed" if a.carried else ""
            src, dst = (a.buffer, node) if a.kind == "read" else (node, a.buffer)
            out.append(f'  "{src}" -> "{dst}" [label="{label}"{style}];')
        out.append("}")
        return "\n".join(out)

    def to_svg(self) -> str | None:
        """The drawing as SVG when Graphviz (`dot`) is installed, else None."""
        dot = shutil.which("dot")
        if dot is None:
            return None
        done = subprocess.run([dot, "-Tsvg"], input=self.to_dot(), capture_output=True, text=True, timeout=60)
        return done.stdout if done.returncode == 0 else None

    def _repr_svg_(self):
        return self.to_svg()

    def _repr_html_(self) -> str:
        svg = self.to_svg()
        return svg if svg is not None else f"<pre>{html.escape(str(self))}</pre>"
