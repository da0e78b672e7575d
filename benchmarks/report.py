"""The CPU benchmark's results (benchmarks/results/cpu_backend.json) as BENCHMARKS.md.

    python benchmarks/report.py [RESULTS_JSON] [--out BENCHMARKS.md]

`render(results)` is the whole markdown page: the machine and versions, one row per model and
configuration (fractal's time, its compile time, the interpreter, the NumPy reference, the best
PyTorch and JAX peers, fractal's ratio to the best peer, its speedup over the interpreter and
its share of the GEMM peak), the issue's goals (`goals`: met / missed by X% / not measured),
and every system's numbers.  `cpu_backend.py` calls it after a run; this script re-renders a
saved results file.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
FRACTAL, INTERPRETER, NATIVE = "fractal cpu", "interpreter", "fractal native"
PEER_FAMILIES = ("numpy", "torch", "jax")


# -- reading a case -------------------------------------------------------------------------

def median(case: dict, name: str) -> float | None:
    return case["systems"].get(name, {}).get("median_ms")


def best(case: dict, families) -> tuple[float | None, str | None]:
    """The fastest system of `families` that ran and agrees with the reference (if none agrees,
    the fastest that ran)."""
    ran = [r for r in case["systems"].values() if r["family"] in families and r["median_ms"]]
    pool = [r for r in ran if r.get("agrees", True)] or ran
    if not pool:
        return None, None
    r = min(pool, key=lambda r: r["median_ms"])
    return r["median_ms"], r["name"]


def _ratio(num, den):
    return num / den if num and den else None


# -- goals ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Goal:
    text: str
    model: str
    configs: tuple
    metric: Callable[[dict], float | None]  # of one case
    bound: float
    at_least: bool     # value >= bound (else value <= bound)
    unit: str = "x"    # "x": a ratio, "%": a percentage


def _fractal_over(name):
    return lambda case: _ratio(median(case, FRACTAL), median(case, name))


def _speedup_over(selector):
    def metric(case):
        other = best(case, selector)[0] if isinstance(selector, tuple) else median(case, selector)
        return _ratio(other, median(case, FRACTAL))
    return metric


def _pct_peak(case):
    return case["systems"].get(FRACTAL, {}).get("pct_peak")


GOALS = (
    Goal("stacked_lstm reaches >= 80% of the float32 GEMM peak", "stacked_lstm", ("cpu",), _pct_peak, 80, True, "%"),
    Goal("stacked_lstm time <= 1.15x nn.LSTM", "stacked_lstm", ("cpu",),
         _fractal_over("torch nn.LSTM (packed)"), 1.15, False),
    Goal("stacked_lstm small batch faster than nn.LSTM", "stacked_lstm", ("cpu_small_batch",),
         _fractal_over("torch nn.LSTM (packed)"), 1.0, False),
    Goal("dilated_lstm time <= 1.2x re-batched nn.LSTM", "dilated_lstm", ("cpu",),
         _fractal_over("torch nn.LSTM (re-batched)"), 1.2, False),
    Goal("dilated_lstm >= 1.5x faster than the eager cell loop", "dilated_lstm", ("cpu",),
         _speedup_over("torch eager cell loop"), 1.5, True),
    Goal("grid_rnn >= 1.5x faster than the best PyTorch / JAX", "grid_rnn", ("cpu",),
         _speedup_over(("torch", "jax")), 1.5, True),
    Goal("b2b_gemm >= 0.9x the speed of NumPy's two GEMMs", "b2b_gemm", ("cpu",),
         _speedup_over("numpy (A@B)@C"), 0.9, True),
    Goal("flash_attention time <= 1.3x SDPA", "flash_attention", ("cpu", "cpu_seq2048"),
         _fractal_over("torch SDPA"), 1.3, False),
    Goal("flash_attention faster than JAX", "flash_attention", ("cpu", "cpu_seq2048"),
         _speedup_over(("jax",)), 1.0, True),
    Goal("bigbird >= 1.5x faster than gather-based PyTorch", "bigbird", ("cpu",),
         _speedup_over("torch gather blocks"), 1.5, True),
)
INTERPRETER_GOAL = 20.0
# the native backend (issue 20): at most this times the fastest peer, 0.8 where the peers have
# no fused kernel; never slower than the cpu backend; stacked_lstm's share of the GEMM peak;
# flash_attention against SDPA
NATIVE_BOUND, NATIVE_UNFUSED_BOUND = 1.0, 0.8
NATIVE_UNFUSED = {("grid_rnn", "cpu"), ("dilated_lstm", "cpu"), ("bigbird", "cpu"), ("stacked_lstm", "cpu_small_batch")}
NATIVE_PEAK_GOAL = 75.0


def _status(value, bound, at_least) -> str:
    if value is None:
        return "not measured"
    if (value >= bound) if at_least else (value <= bound):
        return "met"
    miss = (1 - value / bound) if at_least else (value / bound - 1)
    return f"missed by {100 * miss:.0f}%"


def _shown(value, unit) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}%" if unit == "%" else f"{value:.2f}x"


def goals(results: dict) -> list[dict]:
    """One row per goal and configuration, plus the interpreter goal over every case."""
    rows = []
    cases = {(c["model"], c["config"]): c for c in results["cases"]}
    for g in GOALS:
        for config in g.configs:
            case = cases.get((g.model, config))
            value = g.metric(case) if case else None
            rows.append({"goal": g.text, "case": f"{g.model} [{config}]", "value": value,
                         "shown": _shown(value, g.unit), "bound": g.bound, "at_least": g.at_least,
                         "status": _status(value, g.bound, g.at_least)})
    speedups = {f"{c['model']} [{c['config']}]": c["ratios"].get("speedup_over_interpreter")
                for c in results["cases"]}
    measured = {k: v for k, v in speedups.items() if v}
    worst = min(measured, key=measured.get) if measured else None
    value = measured[worst] if worst else None
    status = _status(value, INTERPRETER_GOAL, True)
    if measured and len(measured) < len(speedups):
        status += f" ({len(measured)} of {len(speedups)} cases measured)"
    rows.append({"goal": f"every model >= {INTERPRETER_GOAL:g}x faster than the interpreter",
                 "case": f"slowest: {worst}" if worst else "all", "value": value,
                 "shown": f"{value:.0f}x" if value else "—", "bound": INTERPRETER_GOAL, "at_least": True,
                 "status": status})
    return rows


# -- markdown -------------------------------------------------------------------------------

def _ms(value) -> str:
    return "—" if value is None else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _system_cell(case, name) -> str:
    r = case["systems"].get(name)
    if r is None:
        return "—"
    if r["error"]:
        return "failed"
    return _ms(r["median_ms"]) + ("" if r.get("agrees", True) else " (!)")


def _short(name: str | None) -> str:
    return (name or "").removeprefix("torch ").removeprefix("jax ")


def _row(case: dict) -> list[str]:
    frac = case["systems"].get(FRACTAL, {})
    torch_ms, torch_name = best(case, ("torch",))
    jax_ms, _ = best(case, ("jax",))
    r = case["ratios"]
    vs_peer = f"{r['fractal_over_best_peer']:.2f}x vs {r['best_peer']}" if "best_peer" in r else "—"
    speedup = r.get("speedup_over_interpreter")
    pct = frac.get("pct_peak")
    return [case["model"], case["config"], _system_cell(case, FRACTAL), _ms(frac.get("compile_ms")),
            _system_cell(case, INTERPRETER), _system_cell(case, "numpy reference"),
            f"{_ms(torch_ms)} ({_short(torch_name)})" if torch_ms else "—", _ms(jax_ms), vs_peer,
            f"{speedup:.0f}x" if speedup else "—",
            "" if case["useful_gflop"] is None else "—" if pct is None else f"{pct:.1f}%"]


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
            *("| " + " | ".join(row) + " |" for row in rows)]


MAIN_HEAD = ["model", "config", "fractal cpu ms", "compile ms", "interpreter ms", "NumPy ref ms",
             "best torch ms (which)", "JAX ms", "ratio vs best peer", "x faster than interpreter",
             "% GEMM peak (fractal)"]


def table(results: dict) -> str:
    return "\n".join(_table(MAIN_HEAD, [_row(c) for c in results["cases"]]))


def _notes(results: dict) -> list[str]:
    tol = results["tolerance"]
    notes = []
    for c in results["cases"]:
        for r in c["systems"].values():
            where = f"{c['model']} [{c['config']}] {r['name']}"
            if r["error"]:
                notes.append(f"- {where} failed: `{r['error']}`")
            elif r.get("check_error"):
                notes.append(f"- {where} (!): result not comparable: `{r['check_error']}`")
            elif not r.get("agrees", True):
                notes.append(f"- {where} (!): max abs error {r['max_abs_error']:.2e} > tolerance {tol:.0e}")
    return notes


def _details(results: dict) -> list[str]:
    rows = []
    for c in results["cases"]:
        for r in c["systems"].values():
            err = r.get("max_abs_error")
            rows.append([c["model"], c["config"], r["name"], "failed" if r["error"] else _ms(r["median_ms"]),
                         str(r.get("repeats", "—")), "—" if err is None else f"{err:.1e}",
                         f"{r['gflops']:.1f}" if r.get("gflops") else "",
                         f"{r['pct_peak']:.1f}%" if r.get("pct_peak") else ""])
    return _table(["model", "config", "system", "median ms", "runs", "max abs err", "GFLOP/s", "% peak"], rows)


def _profiles(results: dict) -> list[str]:
    rows = []
    for c in results["cases"]:
        prof = c.get("profile")
        if not prof:
            continue
        shown = "; ".join(f"{r['stage']} ({'+'.join(r['ops'])}) {r['ms']:.1f} ms, {100 * r['share']:.0f}%"
                          for r in prof["stages"])
        rows.append([c["model"], c["config"], str(prof["threads"]), shown])
    return _table(["model", "config", "threads", "top stages (ops): ms per run, share of the run"], rows)


def _schedules(results: dict) -> list[str]:
    """Per case with named schedules: the sequential steps and time of each, and the one the
    host's policy chose (its program's steps are the chosen schedule's)."""
    rows = []
    for c in results["cases"]:
        named = {n[len(FRACTAL) + 2:-1]: r for n, r in c["systems"].items() if n.startswith(FRACTAL + " [")}
        if not named:
            continue
        chosen = c["systems"].get(FRACTAL, {})
        picked = [s for s, r in named.items() if r.get("steps") == chosen.get("steps")]
        cells = [f"{s}: {_ms(r['median_ms'])} ms, {r.get('steps', '?')} steps" for s, r in named.items()]
        rows.append([c["model"], c["config"], ", ".join(picked) or "?",
                     f"{_ms(chosen.get('median_ms'))} ms, {chosen.get('steps', '?')} steps", "; ".join(cells)])
    return _table(["model", "config", "policy chose", "fractal cpu", "each legal schedule"], rows) if rows else []


