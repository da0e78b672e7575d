"""Which plan a product stage gets: every candidate estimated in closed form, the best built.

The candidates (`plan_gemm`) are Cannon on interleaved and wrapped rings and SUMMA, each on
squares of every size `s` that divides K and N and fits the mesh, as many squares as the mesh
holds side by side (each a slice of M'), and the stationary plan on the largest rectangle whose
PE count divides M'.  Each is priced by `estimate`, the BSP cost of its supersteps in closed
form from the machine's numbers (T10's approach: per step, the roofline of the local product
plus the shift or broadcast of its tiles, plus the barrier; the fetch from the homes and the
write-back as each PE's bytes over its link), with its SRAM per PE.  `choose` builds, of
each kind (Cannon, SUMMA, stationary), the candidate estimated cheapest that fits, costs the
three on the BSP engine without data (an estimate is a guide; the simulator is the judge),
and keeps the fastest; one that overflows after all makes room for the next of its kind.
Simulating three plans instead of all of them is what keeps planning a 64 x 64 mesh quick; a
later run of the same stage with the same product (a loop's next step) takes the plan chosen
at the first, when its closed-form SRAM still fits, without simulating again.
"""

from __future__ import annotations

from .cost import compute_cycles
from .errors import SramCapacityError
from .mesh_ir import MeshProgram
from .plan_gemm import Product, cannon, product_of, stationary, summa


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _groups(prod: Product, s: int, rows: int, cols: int) -> tuple[int, int] | None:
    """The most squares of s x s PEs side by side whose count divides M' into slices that s divides."""
    best = None
    for gr in range(1, rows // s + 1):
        for gc in range(1, cols // s + 1):
            g = gr * gc
            if prod.M % g == 0 and (prod.M // g) % s == 0 and (best is None or g > best[0] * best[1]):
                best = (gr, gc)
    return best


def candidates(planner, stage, prod: Product, label: str) -> dict:
    """{name: (build, (kind, s, groups or rectangle, ring))} of the product's plans."""
    spec = planner.spec
    out = {}
    for s in sorted({s for s in _divisors(prod.K) if prod.N % s == 0 and s <= min(spec.rows, spec.cols)}, reverse=True):
        groups = _groups(prod, s, spec.rows, spec.cols)
        if groups is None:
            continue
        tag = f"{s}x{s}" + (f" x{groups[0] * groups[1]}" if groups != (1, 1) else "")
        for ring in ("interleaved", "wrap"):
            out[f"cannon-{ring} {tag}"] = (lambda s=s, g=groups, ring=ring: cannon(planner, stage, prod, label, s, ring, g),
                                           ("cannon", s, groups, ring))
        out[f"summa {tag}"] = (lambda s=s, g=groups: summa(planner, stage, prod, label, s, g), ("summa", s, groups, None))
    rect = max(((r, c) for r in range(1, spec.rows + 1) for c in range(1, spec.cols + 1) if prod.M % (r * c) == 0),
               key=lambda rc: (rc[0] * rc[1], rc[0]))
    out[f"stationary {rect[0]}x{rect[1]}"] = (lambda: stationary(planner, stage, prod, label, rect),
                                              ("stationary", None, rect, None))
    return out


def _exchange(per_pe: dict, pes: int, owners: dict, bw: float, broadcast=()) -> float:
    """A fetch or write-back in closed form: the busier of a PE's own bytes and a home owner's
    share of everyone's (a broadcast operand leaves each owner once)."""
    own = sum(per_pe.values())
    share = max((per_pe[x] * (1 if x in broadcast else pes) / owners[x] for x in per_pe), default=0.0)
    return max(own, share) / bw


def estimate(prod: Product, shape, spec, itemsize: int, dtype, owners: dict, replicated: bool = False) -> tuple[float, int]:
    """(cycles, SRAM bytes per PE) of a plan `shape` = (kind, s, groups or rectangle, ring) in
    closed form; `owners` are the PEs holding each operand's home ("a", "b", "c");
    `replicated`: B is on every PE already (`replicas`), which the stationary plan reads in place."""
    kind, s, groups, ring = shape
    bw, lat, sync, B = spec.link_bytes_per_cycle, spec.hop_latency_cycles, spec.sync_cycles, itemsize
    crossbar = spec.kind == "crossbar"
    if kind == "stationary":
        pes = groups[0] * groups[1]
        band = prod.M // pes
        a, b, c = band * prod.K * B, 0 if replicated else prod.K * prod.N * B, band * prod.N * B
        fetch = _exchange({"a": a, "b": b, **({"c": c} if prod.accumulate else {})}, pes, owners, bw, ("b",))
        work = compute_cycles(2 * band * prod.K * prod.N, a + b + 2 * c, dtype, spec)
        return fetch + work + _exchange({"c": c}, pes, owners, bw) + 2 * sync + 2 * lat, a + b + c
    g = groups[0] * groups[1]
    pes = g * s * s
    mt, kt, nt = prod.M // (g * s), prod.K // s, prod.N // s
    a, b, c = mt * kt * B, kt * nt * B, mt * nt * B
    fetch = _exchange({"a": a, "b": b, **({"c": c} if prod.accumulate else {})}, pes, owners, bw) + sync
    back = _exchange({"c": c}, pes, owners, bw)
    work = compute_cycles(2 * mt * kt * nt, a + b + 2 * c, dtype, spec)
    if kind == "cannon":
        # a mesh: A's tiles on row links, B's on column links, two to a link on an interleaved (or a
        # mesh's wrapped) ring; a crossbar: each PE injects both
        share = 1 if crossbar or (spec.kind == "torus" and ring == "wrap") else 2
        move = ((a + b) if crossbar else share * max(a, b)) / bw + 2 * lat
        return fetch + s * (work + sync) + (s - 1) * move + back, a + b + c + (a + b)
    move = ((a + b) if crossbar else max(a, b)) / bw + (s - 1) * lat   # the panels' chains
    return fetch + s * (work + move + sync) + sync + back, 2 * (a + b) + c


def cost(planner, steps) -> tuple[float, int]:
    """(cycles, peak SRAM bytes) of a stage plan's steps on top of the homes (costs only)."""
    from .bsp import run_bsp
    program = MeshProgram("stage", planner.spec, (), tuple(planner.local.values()), allocs=tuple(planner.live_allocs()),
                          steps=tuple(steps))
    summary = run_bsp(program, None)[1]
    return summary.makespan_cycles, int(summary.sram_peak.max())


def choose(planner, stage, env: dict, label: str):
    """(name, steps, {name: estimated (cycles, SRAM)}, {name: simulated (cycles, peak)}) of the
    fastest plan that fits, or None when the stage is not one product or no plan of it fits."""
    prod = product_of(stage, env)
    if prod is None:
        return None
    spec = planner.spec
    dtype = planner.buffers[stage.body[0].c.buffer].dtype
    itemsize = planner.buffers[stage.body[0].a.buffer].dtype.itemsize
    options = candidates(planner, stage, prod, label)
    room = planner.room()
    op = stage.body[0]
    owners = {k: planner.home(r.buffer).blocks for k, r in (("a", op.a), ("b", op.b), ("c", op.c))}
    replicated = op.b.buffer in planner.replicas
    key = (stage.name, prod.M, prod.K, prod.N, prod.accumulate)
    known = planner.gemm_choices.get(key)
    if known in options:   # a stage chosen for at an earlier run (a loop's last step): the same plan, if it fits
        guess = estimate(prod, options[known][1], spec, itemsize, dtype, owners, replicated)
        if guess[1] <= room:
            return known, options[known][0](), {known: guess}, {}
    guesses = {name: estimate(prod, shape, spec, itemsize, dtype, owners, replicated) for name, (_, shape) in options.items()}
    ranked = [n for n in sorted(guesses, key=lambda n: (guesses[n][0], list(guesses).index(n))) if guesses[n][1] <= room]
    best, simulated = None, {}
    for name in ranked:   # the best estimate of each kind of plan, built and simulated
        kind = options[name][1][0]
        if kind in {options[n][1][0] for n in simulated}:
            continue
        steps = options[name][0]()
        try:
            simulated[name] = cost(planner, steps)
        except SramCapacityError:
            continue
        if best is None or simulated[name][0] < simulated[best[0]][0]:
            best = (name, steps)
    if best is not None:
        planner.gemm_choices[key] = best[0]
    return None if best is None else (best[0], best[1], guesses, simulated)
