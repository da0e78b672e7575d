"""The dataflow backend's benchmarks, in the simulator's cost model, as one section of BENCHMARKS.md.

    python benchmarks/dataflow.py [--quick] [--markdown BENCHMARKS.md] [--out results.json]

1. **Products** (the goal: at least 70% of the modelled roofline on `ipu_mk2` and `wse2`, and at
   least 2x a broadcast (SUMMA) plan on meshes of 16 x 16 PEs and more): every stage of the zoo's
   `b2b_gemm` at `paper` that is one product, planned on each mesh; the plan the cost model
   chose, its cycles (fetch from the homes, compute, write back), the compute roofline
   (`flops / (PEs x flops_per_cycle)`), and every candidate's cycles side by side.
2. **Wavefront** (the goal: no weight bytes move after the initial load, and the makespan grows
   with `D + L - 1`, not `D x L`): `stacked_lstm` at depths and lengths on an 8 x 8 mesh, and
   at its `cpu` config on ipu_mk2 16 x 16.
3. **Planner time** (the goal: each zoo model at `paper` on a 64 x 64 mesh in under 10 s): each
   model planned in a subprocess with a time box; over the box, or refused (SRAM), it says so.
4. **MPI weak scaling**: a stacked product whose rows grow with the ranks (4 PEs per rank),
   run by `mpiexec` on 1, 2, 4, 8 ranks of this machine: rank 0's wall time, and whether the
   outputs equal the simulator's bit for bit.
5. **MPI on the zoo** (the goal: stacked_lstm and b2b_gemm at their `cpu` configs on 4 ranks,
   bit for bit the simulator's answer): each planned on ipu_mk2 16 x 16, run on the BSP
   simulator and on 4 ranks.

Cycles are the model's, from `fractal.backends.dataflow.cost` and the preset's numbers (the
placeholders among them are listed); nothing here is timed except the planner and MPI runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import fractal as ft  # noqa: E402
from examples import zoo  # noqa: E402
from fractal.backends.dataflow import gemm_choice, plan_gemm, replicas  # noqa: E402
from fractal.backends.dataflow.bsp import run_bsp  # noqa: E402
from fractal.backends.dataflow.mesh_ir import MeshProgram, Sends  # noqa: E402
from fractal.backends.dataflow.plan import Planner  # noqa: E402
from fractal.lower.lower_program import lower_program  # noqa: E402
from fractal.lower.pipeline import run_pipeline  # noqa: E402

HEADING = "## Dataflow: the simulated mesh"


def tile_program(name, config, target, ragged=False):
    m = zoo.load(name)
    program, _, leaves, _ = m.model.traced_call(m.inputs(config, ragged=ragged), {})
    return run_pipeline(lower_program(program, leaves).program, target=target)[0]


def _core(summary) -> float:
    """A plan's cycles without its fetch from the homes and its write-back to them: every
    superstep's compute and barrier, and the exchanges of all but the fetch and the last."""
    steps = [x for x in summary.step_cycles if not x[0].endswith("fetch")]
    return sum(c + b for _, c, _, b in steps) + sum(e for _, _, e, _ in steps[:-1])


def products(meshes) -> list[dict]:
    rows = []
    for preset, r, c in meshes:
        target = ft.targets.mesh(r, c, preset)
        spec = target.policy.spec
        tile = tile_program("b2b_gemm", "paper", target)
        try:
            planner = Planner(tile, spec)
            t0 = time.perf_counter()
            planner.program()
            seconds = time.perf_counter() - t0
        except ft.FractalError as e:
            rows.append({"mesh": spec.name, "error": str(e).splitlines()[0]})
            continue
        bare = Planner(tile, spec, replicate=False)   # SUMMA's best: no SRAM taken by replicas
        bare.program()
        bare_summa = {label: {k: v for k, v in sim.items() if k.startswith("summa")} for label, _, _, sim in bare.choices}
        weights = ", ".join(f"{n} ({planner.local[r].nbytes // 1024} KiB)" for n, r in planner.replicas.items()) or "-"
        for label, chosen, guesses, simulated in planner.choices:
            stage = next(s for s in tile.stages() if label.startswith(s.name + "#"))
            prod = plan_gemm.product_of(stage, {})
            flops = 2 * prod.M * prod.K * prod.N
            roof = flops / (spec.pes * spec.rate(tile.buffer(stage.body[0].c.buffer).dtype))

            def core_of(p, name):   # the plan's cycles on planner p without its fetch and write-back
                steps = tuple(gemm_choice.candidates(p, stage, prod, label)[name][0]())
                allocs = tuple(a for n in p.homes for a in p.allocs_of(n)) + tuple(replicas.allocs(p))
                return _core(run_bsp(MeshProgram("stage", spec, (), tuple(p.local.values()), allocs=allocs,
                                                 steps=steps), None)[1])
            summas = bare_summa.get(label) or {}
            summa = min((v[0], k) for k, v in summas.items()) if summas else None
            rows.append({"mesh": spec.name, "stage": label, "shape": f"{prod.M}x{prod.K}x{prod.N}", "chosen": chosen,
                         "cycles": simulated[chosen][0], "core": core_of(planner, chosen), "roofline": roof, "weights": weights,
                         "summa": summa, "summa_core": core_of(bare, summa[1]) if summa else None, "simulated": {k: v[0] for k, v in simulated.items()},
                         "plan_seconds": seconds, "placeholders": list(spec.placeholders())})
    return rows