def _load_lines(m: dict) -> list[str]:
    start, end = m.get("load_average_start"), m.get("load_average_end")
    if start is None:
        return []
    shown_end = "—" if end is None else f"{end:.2f}"
    line = f"- **Load average** (1 min) at start / end: {start:.2f} / {shown_end}"
    if start > 0.5:  # another process competing for the cores: thread pools stall
        line += " -- **the machine was busy: timings are unreliable**"
    return [line]


def native_rows(results: dict) -> list[dict]:
    """Per case: the native backend's time over the fastest peer's (against its bound) and over
    the cpu backend's; then stacked_lstm's share of the GEMM peak and flash_attention over SDPA."""
    rows = []
    for c in results["cases"]:
        native = median(c, NATIVE)
        if native is None and NATIVE not in c["systems"]:
            continue
        peer, peer_name = best(c, PEER_FAMILIES)
        bound = NATIVE_UNFUSED_BOUND if (c["model"], c["config"]) in NATIVE_UNFUSED else NATIVE_BOUND
        over_peer, over_cpu = _ratio(native, peer), _ratio(native, median(c, FRACTAL))
        rows.append({"case": f"{c['model']} [{c['config']}]", "cpu": median(c, FRACTAL), "native": native,
                     "compile_ms": c["systems"].get(NATIVE, {}).get("compile_ms"), "peer": peer, "peer_name": peer_name,
                     "over_peer": over_peer, "bound": bound, "status": _status(over_peer, bound, False),
                     "over_cpu": over_cpu, "cpu_status": _status(over_cpu, 1.0, False),
                     "pct_peak": c["systems"].get(NATIVE, {}).get("pct_peak"),
                     "over_sdpa": _ratio(native, median(c, "torch SDPA"))})
    return rows


