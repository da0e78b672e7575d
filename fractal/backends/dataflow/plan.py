"""The planner: a tile program to a `MeshProgram` for a mesh (`plan(tile, spec)`).

Every tile buffer gets a home on the mesh (`home.Home`: blocks spread over the PEs, loaded
from the host for inputs and consts, stored to the host for outputs).  The statements run
in program order: loops are unrolled (a reduce's loop whose states no one else reads runs
as partial sums and a tree instead, `plan_reduce`) and `if`s decided at plan time (their
bounds and conditions read loop variables only), and every stage run is planned by the first plan that
takes it: `plan_copy` (a stage that only copies: home to home), `gemm_choice` (a stage that
is one product: the cheapest of its compute-shift, broadcast and stationary plans that fits),
`plan_grouped` (one product per group of points, each with its own right operand), else
`plan_window` (any stage; a stage whose one point does not fit a PE runs op by op), each a
list of supersteps that reads the stage's inputs from their homes and leaves its results
there.  Inputs', consts' and outputs' homes live for the whole program; a temp's home from
the first top-level statement that names it to the last (allocated in that statement's
first superstep, freed in the last one's: allocation by liveness).  Resident boxes
(`residency`, `plan_grouped`) stay to the end.  Shared product weights that fit are also
loaded whole onto every PE with the program (`replicas`: a layout chosen at load time).
`free()` is what each PE has left for a stage beside the homes live then, the resident
boxes and the replicas.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from fractal.backends.pointwise import region
from fractal.lower.rewrite import stages_of, var_ranges
from fractal.lower.tile_ir import Gemm, If, Loop, Region, Stage, TileProgram

from .errors import SramCapacityError
from .home import Home
from . import gemm_choice, plan_copy, plan_grouped, plan_reduce, replicas, split
from .mesh_ir import Alloc, Free, HostArray, Load, LocalBuffer, MeshProgram, Pes, Store, Superstep, covering
from .plan_window import WindowPlan
from .residency import Residency, resident_buffers
from .spec import MeshSpec


class Planner:
    def __init__(self, tile: TileProgram, spec: MeshSpec, replicate: bool = True):
        self.tile, self.spec = tile, spec
        self.buffers = {b.name: b for b in tile.buffers}
        self.homes: dict[str, Home] = {}
        self.local: dict[str, LocalBuffer] = {}
        self.runs: dict[str, int] = {}
        first = 0
        for b in tile.buffers:
            if not all(b.shape):
                continue
            home = Home.spread(b.name, b.shape, spec.rows, spec.cols, first, b.dtype.itemsize)
            first += home.blocks if home.blocks >= home.pes else 1   # (fewer blocks are strided)
            self.homes[b.name] = home
            self.declare(home.local, home.block, b.dtype)
        # a temp's home lives from the first top-level statement that names it to the last
        # (allocation by liveness); inputs, consts and outputs for the whole program
        self._home_allocs: dict[str, list[Alloc]] = {}
        self.lifetimes = {n: span for n, span in _lifetimes(tile).items() if n in self.homes}
        self.last_write = _last_writes(tile)   # buffer -> the last top-level statement writing it
        self.at = 0                            # the top-level statement being planned
        self.home_live = np.zeros((spec.rows, spec.cols), np.int64)
        self.resident_live = np.zeros((spec.rows, spec.cols), np.int64)   # resident boxes kept on each PE
        self.live_homes: set[str] = set()
        self._take([n for n in self.homes if n not in self.lifetimes], "the homes of the program's buffers")
        peak = self.home_live.copy()
        for i, s in enumerate(tile.body):   # refuse before planning anything: the homes live at each statement
            self._take([n for n, (a, _) in self.lifetimes.items() if a == i], f"the homes live at {_name(s)}")
            np.maximum(peak, self.home_live, out=peak)
            self._give_back([n for n, (_, b) in self.lifetimes.items() if b == i])
        self.replicas = replicas.choose(tile, spec, int(peak.max()) if peak.size else 0) \
            if replicate else {}   # weights on every PE
        for name, local in self.replicas.items():
            self.resident_live += self.local[self.declare(local, self.buffers[name].shape, self.buffers[name].dtype)].nbytes
        self.home_allocs = [a for n in self.homes if n not in self.lifetimes for a in self.allocs_of(n)]
        self._residency: dict = {}
        self.ranges = var_ranges(tile.body)
        self.op_by_op: set[str] = set()   # stages whose one point did not fit a PE
        self.grouped_layouts: dict = {}    # grouped stage -> its blocks of PEs (`plan_grouped.Layout`)
        self.gemm_choices: dict = {}       # (product stage, M', K, N, accumulate) -> the plan chosen
        self.weight_moves: dict = {}       # a square plan's B tiles -> their messages (the same at every run)
        self.reduce_dead: dict = {}        # a reduce loop's stage -> its write and the others' reads (None: step by step)
        self.choices = []   # (stage run, chosen plan, {plan: estimated (cycles, SRAM)}, {plan: simulated (cycles, peak)})

    def allocs_of(self, name: str) -> list[Alloc]:
        """The allocs of a buffer's home blocks: one per rectangle of its owners (every owner
        holds one block-shaped local buffer)."""
        if name not in self._home_allocs:
            home = self.homes[name]
            self._home_allocs[name] = [Alloc((home.local,), rect) for rect in covering(home.owner_ids(), self.spec.cols)]
        return self._home_allocs[name]

    def _take(self, names, where: str) -> None:
        """Count the homes `names` live on their PEs; refuse when a PE cannot hold them."""
        for name in names:
            home = self.homes[name]
            np.add.at(self.home_live.reshape(-1), home.owner_ids(), self.local[home.local].nbytes)
            self.live_homes.add(name)
        live = self.home_live + self.resident_live
        if live.size and int(live.max()) > self.spec.usable_bytes:
            r, c = (int(x) for x in np.unravel_index(int(live.argmax()), live.shape))
            raise SramCapacityError((r, c), where, "its home blocks", int(self.home_live[r, c]),
                                    int(live[r, c] - self.home_live[r, c]), self.spec.usable_bytes)

    def _give_back(self, names) -> None:
        for name in names:
            home = self.homes[name]
            np.subtract.at(self.home_live.reshape(-1), home.owner_ids(), self.local[home.local].nbytes)
            self.live_homes.discard(name)

    def live_allocs(self) -> list[Alloc]:
        """Allocs of the homes live now and of the replicas (a stage plan's cost is simulated on top of them)."""
        return [a for n in sorted(self.live_homes) for a in self.allocs_of(n)] + replicas.allocs(self)

    # --- what the stage plans ask ---------------------------------------------------------------

    def free(self) -> np.ndarray:
        """SRAM each PE (by id, row-major) has left beside its homes, the replicas and the resident boxes so far."""
        return self.spec.usable_bytes - (self.home_live + self.resident_live).ravel()

    def room(self) -> int:
        """SRAM a stage may use on every PE."""
        return int(self.free().min())

    def home(self, name: str) -> Home | None:
        return self.homes.get(name)

    def residency(self, stage: Stage) -> Residency | None:
        """The stage's resident read-only operands (one `Residency` per stage, over all its runs)."""
        if stage.name not in self._residency:
            kept = resident_buffers(self, stage)
            self._residency[stage.name] = Residency(self, stage, kept) if kept else None
        return self._residency[stage.name]

    def read_only(self, name: str) -> bool:
        """Whether nothing writes `name` from the statement being planned to the end (an input,
        a const, or a temp only earlier statements write: a weight laid out once): a copy of
        it kept on a PE stays valid."""
        role = self.buffers[name].role
        return role in ("input", "const") or (role == "temp" and self.last_write.get(name, -1) < self.at)

    def is_const(self, name: str) -> bool:
        return self.buffers[name].role == "const"

    def const_region(self, r: Region, env: dict) -> np.ndarray:
        """The values of a region of a const buffer at a point (`env`)."""
        return np.asarray(region(r, env, {r.buffer: np.asarray(self.buffers[r.buffer].data.value)})).reshape(-1)

    def itemsize(self, name: str) -> int:
        return self.buffers[name].dtype.itemsize

    def declare(self, name: str, shape, dtype) -> str:
        buf = LocalBuffer(name, shape, dtype)
        if self.local.setdefault(name, buf) != buf:
            raise ValueError(f"local buffer {name} declared twice with different shapes")
        return name

    def window(self, stage: str, buffer: str, shape, part: str = "") -> str:
        """A window buffer for `buffer`'s regions in `stage` (one name per shape; `part`: which
        of the buffer's windows, when its regions have several)."""
        name = f"w_{stage}_{buffer}" + (f"_p{part}" if part else "") + "".join(f"_{d}" for d in shape)
        return self.declare(name, shape, self.buffers[buffer].dtype)

    def label(self, stage: str) -> str:
        self.runs[stage] = self.runs.get(stage, -1) + 1
        return f"{stage}#{self.runs[stage]}"

    # --- the program --------------------------------------------------------------------------

    def walk(self, stmts, env, top: bool = False) -> list:
        out = []
        for i, s in enumerate(stmts):
            if top:
                self.at = i
            born = [n for n, (a, _) in self.lifetimes.items() if a == i] if top else []
            dying = [n for n, (_, b) in self.lifetimes.items() if b == i] if top else []
            if born:
                self._take(born, f"the homes live at {_name(s)}")
            if isinstance(s, Loop):
                steps = plan_reduce.steps(self, s, env) if s.associative else None
                if steps is None:
                    steps = []
                    for v in range(s.start.evaluate(env), s.stop.evaluate(env), s.step):
                        steps += self.walk(s.body, {**env, s.var: v})
            elif isinstance(s, If):
                steps = self.walk(s.then if s.holds(env) else s.orelse, env)
            elif isinstance(s, Stage):
                steps = self.stage(s, env)
            else:
                raise TypeError(f"not a tile statement: {type(s).__name__}")
            if born or dying:   # the temps' homes: allocated in the statement's first step, freed in its last
                allocs = tuple(a for n in born for a in self.allocs_of(n))
                frees = tuple(Free(a.buffers, a.pes) for n in dying for a in self.allocs_of(n))
                steps = steps or [Superstep(f"homes at {_name(s)}")]
                steps[0] = replace(steps[0], allocs=allocs + steps[0].allocs)
                steps[-1] = replace(steps[-1], frees=steps[-1].frees + frees)
                self._give_back(dying)
            out += steps
        return out

    def stage(self, s: Stage, env: dict) -> list:
        """A stage run's supersteps, from the first plan that takes it (module docstring).  When one
        point of a stage of several ops needs more SRAM than a PE has, its ops are planned one
        stage each: legal, since a stage's points are independent, so running it op by op over
        all points is one of the orders the tile IR allows; a product still too big is cut into
        blocks of its result (`split`)."""
        label = self.label(s.name)
        if plan_copy.qualifies(self, s):
            return plan_copy.steps(self, s, env, label)
        chosen = gemm_choice.choose(self, s, env, label)
        if chosen is not None:
            if chosen[3]:   # (a run that reused an earlier run's choice simulated nothing)
                self.choices.append((label, chosen[0], chosen[2], chosen[3]))
            return chosen[1]
        if plan_grouped.qualifies(self, s):
            grouped = plan_grouped.GroupedPlan(self, s, env, label).steps()
            if grouped is not None:
                return grouped
        if s.name not in self.op_by_op:   # (its points are as big at every run: tried once)
            try:
                return WindowPlan(self, s, env, label).steps()
            except SramCapacityError:
                if len(s.body) == 1:
                    itemsize = self.itemsize(s.body[0].c.buffer) if isinstance(s.body[0], Gemm) else 0
                    cut = split.blocks(s, lambda elements: elements * itemsize <= int(self.free().max()))
                    if cut is None:
                        raise
                    return self.stage(cut, env)
                self.op_by_op.add(s.name)
        return [step for k, op in enumerate(s.body)
                for step in self.stage(Stage(f"{s.name}_op{k}", s.dims, (op,), s.placement), env)]

    def program(self) -> MeshProgram:
        steps = self.walk(self.tile.body, {}, top=True)
        arrays = tuple(HostArray(b.name, b.shape, b.dtype, b.role, b.data) for b in self.tile.buffers
                       if b.role in ("input", "output", "const"))
        allocs, loads = replicas.loads(self)
        allocs, stores = list(self.home_allocs) + allocs, []
        for name, home in self.homes.items():
            role = self.buffers[name].role
            if role == "temp":
                continue
            locals_ = {}   # (a buffer's blocks share a few shapes)
            for pe, box in home.owners():
                sizes = tuple(hi - lo for lo, hi in box)
                local = locals_.get(sizes) or locals_.setdefault(sizes, Region(home.local, (0,) * len(box), sizes))
                host = Region(name, tuple(lo for lo, _ in box), sizes)
                if role in ("input", "const"):
                    loads.append(Load(Pes.one(*pe), local, host))
                elif role == "output":
                    stores.append(Store(Pes.one(*pe), host, local))
        return MeshProgram(self.tile.name, self.spec, arrays,
                           tuple(self.local.values()), allocs=tuple(allocs), loads=tuple(loads), steps=tuple(steps),
                           stores=tuple(stores))


def _name(s) -> str:
    return s.name if isinstance(s, Stage) else f"the loop over {s.var}" if isinstance(s, Loop) else "an if"


def _lifetimes(tile: TileProgram) -> dict[str, tuple[int, int]]:
    """{temp buffer: (first, last) top-level statement that names it}."""
    out: dict[str, tuple[int, int]] = {}
    temps = {b.name for b in tile.buffers if b.role == "temp"}
    for i, s in enumerate(tile.body):
        for name in sorted({r.buffer for st in stages_of(s) for op in st.body for r in op.reads + op.writes} & temps):
            out[name] = (out.get(name, (i, i))[0], i)
    return out


def _last_writes(tile: TileProgram) -> dict[str, int]:
    """{buffer: the last top-level statement that writes it}."""
    out: dict[str, int] = {}
    for i, s in enumerate(tile.body):
        for st in stages_of(s):
            for op in st.body:
                for r in op.writes:
                    out[r.buffer] = i
    return out


def plan(tile: TileProgram, spec: MeshSpec) -> MeshProgram:
    """The mesh program that runs `tile` on `spec` (module docstring); planned again without
    replicated weights when a stage does not fit beside them (the replicas only save time)."""
    planner = Planner(tile, spec)
    try:
        return planner.program()
    except SramCapacityError:
        if not planner.replicas:
            raise
    return Planner(tile, spec, replicate=False).program()
