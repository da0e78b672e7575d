"""The analysis of a traced program: per block, dims, dependences, parallelism, wavefront, reuse.

    a = ft.analyze(f, *args)     # or analyze_program(program, flat_args)
    b = a.blocks[0]
    b.dims          # (Dim('fold0', 'fold', 8), Dim('map1', 'map', 64), Dim('scan2', 'scan', 64))
    b.dependences   # frozenset({(1, 0, 0), (0, 0, 1)})
    b.parallel      # (1,)
    b.wavefront     # Wavefront(matrix=((1, 0, 1), (1, 0, 0), (0, 1, 0)), steps=71, max_parallelism=512)
    b.reuse         # {'params.w': (1, 2), ...}
"""

from __future__ import annotations

from dataclasses import dataclass

from ..lang.errors import FractalTypeError
from ..lang.function import Function
from ..lang.ir import Program
from .build import Builder
from .dependences import carrying_dim, distance_vectors, external_vectors
from .etdg import ETDG, Block, Dim
from .report import explain_html, explain_text
from .reuse import reuse
from .wavefront import Wavefront, find_wavefront


@dataclass(frozen=True)
class BlockAnalysis:
    block: Block
    dims: tuple[Dim, ...]
    dependences: frozenset          # internal and external, aligned with dims
    dependences_truncated: bool
    external: frozenset             # on writes of other blocks, over the shared dims (zero-padded)
    parallel: tuple[int, ...]
    reassociable: tuple[int, ...]
    wavefront: Wavefront | None
    reuse: dict

    @property
    def carried(self) -> dict[int, list[tuple[int, ...]]]:
        """dim index -> the distance vectors it carries."""
        out: dict[int, list] = {}
        for v in sorted(self.dependences):
            out.setdefault(carrying_dim(v), []).append(v)
        return out

    @property
    def ragged(self) -> tuple[int, ...]:
        """Dims whose extent differs per sample (the analysis used the maximum)."""
        return tuple(k for k, d in enumerate(self.dims) if d.ragged)


@dataclass(frozen=True)
class Analysis:
    program: Program
    etdg: ETDG
    blocks: tuple[BlockAnalysis, ...]

    def __str__(self) -> str:
        return explain_text(self)

    def _repr_html_(self) -> str:
        return explain_html(self)


def analyze(f: Function, *args, _caller: str = "ft.analyze", **kwargs) -> Analysis:
    """`ft.analyze(f, *args)`: the analysis of `@ft.function` `f` for these arguments, which fix
    the types and the sizes (list lengths) the analysis works with."""
    if not isinstance(f, Function):
        raise FractalTypeError(f"{_caller} takes an @ft.function, got {type(f).__name__} {f!r:.60}; "
                               f"decorate it with @ft.function or wrap it: {_caller}(ft.function(f), ...)")
    program, _, leaves = f.traced(args, kwargs)
    return analyze_program(program, leaves)


def analyze_program(program: Program, args) -> Analysis:
    """Build the ETDG of `program` for the flat argument values `args` and analyse every block."""
    etdg = Builder(program, args).build()
    blocks = []
    for blk in _preorder(etdg):
        internal, cut = distance_vectors(etdg, blk.id)
        external = frozenset(external_vectors(etdg, blk.id))
        vectors = internal | external
        carriers = {carrying_dim(v) for v in vectors}
        parallel = tuple(k for k in range(len(blk.dims)) if k not in carriers)
        reassoc = tuple(k for k, d in enumerate(blk.dims) if d.kind == "reduce")
        # a skew is only derived from dependences known element by element: an external one
        # stands for "the other block's whole inner loops", which a per-block skew cannot honour
        wave = None if cut or external else find_wavefront(internal, [d.extent for d in blk.dims])
        blocks.append(BlockAnalysis(blk, blk.dims, vectors, cut, external, parallel, reassoc, wave,
                                    reuse(etdg, blk.id)))
    return Analysis(program, etdg, tuple(blocks))


def _preorder(etdg: ETDG):
    def visit(b: Block):
        yield b
        for c in b.children:
            yield from visit(etdg.blocks[c])
    for b in etdg.blocks:
        if b.parent is None:
            yield from visit(b)
