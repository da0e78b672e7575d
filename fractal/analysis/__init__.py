"""The ETDG and its analyses: nested parallelism, wavefronts hidden behind folds and scans, reuse.

    a = f.analyze(*args)        # an `Analysis`: a.etdg (the graph), a.blocks (per combinator nest)
    print(ft.explain(f, *args)) # the same in words

Modules: `refs` (symbolic references and the access maps of access operators),
`etdg` (the graph), `build` (program -> ETDG), `dependences`, `wavefront`,
`reuse`, `analysis` (the per-block results), `explain` (reports).
"""

from .analysis import Analysis, BlockAnalysis, analyze
from .etdg import ETDG, Access, Block, Buffer, Dim, OpNode
from .explain import Explanation, explain
from .wavefront import Wavefront

__all__ = ["Analysis", "BlockAnalysis", "analyze", "ETDG", "Access", "Block", "Buffer", "Dim", "OpNode",
           "Explanation", "explain", "Wavefront"]