def wavefront(cases) -> list[dict]:
    """`cases`: (config, target): stacked_lstm planned on the target, its weight traffic and makespan."""
    out = []
    for config, target in cases:
        depth, length = config["depth"], config["length"]
        tile = tile_program("stacked_lstm", config, target)
        planner = Planner(tile, target.policy.spec)
        program = planner.program()
        homes = {f"h_{b.name}" for b in tile.buffers if b.name.startswith("in_params")}
        per_step = [sum(len(t) for t in s.transfers if isinstance(t, Sends) and t.src.buffer in homes)
                    for s in program.steps]
        runs = [int(s.label.split("#")[1].split()[0]) for s in program.steps if "#" in s.label]
        late = [n for n, run in zip(per_step, runs) if run >= depth]   # runs after every layer's first
        summary = run_bsp(program, None)[1]
        out.append({"mesh": target.policy.spec.name, "depth": depth, "length": length,
                    "size": f"{config['batch']}x{config['hidden']}", "steps": depth + length - 1,
                    "cells": depth * length, "makespan": summary.makespan_cycles,
                    "weight_fetch_supersteps": sum(1 for n in per_step if n),
                    "weight_messages_after_first_use": sum(late)})
    return out


PLAN_ONE = """
import sys, time; sys.path.insert(0, {root!r})
import fractal as ft
from examples import zoo
from fractal.lower.lower_program import lower_program
from fractal.lower.pipeline import run_pipeline
from fractal.backends.dataflow.plan import plan
m = zoo.load({name!r}); t = ft.targets.mesh(64, 64, {preset!r})
program, _, leaves, _ = m.model.traced_call(m.inputs("paper"), {{}})
tile = run_pipeline(lower_program(program, leaves).program, target=t)[0]
t0 = time.perf_counter()
try:
    p = plan(tile, t.policy.spec); print("ok", time.perf_counter() - t0, len(p.steps))
except Exception as e:
    print("refused", time.perf_counter() - t0, type(e).__name__ + ": " + str(e).splitlines()[0])
"""


def planner_times(models, preset, box) -> list[dict]:
    out = []
    for name in models:
        code = PLAN_ONE.format(root=str(ROOT), name=name, preset=preset)
        try:
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=box)
            last = (done.stdout.strip().splitlines() or ["failed 0 " + done.stderr.strip()[-200:]])[-1]
            what, seconds, rest = (last.split(" ", 2) + [""])[:3]
            out.append({"model": name, "status": what, "seconds": float(seconds), "detail": rest})
        except subprocess.TimeoutExpired:
            out.append({"model": name, "status": "over", "seconds": box, "detail": f"over the {box} s box"})
    return out


@ft.function
def stacked(xs, w):
    return ft.map(lambda x: x @ w, xs)


def mpi_scaling(ranks_list) -> list[dict]:
    from fractal.backends.dataflow.mpi import find_mpiexec
    try:
        find_mpiexec()
    except ft.FractalError as e:
        return [{"error": str(e).splitlines()[0]}]
    out, rng = [], np.random.default_rng(0)
    for ranks in ranks_list:
        xs = ft.fractal([rng.integers(-3, 4, (64, 64)).astype(np.float64) for _ in range(4 * ranks)])
        w = rng.integers(-3, 4, (64, 64)).astype(np.float64)
        compiled = stacked.compile(xs, w, target=ft.targets.mesh(2, 2 * ranks, sram_bytes=1 << 20))
        bsp = compiled.run(xs, w)
        mpi = compiled.run(xs, w, executor="mpi", ranks=ranks)
        same = all(np.array_equal(a, b) for a, b in zip(bsp.to_list(), mpi.to_list()))
        out.append({"ranks": ranks, "pes": 4 * ranks, "rows": 64 * 4 * ranks, "wall_seconds": compiled._executable.mpi_seconds,
                    "bit_equal": same, "model_cycles": compiled.report.makespan_cycles})
    return out


