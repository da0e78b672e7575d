"""The ETDG and its analyses: nested parallelism, wavefronts hidden behind folds and scans, reuse.

    a = ft.analyze(f, *args)    # an `Analysis`: a.etdg (the graph), a.blocks (per combinator nest)
    print(ft.explain(f, *args)) # the same in words
    analyze_program(program, flat_args)   # the same for a traced program

Modules: `refs` (symbolic references and the access maps of access operators),
`etdg` (the graph), `build` (program -> ETDG), `dependences`, `wavefront`,
`reuse`, `analysis` (the per-block results), `report` (them in words), `explain`
(`ft.explain`).
"""

from .analysis import Analysis, BlockAnalysis, analyze, analyze_program
from .etdg import ETDG, Access, Block, Buffer, Dim, OpNode
from .explain import Explanation, explain
from .wavefront import Wavefront

__all__ = ["Analysis", "BlockAnalysis", "analyze", "analyze_program", "ETDG", "Access", "Block", "Buffer", "Dim", "OpNode",
           "Explanation", "explain", "Wavefront"]
