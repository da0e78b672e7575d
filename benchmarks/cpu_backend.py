"""fractal's CPU backend side by side with the interpreter, NumPy, PyTorch and JAX.

    python benchmarks/cpu_backend.py [--models M ...] [--repeats N] [--quick]
    fractal bench [--models M ...] [--repeats N] [--quick]

Every zoo model runs at its `cpu` configuration (plus stacked_lstm at `cpu_small_batch` and
flash_attention at `cpu_seq2048`), float32, on the zoo's ragged inputs
(`inputs(config, dtype=np.float32)`), all systems in this one process:

* `fractal cpu`: `compiled = model.compile(*args, target=ft.targets.host())` (timed once as the compile
  time: trace + analysis + lowering), then `compiled.run(*args)`;
* `interpreter`: `model.interpret(*args)`, one run (it is slow); `--quick` skips it;
* `numpy reference`: the zoo's `reference(*args)`, plus NumPy peers (`benchmarks/peers`);
* PyTorch and JAX peers when those libraries import (`benchmarks/peers`): library kernels
  (`nn.LSTM`, `nn.GRU`, `scaled_dot_product_attention`, ...) and natural eager code.

Each system gets one untimed warm-up run (which is also checked against the reference: the
max abs error and whether it is within `examples.zoo.tolerance(float32)`), then `--repeats`
timed runs (default 5, `--quick` 1), interleaved round-robin with the case's other systems so
that a slow moment of a shared machine hits all of them alike (5x the runs for a case whose
systems all run under 20 ms), each run after NumPy's idle BLAS workers are stopped so that no
system runs beside the spinning threads of the one before (`quiet_cores`); the median is reported.  A system stops repeating once its
timed runs total `BUDGET_S` seconds (the JSON records how many runs it got), which keeps a full
run within about 10 minutes on a 2-core machine.  A system that
raises is recorded with `"error": "<type>: <first line>"` and the run goes on.

For the GEMM-heavy models the useful FLOPs (the matmuls of the valid, unpadded work, 2 per
multiply-add; see `FLOP_FORMULAS`) give every system's GFLOP/s and its percentage of this
machine's float32 GEMM peak (np.matmul of 1024 x 1024 operands, measured once per run).

Writes `benchmarks/results/cpu_backend.json` and `BENCHMARKS.md` (see `benchmarks/report.py`).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/cpu_backend.py` from a checkout
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks import report  # noqa: E402
from benchmarks.peers import Prepared, load_families  # noqa: E402
from examples import zoo  # noqa: E402

DTYPE = np.float32
EXTRA_CONFIGS = {"stacked_lstm": ("cpu_small_batch",), "flash_attention": ("cpu_seq2048",),
                 "grid_rnn": ("small", "paper")}
# models whose nests have several legal schedules: each also timed as a policy naming it
# (`CpuPolicy(schedule=...)`), beside the one the host's policy chooses ("fractal cpu")
SCHEDULES = {"grid_rnn": ("wavefront", "batched")}
BUDGET_S = 6.0  # timed seconds per system and case before it stops repeating
SHORT_S, SHORT_FACTOR = 0.02, 5  # a case with runs under 20 ms gets 5x the runs (see `interleave`)
FRACTAL, INTERPRETER, REFERENCE = "fractal cpu", "interpreter", "numpy reference"
NATIVE = "fractal native"   # the native backend (C++ compiled per program), where a C++ compiler exists


# -- useful work ----------------------------------------------------------------------------

def _lengths(x) -> np.ndarray:
    return np.array(x.lengths())


USEFUL_FLOPS = {
    "stacked_lstm": lambda c, a: 16 * c["hidden"] ** 2 * c["depth"] * _lengths(a[0]).sum(),
    "dilated_lstm": lambda c, a: 16 * c["hidden"] ** 2 * c["depth"] * _lengths(a[0]).sum(),
    "grid_rnn": lambda c, a: 12 * c["hidden"] ** 2 * c["depth"] * (_lengths(a[0]) * _lengths(a[1])).sum(),
    "b2b_gemm": lambda c, a: 2 * c["M"] * c["N"] * (c["K"] + c["P"]),
    "flash_attention": lambda c, a: sum(4 * c["heads"] * (len(s[0]) * c["block"]) ** 2 * c["head_dim"]
                                        for s in a[0]),
    "bigbird": lambda c, a: sum(20 * len(s) * c["block"] ** 2 * c["hidden"] for s in a[0]),
}
FLOP_FORMULAS = {
    "stacked_lstm": "16 H^2 depth sum_b len_b (per cell x@W and h@U, [1,H]x[H,4H] each)",
    "dilated_lstm": "16 H^2 depth sum_b len_b (one LSTM cell per step and layer)",
    "grid_rnn": "12 H^2 depth sum_b S_b T_b (per cell [1,2H]x[2H,H] and [1,H]x[H,H], for x and y)",
    "b2b_gemm": "2 M N K + 2 M N P (A@B, then (A@B)@C)",
    "flash_attention": "sum_b 4 heads T_b^2 d (Q K^T and P V over the sample's own length)",
    "bigbird": "sum_b n_b 20 Bs^2 H (per query block: scores [Bs,H]x[H,5Bs] and P V)",
}


# -- one system -----------------------------------------------------------------------------

def error_text(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")


class Timed:
    """One system of a case: prepared and warmed up (the warm-up checked against `expected`),
    then timed one run per `step` until it has `repeats` runs or `BUDGET_S` timed seconds."""

    def __init__(self, name: str, family: str, library: bool, prepare, expected, warm_up: bool = True):
        self.rec = {"name": name, "family": family, "library": library, "median_ms": None, "error": None}
        self.prepared, self.times = None, []
        try:
            self.prepared = prepare()
            t0 = time.perf_counter()
            out = self.prepared.run()
            first = time.perf_counter() - t0
            self._check(out, expected)
            del out
            if not warm_up:
                self.times.append(first)
        except Exception as e:
            self._failed(e)

    def _check(self, out, expected) -> None:
        if expected is None:
            return
        try:
            err = zoo.max_abs_error(self.prepared.to_reference(out), expected)
            self.rec.update(max_abs_error=err, agrees=bool(err <= zoo.tolerance(DTYPE)))
        except Exception as e:  # a result of the wrong structure is a disagreement, not a crash
            self.rec.update(max_abs_error=None, agrees=False, check_error=error_text(e))

    def _failed(self, e: BaseException) -> None:
        self.rec["error"], self.prepared = error_text(e), None

    def step(self, repeats: int) -> None:
        if self.prepared is None or len(self.times) >= repeats or sum(self.times) >= BUDGET_S:
            return
        quiet_cores()
        try:
            t0 = time.perf_counter()
            self.prepared.run()
            self.times.append(time.perf_counter() - t0)
        except Exception as e:
            self._failed(e)

    def finish(self) -> dict:
        if self.times and self.rec["error"] is None:
            self.rec.update(median_ms=1e3 * statistics.median(self.times),
                            times_ms=[1e3 * t for t in self.times], repeats=len(self.times))
        self.prepared = None
        gc.collect()
        return self.rec


def quiet_cores() -> None:
    """Stops NumPy's OpenBLAS workers before a timed run: after a multi-threaded call they spin
    for up to half a second, and the next system (SDPA after the cpu backend's GEMMs: 50 ms
    against 32 on the 2-core AMD VM) would run on the cores they hold."""
    try:
        from fractal.backends.blas_workers import stop_blas_workers
        stop_blas_workers()
    except Exception:   # (no OpenBLAS found: nothing spins)
        pass


def interleave(timed: list[Timed], repeats: int) -> list[dict]:
    """Time the systems round-robin (a slow moment of a shared machine slows every system's
    runs alike, so their ratios hold better than their times); their records.  A case where
    some system's first run took under `SHORT_S` gets `SHORT_FACTOR` times the runs (unless one
    run was asked for): a few milliseconds are easily swayed by the machine, and more runs
    cost little."""
    rounds, k = repeats, 0
    while k < rounds:
        for t in timed:
            t.step(rounds)
        k += 1
        if k == 1 < repeats and any(t.times and t.times[0] < SHORT_S for t in timed if t.prepared is not None):
            rounds = repeats * SHORT_FACTOR
    return [t.finish() for t in timed]


def run_system(name: str, family: str, library: bool, prepare, expected, repeats: int, warm_up=True) -> dict:
    """One system on its own (a case interleaves its systems' runs instead: `bench_case`)."""
    timed = Timed(name, family, library, prepare, expected, warm_up)
    for _ in range(repeats):
        timed.step(repeats)
    return timed.finish()


def schedule_target(schedule: str | None):
    """The host, its policy taking `schedule` when named (else choosing)."""
    import fractal as ft
    host = ft.targets.host()
    return host if schedule is None else dataclasses.replace(
        host, name=f"host [{schedule}]", policy=dataclasses.replace(host.policy, schedule=schedule))


def native_compiler() -> bool:
    from fractal.backends.cxx_build import find_compiler
    return find_compiler() is not None


def fractal_prepare(m, args, rec: dict, schedule: str | None = None, native: bool = False):
    """Compile for the host (timed into `rec["compile_ms"]`, the C++ build included for the native
    backend; `schedule`: its policy naming that schedule), then the compiled program's `run` as
    the call."""
    def prepare():
        import fractal as ft
        t0 = time.perf_counter()
        compiled = m.model.compile(*args, target=ft.targets.host(native=True) if native else schedule_target(schedule))
        rec["compile_ms"] = 1e3 * (time.perf_counter() - t0)
        rec["steps"] = sequential_steps(compiled.tile_ir)
        return Prepared(lambda: compiled.run(*args), m.outputs)
    return prepare


def sequential_steps(tile_ir) -> int:
    """How many sequential steps the program's outermost sequential loops run (nested ones
    counted per step of those around them)."""
    from fractal.lower.tile_ir import Loop

    def steps(stmts) -> int:
        n = 0
        for s in stmts:
            if isinstance(s, Loop):
                inner = steps(s.body)
                if s.kind == "sequential" and s.start.is_const and s.stop.is_const:
                    n += (s.stop.const - s.start.const) * max(1, inner)
                else:
                    n += inner
        return n
    return steps(tile_ir.body)


# -- one case -------------------------------------------------------------------------------

def bench_case(name: str, config: str, families: dict, repeats: int, interpreter: bool, peak: float) -> dict:
    m = zoo.load(name)
    args = m.inputs(config, dtype=DTYPE)
    systems: dict[str, dict] = {}

    def add(rec: dict) -> None:
        systems[rec["name"]] = rec
        shown = rec["error"] or f"{rec['median_ms']:.2f} ms" + ("" if rec.get("agrees", True) else " (disagrees)")
        print(f"  {name} [{config}] {rec['name']}: {shown}", file=sys.stderr, flush=True)

    first: list = []  # the reference's warm-up result: what every other system is checked against

    def reference():
        out = m.reference(*args)
        first[:] = first or [out]
        return out
    timed = [Timed(REFERENCE, "numpy", False, lambda: Prepared(reference, lambda r: r), None)]
    expected = first[0] if first else None
    if expected is not None:
        timed[0].rec.update(max_abs_error=0.0, agrees=True)
    for peer in families["numpy"].peers.get(name, ()):
        timed.append(Timed(peer.name, "numpy", peer.library, lambda: peer.prepare(m, args), expected))
    for system, schedule in [(FRACTAL, None)] + [(f"{FRACTAL} [{s}]", s) for s in SCHEDULES.get(name, ())]:
        compiled = {}
        timed.append(Timed(system, "fractal", False, fractal_prepare(m, args, compiled, schedule), expected))
        timed[-1].rec.update(compiled)
    if native_compiler():
        compiled = {}
        timed.append(Timed(NATIVE, "fractal", False, fractal_prepare(m, args, compiled, native=True), expected))
        timed[-1].rec.update(compiled)
    for family in ("torch", "jax"):
        for peer in families[family].peers.get(name, ()):
            timed.append(Timed(peer.name, family, peer.library, lambda: peer.prepare(m, args), expected))
    for rec in interleave(timed, repeats):
        add(rec)
    if interpreter:  # one run (it is slow), after the others are measured
        add(run_system(INTERPRETER, "interpreter", False,
                       lambda: Prepared(lambda: m.model.interpret(*args), m.outputs), expected, 1, warm_up=False))

    profile = stage_profile(m, args) if not systems[FRACTAL]["error"] else None
    cfg = m.CONFIGS[config]
    flops = float(USEFUL_FLOPS[name](cfg, args)) if name in USEFUL_FLOPS else None
    for rec in systems.values():
        if flops and rec["median_ms"]:
            rec["gflops"] = flops / rec["median_ms"] / 1e6
            rec["pct_peak"] = 100.0 * rec["gflops"] / peak if peak else None
    return {"model": name, "config": config, "sizes": cfg, "useful_gflop": flops and flops / 1e9,
            "systems": systems, "ratios": ratios(systems), "profile": profile}


def stage_profile(m, args, runs: int = 3, top: int = 3) -> dict:
    """Where fractal's time goes: the `top` stages by time over `runs` profiled runs (ms per
    run, share of the run, the stage's op kinds) and the threads the program ran on."""
    compiled = m.model.compile(*args, target=schedule_target(None))  # cached: the program just timed
    seconds: dict = {}
    t0 = time.perf_counter()
    for _ in range(runs):
        compiled.run(*args, profile=seconds)
    total = (time.perf_counter() - t0) / runs
    stages = {st.name: st for st in compiled.tile_ir.stages()}
    rows = []
    for stage, sec in sorted(seconds.items(), key=lambda kv: -kv[1])[:top]:
        kinds = []
        for op in stages[stage].body:
            kind = getattr(op, "combiner", None) and f"reduce_{op.combiner}" or type(op).__name__.lower()
            if kind not in kinds:
                kinds.append(kind)
        rows.append({"stage": stage, "ms": 1e3 * sec / runs, "share": sec / runs / total, "ops": kinds})
    return {"stages": rows, "threads": compiled._executable.threads}


def ratios(systems: dict) -> dict:
    """fractal's time over each other system's (below 1: fractal is faster), and its speedup
    over the interpreter."""
    frac = systems.get(FRACTAL, {}).get("median_ms")
    if not frac:
        return {}
    over = {n: frac / r["median_ms"] for n, r in systems.items() if n != FRACTAL and r["median_ms"]}
    out = {"fractal_time_over": over}
    if INTERPRETER in over:
        out["speedup_over_interpreter"] = 1.0 / over[INTERPRETER]
    peers = {n: r["median_ms"] for n, r in systems.items() if r["family"] in ("numpy", "torch", "jax")
             and r["median_ms"] and r.get("agrees", True)}
    if peers:
        best = min(peers, key=peers.get)
        out.update(best_peer=best, fractal_over_best_peer=frac / peers[best])
    return out


# -- the machine ----------------------------------------------------------------------------

def gemm_peak_gflops() -> tuple[float, str]:
    """float32 GEMM GFLOP/s of np.matmul on 1024 x 1024 operands (median of 5)."""
    try:
        from fractal.backends.cpu.host import gemm_gflops
        return float(gemm_gflops("float32", n=1024, repeats=5)), "fractal.backends.cpu.host (best of 5)"
    except ImportError:
        pass
    n = 1024
    a, b = (np.random.default_rng(s).standard_normal((n, n)).astype(np.float32) for s in (0, 1))
    a @ b
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9, "np.matmul (local)"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """HEAD's commit, read from .git without running git (None outside a checkout)."""
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return None


def load_average() -> float | None:
    """The 1-minute load average: other work on a small machine skews every timing (a
    thread pool waiting on a descheduled thread), so the results record it."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def machine() -> dict:
    return {"platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "load_average_start": load_average()}


def versions(families: dict) -> dict:
    import fractal
    return {"python": platform.python_version(), "numpy": np.__version__,
            "torch": families["torch"].version, "jax": families["jax"].version,
            "fractal": getattr(fractal, "__version__", None), "fractal_commit": git_commit()}


# -- the run --------------------------------------------------------------------------------

def cases(models, config: str | None) -> list[tuple[str, str]]:
    out = []
    for name in models:
        m = zoo.load(name)
        configs = (config,) if config else ("cpu",) + EXTRA_CONFIGS.get(name, ())
        out += [(name, c) for c in configs if c in m.CONFIGS]
    return out


def run_benchmark(models=None, *, config=None, repeats=5, quick=False, out_json=None, out_md=None) -> dict:
    """Run every case, write the JSON results and the markdown report, return the results."""
    families = load_families()
    repeats = 1 if quick else repeats
    peak, peak_source = gemm_peak_gflops()
    print(f"float32 GEMM peak: {peak:.1f} GFLOP/s ({peak_source})", file=sys.stderr, flush=True)
    results = {"benchmark": "cpu_backend", "dtype": np.dtype(DTYPE).name, "repeats": repeats, "quick": quick,
               "budget_s": BUDGET_S, "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
               "machine": machine(), "versions": versions(families),
               "gemm_peak_gflops": peak, "gemm_peak_source": peak_source,
               "tolerance": zoo.tolerance(DTYPE), "flop_formulas": FLOP_FORMULAS,
               "skipped_families": {f.name: f.error for f in families.values() if f.error}, "cases": []}
    for name, cfg in cases(models or zoo.available(), config):
        results["cases"].append(bench_case(name, cfg, families, repeats, not quick, peak))
    results["machine"]["load_average_end"] = load_average()
    results["goals"] = report.goals(results)
    out_json = Path(out_json or ROOT / "benchmarks" / "results" / "cpu_backend.json")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=2, default=float) + "\n")
    out_md = Path(out_md or ROOT / "BENCHMARKS.md")
    out_md.write_text(report.keep_gpu_sections(report.render(results), out_md))  # (gpu_check's sections stay)
    print(f"wrote {out_json} and {out_md}", file=sys.stderr)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", metavar="MODEL", help="zoo models (default: all)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per system (median; default 5)")
    ap.add_argument("--quick", action="store_true", help="1 repeat, no interpreter")
    ap.add_argument("--config", help="run every model at this one config instead of cpu (+ variants)")
    ap.add_argument("--out", help="results JSON (default benchmarks/results/cpu_backend.json)")
    ap.add_argument("--markdown", help="report (default BENCHMARKS.md at the repository root)")
    opts = ap.parse_args(argv)
    unknown = [n for n in opts.models or () if n not in zoo.MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; the zoo has: {', '.join(zoo.MODELS)}")
    if opts.repeats < 1:
        ap.error("--repeats must be at least 1")
    results = run_benchmark(opts.models, config=opts.config, repeats=opts.repeats, quick=opts.quick,
                            out_json=opts.out, out_md=opts.markdown)
    print(report.table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