def mpi_zoo(models, ranks: int, mesh) -> list[dict]:
    """Zoo models at their `cpu` configs, planned on `mesh` = (preset, rows, cols), run on the BSP
    simulator and on `ranks` MPI ranks: the outputs bit for bit, the wall times."""
    from fractal.backends.dataflow.mpi import find_mpiexec
    try:
        find_mpiexec()
    except ft.FractalError as e:
        return [{"error": str(e).splitlines()[0]}]
    out = []
    for name in models:
        m = zoo.load(name)
        args = m.inputs("cpu", ragged=False)
        target = ft.targets.mesh(mesh[1], mesh[2], mesh[0])
        t0 = time.perf_counter()
        compiled = m.model.compile(*args, target=target)
        planned = time.perf_counter() - t0
        t0 = time.perf_counter()
        bsp = m.outputs(compiled.run(*args))
        bsp_seconds = time.perf_counter() - t0
        mpi = m.outputs(compiled.run(*args, executor="mpi", ranks=ranks, timeout=1800))
        leaves = lambda x: [np.asarray(v) for v in (x if isinstance(x, (list, tuple)) else [x])]  # noqa: E731
        same = all(np.array_equal(a, b) for a, b in zip(leaves(bsp), leaves(mpi)))
        out.append({"model": name, "mesh": target.policy.spec.name, "ranks": ranks, "plan_seconds": planned,
                    "supersteps": len(compiled._executable.program.steps), "bsp_seconds": bsp_seconds,
                    "mpi_seconds": compiled._executable.mpi_seconds, "bit_equal": same})
    return out


