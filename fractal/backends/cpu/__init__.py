"""The CPU backend: runs tile programs with NumPy, one batched call per tile op and stage.

    exe = CpuExecutable(program)                  # program verified; consts hold their data
    outputs = exe.run(inputs, profile=None)       # {output buffer name: array}

Modules: `executor` (statements to closures, storage, argument checks), `views` (regions
over a stage box as strided views, fancy indexing otherwise), `ops` (one rule per tile op),
`elementwise` (expressions computed into dst and reused scratch), `rows` (gathers and
scatters as one take/assignment of whole rows), `gemm` (batched GEMM that folds shared
operands into single BLAS calls), `scan` (sequential loops that are scans, as one
accumulate), `indices` (indices compiled to Python functions), `threads` (big stages cut
over the cores).
"""

from .executor import CpuExecutable

__all__ = ["CpuExecutable"]