def _native(results: dict) -> list[str]:
    rows = native_rows(results)
    if not rows:
        return []
    table = [[r["case"], _ms(r["cpu"]), _ms(r["native"]), _ms(r["compile_ms"]),
              f"{_ms(r['peer'])} ({_short(r['peer_name'])})" if r["peer"] else "—", _shown(r["over_peer"], "x"),
              f"<= {r['bound']:g}x: {r['status']}", _shown(r["over_cpu"], "x")] for r in rows]
    extra = []
    for r in rows:
        if r["case"] == "stacked_lstm [cpu]":
            extra.append(f"- stacked_lstm [cpu] reaches {_shown(r['pct_peak'], '%')} of the GEMM peak "
                         f"(goal >= {NATIVE_PEAK_GOAL:g}%: {_status(r['pct_peak'], NATIVE_PEAK_GOAL, True)})")
        if r["case"].startswith("flash_attention"):
            extra.append(f"- {r['case']}: {_shown(r['over_sdpa'], 'x')} SDPA's time "
                         f"(goal <= 1.0x: {_status(r['over_sdpa'], 1.0, False)})")
    return ["## The native backend", "",
            "`backend=\"native\"`: each program compiled to C++ by the host compiler (OpenMP point loops, fused "
            "element-wise work, BLAS for big products), timed beside the cpu backend and the peers in the same "
            "run. *compile ms*: trace, lowering and the C++ build (a cached build loads in milliseconds).", "",
            *_table(["case", "fractal cpu ms", "fractal native ms", "native compile ms", "fastest peer ms",
                     "native / fastest peer", "goal", "native / cpu"], table), "", *extra, ""]


