"""One MPI rank of a mesh program's run: `mpiexec -n N python -m fractal.backends.dataflow.run PLAN [OUT]`.

Every rank reads the plan file (`plan_file.save_plan`: the program and its inputs), takes its
block of PEs on a `MPI.Compute_dims` grid of ranks (`blocked.RankGrid`, a Cartesian
communicator), runs them (`blocked.BlockRun`), and exchanges each superstep's messages with
the other ranks (`MpiExchange`).  Rank 0 gathers what the PEs store and writes `OUT` (default
`PLAN` with `.out.npz` for its suffix): the outputs as `output/<name>` and the run's wall time
in seconds (`wall_seconds`: from the first load to the gathered stores, start-up and files
excluded).  `--strict` sends every message synchronously (`Ssend`); `--inputs FILE.npz` takes
the inputs from an archive of arrays named as the program's inputs instead of the plan's.

`fractal.backends.dataflow.mpi.run_mpi` launches this from Python; its docstring shows the
shell and cluster uses.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

import numpy as np
from threadpoolctl import threadpool_limits

from . import local
from .blocked import BlockRun, RankGrid, apply_stores
from .host import host_arrays
from .plan_file import load_plan

TAGS = 32768  # MPI promises tags 0..32767


class MpiExchange:
    """A superstep's messages between ranks.  By default all messages from one rank to another
    in a superstep travel as one message, their bytes packed in program order (tag: the
    superstep); receives are posted first, then the sends, and the rank waits for all of them.
    Strict: one synchronous send (`Ssend`, complete only once received) per message, one
    transfer at a time in program order (tag: the message's channel), the transfer's receives
    posted first, as a shift is one simultaneous step on every PE of its ring; a run that relied
    on MPI buffering messages would hang here."""

    def __init__(self, comm, program, strict: bool = False):
        from mpi4py import MPI

        self.MPI, self.comm, self.program, self.strict = MPI, comm, program, strict

    def _dtype(self, send) -> np.dtype:
        return self.program.buffer(send.src_region.buffer).dtype

    def __call__(self, index, *args) -> dict:
        """Packed: `(index, outgoing, incoming)`, the arrays for each peer rank and the
        (elements, dtype) expected from each, in the order both ranks see the superstep's
        batches (`BlockRun._batches`) -> the arrays received from each peer.  Strict:
        `(index, messages, sent, owner)` -> the data received by message index."""
        if self.strict:
            messages, sent, owner = args
            received = {}
            for t in sorted({t for _, t, _ in messages}):
                received.update(self._strict([m for m in messages if m[1] == t], sent, owner))
            return received
        return self._packed(index, *args)

    def _packed(self, index, outgoing, incoming) -> dict:
        tag, BYTE = index % TAGS, self.MPI.BYTE
        inbox = {peer: np.empty(sum(n * dtype.itemsize for n, dtype in specs), np.uint8)
                 for peer, specs in incoming.items()}
        requests = [self.comm.Irecv([buf, BYTE], source=peer, tag=tag) for peer, buf in sorted(inbox.items()) if buf.size]
        for peer, arrays in sorted(outgoing.items()):
            packed = np.concatenate([np.ascontiguousarray(a).view(np.uint8).reshape(-1) for a in arrays])
            if packed.size:
                requests.append(self.comm.Isend([packed, BYTE], dest=peer, tag=tag))
        self.MPI.Request.Waitall(requests)
        received = {}
        for peer, specs in incoming.items():
            offset, arrays = 0, []
            for n, dtype in specs:
                arrays.append(np.frombuffer(inbox[peer], dtype, n, offset))
                offset += n * dtype.itemsize
            received[peer] = arrays
        return received

    def _strict(self, messages, sent, owner) -> dict:
        inbox, requests = {}, []
        for i, _, s in messages:
            if i not in sent:
                inbox[i] = np.empty(local.region_elements(s.src_region), self._dtype(s))
                requests.append(self.comm.Irecv(inbox[i], source=owner(s.src), tag=s.channel % TAGS))
        for i, _, s in messages:
            if i in sent:
                self.comm.Ssend(np.ascontiguousarray(sent[i]), dest=owner(s.dst), tag=s.channel % TAGS)
        self.MPI.Request.Waitall(requests)
        return inbox


def _blas_threads(comm, MPI) -> int | None:
    """BLAS threads per rank: the node's cores shared among its ranks (ranks that each start
    a thread per core slow each other down), unless the user chose (OMP_NUM_THREADS...)."""
    if any(name in os.environ for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")):
        return None
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // node.Get_size())


def run_rank(comm, plan: str, out: str, strict: bool, inputs_file: str | None) -> None:
    from mpi4py import MPI

    program, inputs = load_plan(plan)
    if inputs_file:
        with np.load(inputs_file, allow_pickle=False) as archive:
            inputs = {name: archive[name] for name in archive.files}
    host = host_arrays(program, inputs)
    grid = RankGrid.oriented(program.spec.rows, program.spec.cols, MPI.Compute_dims(comm.Get_size(), 2))
    cart = comm.Create_cart(list(grid.dims), periods=[False, False], reorder=False)
    block = BlockRun(program, host, grid, cart.Get_rank())
    with threadpool_limits(_blas_threads(comm, MPI), user_api="blas"):
        cart.Barrier()
        start = time.perf_counter()
        pieces = block.run(MpiExchange(cart, program, strict))
        gathered = cart.gather(pieces, root=0)
        wall = time.perf_counter() - start
    if cart.Get_rank() == 0:
        outputs = apply_stores(program, host, [p for part in gathered for p in part])
        with open(out, "wb") as f:
            np.savez(f, wall_seconds=np.float64(wall), **{f"output/{k}": v for k, v in outputs.items()})
        print(f"{program.name}: {program.spec.rows}x{program.spec.cols} PEs on {grid.ranks} ranks "
              f"({grid.dims[0]}x{grid.dims[1]}){' strict' if strict else ''}, {wall:.3f} s; outputs "
              f"{', '.join(outputs)} in {out}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fractal.backends.dataflow.run", description=__doc__.split("\n")[0])
    parser.add_argument("plan", help="a plan file (fractal.backends.dataflow.plan_file.save_plan)")
    parser.add_argument("out", nargs="?", help="where rank 0 writes the outputs (default: PLAN.out.npz)")
    parser.add_argument("--strict", action="store_true", help="synchronous sends (Ssend), one transfer at a time")
    parser.add_argument("--inputs", help="an .npz of the program's inputs, in place of the plan's")
    args = parser.parse_args(argv)
    out = args.out or (args.plan[:-4] if args.plan.endswith(".npz") else args.plan) + ".out.npz"
    try:
        from mpi4py import MPI
    except ImportError:
        print("mpi4py is not installed for this Python: pip install 'fractal-tensor[mpi]' (mpi4py and MPICH)",
              file=sys.stderr)
        return 2
    comm = MPI.COMM_WORLD
    try:
        run_rank(comm, args.plan, out, args.strict, args.inputs)
    except BaseException:  # one rank's failure must end the run, not leave the others waiting
        print(f"rank {comm.Get_rank()} of {comm.Get_size()} failed:\n{traceback.format_exc()}", file=sys.stderr,
              flush=True)
        comm.Abort(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
