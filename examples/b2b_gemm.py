"""Back-to-back GEMM `D = (A @ B) @ C` over blocked FractalTensors.

Shapes (`[M, N, K, P]` as in the paper's benchmark): `A: M x K`, `B: K x N`,
`C: N x P`, `D: M x P`; tiles `TM, TN, TK`.  The operands are blocked into
lists of tiles:

    a: ft<ft<[TM, TK]>>    row block m -> its K blocks          (A[m, k])
    b: ft<ft<[TK, TN]>>    column panel n -> its K blocks       (B[k, n], stored n-major)
    c: ft<[TN, P]>         N block n                            (C[n, :])

and the program computes, for every row block `m` of D,

    D[m] = sum_n (sum_k A[m, k] @ B[k, n]) @ C[n]

as `map` (row blocks of A) x `reduce` (N blocks: second GEMM) x `reduce` (K
blocks: first GEMM).  Both reduces add matrices, so they are associative and a
backend may split or tree-reduce them.  This is the loop nest of the fused
kernel (§9.6 of the design reference): the `[TM, TN]` tile of `A @ B` is made
by the inner reduce and consumed at once by the outer one, so the
intermediate `M x N` matrix is never materialised — it only lives inside one
step of the N reduce.

B is passed column-panel-major (`b[n][k] == B[k, n]`) so that the inner
reduce walks the K blocks of one panel; `inputs` builds it with a reshape
and transpose of the dense array.  `ragged` is ignored: the operands are
dense matrices (every row block has the same number of K blocks).
"""

from __future__ import annotations

import numpy as np

import fractal as ft

DESCRIPTION = "back-to-back GEMM (A@B)@C: row-block map x N-block reduce x K-block reduce, fused"

CONFIGS = {
    "small": dict(M=16, N=8, K=8, P=4, TM=8, TN=2, TK=4),
    "cpu": dict(M=8192, N=256, K=64, P=64, TM=128, TN=64, TK=64),
    "cpu_n512": dict(M=8192, N=512, K=64, P=64, TM=128, TN=64, TK=64),
    "cpu_m16384": dict(M=16384, N=256, K=64, P=64, TM=128, TN=64, TK=64),
    # the paper's CTA tile [TM, TN, TK, TP] = [128, 64, 64, 64]; P = TP, so C's blocks are whole rows
    "paper": dict(M=16384, N=512, K=64, P=64, TM=128, TN=64, TK=64),
    "paper_8192_256": dict(M=8192, N=256, K=64, P=64, TM=128, TN=64, TK=64),
    "paper_8192_512": dict(M=8192, N=512, K=64, P=64, TM=128, TN=64, TK=64),
    "paper_16384_256": dict(M=16384, N=256, K=64, P=64, TM=128, TN=64, TK=64),
}
# property tests draw sizes from these (`zoo.arguments`): each size's small values, simplest first
SIZES = {"M": [8, 16], "N": [2, 8], "K": [4, 8], "P": [1, 4], "TM": [8], "TN": [2], "TK": [4]}


@ft.function
def model(a, b, c):
    """a: ft<ft<[TM,TK]>> (m, k); b: ft<ft<[TK,TN]>> (n, k); c: ft<[TN,P]> (n) -> ft<[TM,P]> (m)."""
    tm = a.type.elem.elem.shape[0]
    tn, p = c.type.elem.shape
    dtype = c.type.elem.dtype

    def row_block(a_row):                       # the K blocks of one row block of A
        def ab_tile(b_panel):                   # (A @ B)[m, n]: first GEMM, reduced over K
            return ft.reduce(lambda acc, ab: acc + ab[0] @ ab[1], ft.zip(a_row, b_panel),
                             ft.zeros((tm, tn), dtype))

        def second_gemm(acc, panel_and_c):      # D[m] += (A @ B)[m, n] @ C[n]
            b_panel, c_blk = panel_and_c
            return acc + ab_tile(b_panel) @ c_blk

        return ft.reduce(second_gemm, ft.zip(b, c), ft.zeros((tm, p), dtype))

    return ft.map(row_block, a)


def dense_operands(config: dict, dtype=np.float32, seed: int = 0):
    """The dense A [M,K], B [K,N], C [N,P], scaled so that D's entries are O(1)."""
    m, n, k, p = (config[s] for s in "MNKP")
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(dtype)
    c = (rng.standard_normal((n, p)) / np.sqrt(n)).astype(dtype)
    return a, b, c


def inputs(config="small", *, dtype=np.float32, seed=0, ragged=True):
    """Blocked operands (see the module docstring); `ragged` is ignored (dense matrices)."""
    cfg = CONFIGS[config] if isinstance(config, str) else config
    m, n, k, p, tm, tn, tk = (cfg[s] for s in ("M", "N", "K", "P", "TM", "TN", "TK"))
    if m % tm or n % tn or k % tk:
        raise ValueError(f"tiles {tm, tn, tk} must divide [M, N, K] = {[m, n, k]}")
    a, b, c = dense_operands(cfg, dtype, seed)
    a_blocks = a.reshape(m // tm, tm, k // tk, tk).transpose(0, 2, 1, 3)   # [m][k] -> [TM, TK]
    b_panels = b.reshape(k // tk, tk, n // tn, tn).transpose(2, 0, 1, 3)   # [n][k] -> [TK, TN]
    c_blocks = c.reshape(n // tn, tn, p)                                   # [n]    -> [TN, P]
    return ft.from_numpy(a_blocks, depth=2), ft.from_numpy(b_panels, depth=2), ft.from_numpy(c_blocks)


def _dense(a_blocks, b_panels, c_blocks):
    """Reassemble the dense A, B, C from their tiles."""
    a4, b4 = a_blocks.to_numpy(), b_panels.to_numpy()          # [mb, kb, TM, TK], [nb, kb, TK, TN]
    mb, kb, tm, tk = a4.shape
    nb, _, _, tn = b4.shape
    a = a4.transpose(0, 2, 1, 3).reshape(mb * tm, kb * tk)
    b = b4.transpose(1, 2, 0, 3).reshape(kb * tk, nb * tn)
    c = c_blocks.to_numpy().reshape(nb * tn, -1)
    return a, b, c


def reference(a_blocks, b_panels, c_blocks):
    """Plain NumPy on the dense matrices: two GEMMs."""
    a, b, c = _dense(a_blocks, b_panels, c_blocks)
    return (a @ b) @ c


def outputs(result):
    """The row blocks of D stacked into the dense `M x P` matrix."""
    d = result.to_numpy()                                      # [mb, TM, P]
    return d.reshape(-1, d.shape[-1])


def torch_reference(a_blocks, b_panels, c_blocks):
    """The same two GEMMs through `torch.matmul`."""
    import torch

    a, b, c = (torch.from_numpy(x) for x in _dense(a_blocks, b_panels, c_blocks))
    return torch.matmul(torch.matmul(a, b), c).numpy()