def render(results: dict) -> str:
    m, v = results["machine"], results["versions"]
    skipped = results.get("skipped_families", {})
    lib = ", ".join(f"{k} {v[k] or 'not installed'}" for k in ("numpy", "torch", "jax"))
    commit = v.get("fractal_commit")
    lines = [
        "# CPU backend benchmarks", "",
        "fractal's CPU backend side by side with its interpreter, the zoo's NumPy references, PyTorch and "
        "JAX, every system in one process. Generated by `python benchmarks/cpu_backend.py` "
        "(or `fractal bench`); re-render with `python benchmarks/report.py`. GPU sections (`## GPU: <name>`, "
        "at the end) come from `python benchmarks/gpu_check.py --out F --markdown BENCHMARKS.md` (or "
        "`fractal bench --target cuda`) on a machine with an NVIDIA GPU, and stay when this page is rewritten.", "",
        f"- **Machine**: {m['cpu']}, {m['cores']} cores, {m['platform']}",
        f"- **Versions**: Python {v['python']}, {lib}" + (f", fractal commit `{commit[:12]}`" if commit else ""),
        f"- **float32 GEMM peak**: {results['gemm_peak_gflops']:.1f} GFLOP/s "
        f"(np.matmul, 1024 x 1024, median of 5; {results['gemm_peak_source']})",
        *_load_lines(m),
        f"- **Run**: {results['date']}, {results['dtype']}, ragged inputs, median of {results['repeats']} "
        f"timed run(s) after a warm-up" + (", `--quick` (no interpreter)" if results["quick"] else
                                            "; the interpreter runs once"),
        "", "## Results", "", *_table(MAIN_HEAD, [_row(c) for c in results["cases"]]), "",
        "Times in milliseconds. *ratio vs best peer*: fractal's time over the fastest NumPy / PyTorch / "
        "JAX system that agrees with the reference (below 1: fractal is faster). *% GEMM peak*: the "
        "model's useful FLOPs per second over the GEMM peak (GEMM-heavy models only). "
        "(!) marks a system whose result disagrees with the reference.", "",
    ]
    notes = _notes(results) + [f"- {k}: skipped ({e})" for k, e in skipped.items()]
    if notes:
        lines += ["Notes:", "", *notes, ""]
    goal_rows = [[g["goal"], g["case"], g["shown"], g["status"]] for g in results.get("goals") or goals(results)]
    lines += ["## Goals", "", *_table(["goal", "case", "measured", "status"], goal_rows), "", *_native(results),
              *(["## Schedules", "",
                 "Models whose nests have several legal schedules (the wavefront pass: skewed whole onto the "
                 "hyperplane of the nest's dependences, or the recurrence's projection batched out of the "
                 "inner loops and the inner nest skewed), each compiled with the host's policy naming it, "
                 "beside the one the policy chose by its cost estimate.", "", *_schedules(results), ""]
                if _schedules(results) else []),
              "## Where fractal's time goes", "",
              "Stages by time in three profiled runs (`compiled.run(*args, profile=dict)`), and the threads "
              "the program ran on (1: BLAS's own threads; more: big stages cut over the cores).", "",
              *_profiles(results), "",
              "## All systems", "", *_details(results), "",
              "## Method", "",
              "Each system gets an untimed warm-up run, checked against the zoo's NumPy reference (max abs "
              f"error within {results['tolerance']:.0e}), then timed runs; a system stops repeating once its "
              f"timed runs total {results['budget_s']:g} s. fractal's time is `compiled.run(*args)`; its "
              "compile time (trace + analysis + lowering) is measured once. Peers convert the zoo's inputs to "
              "their own form (padded tensors, modules holding the weights) outside the timing; per-call work "
              "such as packing or re-batching sequences is timed.", "",
              "Useful FLOPs (2 per multiply-add, valid work only, no padding):", "",
              *(f"- {k}: {f}" for k, f in results["flop_formulas"].items()), ""]
    return "\n".join(lines)


