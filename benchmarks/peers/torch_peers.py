"""The PyTorch peers: for each zoo model, its library kernels (`nn.LSTM`, `nn.GRU`,
`scaled_dot_product_attention`, ...) and the natural eager implementation a researcher would
write (cell loops over padded, masked batches; a hand-written wavefront for the grid RNN).

Importing this module imports torch; the benchmark skips the family when that fails.
"""

from __future__ import annotations

import os

import torch

from benchmarks.peers import Peer
from benchmarks.peers import torch_dense as dense
from benchmarks.peers import torch_rnn as rnn


def setup() -> None:
    """All cores for intra-op parallelism (once per process)."""
    torch.set_num_threads(os.cpu_count() or 1)


def version() -> str:
    return torch.__version__


def _peer(name: str, library: bool, prepare) -> Peer:
    return Peer(f"torch {name}", "torch", library, prepare)


PEERS = {
    "stacked_lstm": (_peer("nn.LSTM (packed)", True, rnn.stacked_lstm_packed),
                     _peer("eager cell loop", False, rnn.stacked_lstm_cell_loop)),
    "dilated_lstm": (_peer("nn.LSTM (re-batched)", True, rnn.dilated_lstm_rebatched),
                     _peer("eager cell loop", False, rnn.dilated_lstm_cell_loop)),
    "grid_rnn": (_peer("eager wavefront", False, rnn.grid_rnn_wavefront),
                 _peer("eager cell loop", False, rnn.grid_rnn_cell_loop)),
    "b2b_gemm": (_peer("(A@B)@C", True, dense.b2b_matmul),),
    "flash_attention": (_peer("SDPA", True, dense.flash_sdpa),
                        _peer("eager online softmax", False, dense.flash_online_softmax)),
    "bigbird": (_peer("gather blocks", False, dense.bigbird_gather),
                _peer("SDPA (dense mask)", True, dense.bigbird_sdpa)),
    "transformer_block": (_peer("nn.TransformerEncoderLayer", True, dense.transformer_layer),
                          _peer("eager + SDPA", True, dense.transformer_eager_sdpa)),
    "rnn_attention": (_peer("nn.GRU + GRUCell loop", True, rnn.rnn_attention_batched),),
    "conv2d": (_peer("F.conv2d + batch_norm", True, dense.conv2d_per_image),),
    "selective_scan": (_peer("eager scan", False, rnn.selective_scan_eager),),
    "retention": (_peer("eager parallel form", False, dense.retention_parallel),),
    "bigru": (_peer("nn.GRU (packed)", True, rnn.bigru_packed),),
    "sliding_window_attention": (_peer("SDPA (band mask)", True, dense.sliding_window_sdpa),),
    "graphsage": (_peer("eager index_add_", False, dense.graphsage_index_add),),
}