def render(results: dict) -> str:
    m = results["machine"]
    lines = [HEADING, "",
             f"Generated by `python benchmarks/dataflow.py` on {m['cpu']} ({m['cores']} cores), Python {m['python']}, "
             f"numpy {m['numpy']}, fractal commit `{m['commit']}`, {m['date']}. Cycles are the cost model's "
             "(fractal.backends.dataflow.cost) on the presets' numbers; [U] numbers are placeholders.", "",
             "### Products (b2b_gemm at paper, each stage one stacked product)", "",
             "Each stage's plan is the fastest, on the simulator, of the best-estimated Cannon, SUMMA and stationary "
             "plans (`gemm_choice`). *weights on every PE*: the shared weights loaded whole onto every PE with the "
             "program (`replicas`, a layout chosen at load time; host loads are not charged, as for every input), which "
             "the stationary plan reads in place. *core*: the plan without its fetch from the operands' homes and its "
             "write-back to them (the re-layout a memory reconciliation between stages would remove); *roofline*: the "
             "stage's FLOPs over all PEs at their peak rate. The SUMMA plan is planned without replicas (all the SRAM "
             "left for its tiles) and fetches its tiles from the homes; its core cycles leave that fetch out.", "",
             "| mesh | stage | M'xKxN | weights on every PE | chosen plan | cycles | % of roofline | core cycles | "
             "core % of roofline | best SUMMA (simulated) | x faster than SUMMA | SUMMA core cycles | "
             "core x faster than SUMMA core | planned in |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["products"]:
        if "error" in row:
            lines.append(f"| {row['mesh']} | refused: {row['error']} | | | | | | | | | | | | |")
            continue
        summa = row["summa"]
        vs = f"{summa[0]:,.0f} ({summa[1]}) | {summa[0] / row['cycles']:.2f}x" if summa else "- | -"
        core = row.get("summa_core")
        vs += f" | {core:,.0f} | {core / row['core']:.2f}x" if core else " | - | -"
        lines.append(f"| {row['mesh']} | {row['stage']} | {row['shape']} | {row['weights']} | {row['chosen']} | {row['cycles']:,.0f} | "
                     f"{100 * row['roofline'] / row['cycles']:.0f}% | {row['core']:,.0f} | "
                     f"{100 * row['roofline'] / row['core']:.0f}% | {vs} | {row['plan_seconds']:.1f} s |")
    lines += ["", "### Wavefront (stacked_lstm: small cells on a tiny 8x8 mesh with 1 MiB per PE, each cell on "
              "one PE; the `cpu` config on ipu_mk2 16x16, whose cell does not fit a PE: its products grouped by layer, "
              "each layer's weight tiles resident on its block of PEs)", "",
              "| mesh | depth D | length L | batch x hidden | D + L - 1 | D x L | makespan cycles | cycles per wavefront step | "
              "supersteps fetching weights | weight messages after each layer's first step |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["wavefront"]:
        lines.append(f"| {row['mesh']} | {row['depth']} | {row['length']} | {row['size']} | {row['steps']} | "
                     f"{row['cells']} | {row['makespan']:,.0f} | {row['makespan'] / row['steps']:,.0f} | "
                     f"{row['weight_fetch_supersteps']} | {row['weight_messages_after_first_use']} |")
    lines += ["", f"### Planner time (zoo at paper, {results['planner_preset']} 64x64)", "",
              "| model | result | seconds | detail |", "|---|---|---|---|"]
    for row in results["planner"]:
        lines.append(f"| {row['model']} | {row['status']} | {row['seconds']:.1f} | {row['detail'][:120]} |")
    lines += ["", "### MPI weak scaling (a stacked 64x64 product, 4 PEs and 256 rows per rank; oversubscribed on this machine)", "",
              "| ranks | PEs | rows | rank 0 wall s | model cycles | bit-equal to the simulator |", "|---|---|---|---|---|---|"]
    for row in results["mpi"]:
        if "error" in row:
            lines.append(f"| skipped: {row['error']} | | | | | |")
        else:
            lines.append(f"| {row['ranks']} | {row['pes']} | {row['rows']} | {row['wall_seconds']:.3f} | "
                         f"{row['model_cycles']:,.0f} | {row['bit_equal']} |")
    lines += ["", "### MPI: zoo models at their `cpu` configs (oversubscribed on this machine)", "",
              "| model | mesh | ranks | planned in s | supersteps | BSP simulator wall s | MPI rank 0 wall s | "
              "bit-equal to the simulator |", "|---|---|---|---|---|---|---|---|"]
    for row in results.get("mpi_zoo", []):
        if "error" in row:
            lines.append(f"| skipped: {row['error']} | | | | | | | |")
        else:
            lines.append(f"| {row['model']} | {row['mesh']} | {row['ranks']} | {row['plan_seconds']:.1f} | "
                         f"{row['supersteps']:,} | {row['bsp_seconds']:.1f} | {row['mpi_seconds']:.1f} | "
                         f"{row['bit_equal']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small meshes, two planner models, two MPI sizes")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dataflow.json"))
    ap.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--box", type=float, default=60.0, help="seconds each model may take to plan")
    opts = ap.parse_args(argv)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    results = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "python": platform.python_version(), "numpy": np.__version__, "commit": commit,
                           "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}}
    meshes = [("ipu_mk2", 4, 4), ("ipu_mk2", 8, 8)] if opts.quick else [("ipu_mk2", 16, 16), ("ipu_mk2", 32, 32), ("wse2", 64, 64)]
    results["products"] = products(meshes)
    tiny = ft.targets.mesh(8, 8, sram_bytes=1 << 20)
    small = [(2, 4), (4, 4)] if opts.quick else [(2, 4), (2, 8), (4, 4), (4, 8), (8, 8), (8, 16)]
    cases = [(dict(depth=d, length=n, batch=4, hidden=16), tiny) for d, n in small]
    if not opts.quick:
        cases.append((zoo.load("stacked_lstm").CONFIGS["cpu"], ft.targets.mesh(16, 16, "ipu_mk2")))
    results["wavefront"] = wavefront(cases)
    results["planner_preset"] = "ipu_mk2"
    models = ["b2b_gemm", "retention"] if opts.quick else list(zoo.available())
    results["planner"] = planner_times(models, "ipu_mk2", opts.box)
    results["mpi"] = mpi_scaling([1, 2] if opts.quick else [1, 2, 4, 8])
    results["mpi_zoo"] = [] if opts.quick else mpi_zoo(["stacked_lstm", "b2b_gemm"], 4, ("ipu_mk2", 16, 16))
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    Path(opts.out).write_text(json.dumps(results, indent=1, default=float))
    import report
    md = Path(opts.markdown)
    md.write_text(report.splice_section(md.read_text() if md.is_file() else "", HEADING, render(results)))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