# -- the sections other scripts write (benchmarks/gpu_check.py, benchmarks/dataflow.py) ----------

GPU_HEADING = "## GPU: "
KEPT = (GPU_HEADING, "## Dataflow: ")   # sections that stay when the CPU page is rewritten


def keep_gpu_sections(page: str, path: Path) -> str:
    """The CPU `page` followed by the kept sections (GPU, dataflow) the file at `path` already has."""
    old = kept_sections(path.read_text()) if path.is_file() else {}
    return "\n\n".join([page.rstrip(), *(s.rstrip() for s in old.values())]) + "\n"


def _split(text: str) -> tuple[str, dict[str, str]]:
    """(the page before the kept sections, {heading: section}); each kept section runs from its
    heading to the next kept heading or the end (they come last)."""
    head, sections, current = [], {}, None
    for line in text.splitlines():
        if line.startswith(KEPT):
            current = line
            sections[current] = []
        (sections[current] if current else head).append(line)
    return "\n".join(head).rstrip(), {k: "\n".join(v).rstrip() + "\n" for k, v in sections.items()}


def kept_sections(text: str) -> dict[str, str]:
    return _split(text)[1]


def gpu_sections(text: str) -> dict[str, str]:
    """{GPU: its section} of a BENCHMARKS.md."""
    return {k[len(GPU_HEADING):]: v for k, v in kept_sections(text).items() if k.startswith(GPU_HEADING)}


def splice_section(text: str, heading: str, section: str) -> str:
    """`text` with the kept section under `heading` replaced by `section` (or added at the end)."""
    head, sections = _split(text)
    sections[heading] = section.rstrip() + "\n"
    return "\n\n".join(filter(None, [head, *(s.rstrip() for s in sections.values())])) + "\n"


def splice_gpu_section(text: str, gpu: str, section: str) -> str:
    """`text` with the section of `gpu` replaced by `section` (or added at the end)."""
    return splice_section(text, GPU_HEADING + gpu, section)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="?", default=str(ROOT / "benchmarks" / "results" / "cpu_backend.json"))
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    opts = ap.parse_args(argv)
    results = json.loads(Path(opts.results).read_text())
    results["goals"] = goals(results)
    out = Path(opts.out)
    Path(opts.out).write_text(keep_gpu_sections(render(results), out))
    print(f"wrote {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
