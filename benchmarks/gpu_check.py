"""The one-shot GPU check: the CUDA backend's tests, the zoo's answers and its speed on this
machine's NVIDIA GPU, in about 8 minutes, written up as a per-GPU section of BENCHMARKS.md.

    python benchmarks/gpu_check.py [--out results.json] [--markdown BENCHMARKS.md] [--budget 480]
    fractal bench --target cuda [--models M ...]

1. `pytest tests/backends/cuda -q`: the GPU tests there (`test_gpu.py`) must run, not skip.
2. Every zoo model at `small`, compiled for this GPU (`ft.targets.cuda(its arch)`), against the
   interpreter (max abs error within `examples.zoo.tolerance(float32)`).
3. Every zoo model at `paper`, timed with the CPU benchmark's harness (`cpu_backend.Timed`,
   `interleave`: an untimed warm-up run checked against the NumPy reference, then timed runs,
   round-robin, the median) beside the PyTorch peers (`benchmarks/peers`: cuDNN `nn.LSTM` and
   `nn.GRU`, `scaled_dot_product_attention`, eager code) on the GPU where torch has CUDA.
   Every timed call synchronises the device before the clock is read (CuPy's for fractal,
   `torch.cuda.synchronize` for PyTorch).  fractal's tensor arguments are on the GPU before the
   clock starts (CuPy arrays) and its results stay there (`keep_on_device=True`), as a PyTorch
   peer's do; its list arguments (FractalTensors) are copied in by every call.

Every model gets a time box (what is left of `--budget`, shared among the models still to run,
at most `MODEL_CAP_S`); a model over its box stops there with a note, and once the budget is
spent the remaining models are skipped with a note.  On a machine without CuPy or without a GPU
the script says so in one line and exits 2 before running anything.
"""

from __future__ import annotations

import _thread
import argparse
import contextlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/gpu_check.py` from a checkout
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks import cpu_backend as harness  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks.peers import Prepared, load_family  # noqa: E402

BUDGET_S = 480.0                # the whole check
TESTS_S = 150.0                 # pytest tests/backends/cuda at most
SMALL_SHARE = 0.25              # of what is left after the tests: the `small` answers
MODEL_CAP_S = 60.0              # one model's box at `paper`
SYSTEM_BUDGET_S = 2.0           # timed seconds per system (the CPU harness's BUDGET_S)
FRACTAL = "fractal cuda"
DTYPE = np.float32


class OverBudget(BaseException):
    """A time box ran out (a BaseException: the harness's `except Exception` lets it through)."""


_OPEN: list[dict] = []  # the open time boxes, innermost last


def _expire(signum, frame) -> None:
    fired = [box for box in _OPEN if box["fired"]]
    if fired:  # (else a box that has just closed: nothing to stop)
        raise OverBudget(f"over its {fired[-1]['seconds']:.0f} s box")


@contextlib.contextmanager
def time_box(seconds: float):
    """Raise `OverBudget` in this (main) thread after `seconds`, at its next Python bytecode (a
    kernel already launched finishes first).  A timer thread trips the main thread's handler
    (`_thread.interrupt_main`) rather than an OS signal arriving in the middle of C code (the
    emulated GPU's fibers do not survive one).  Boxes nest, each counting its own time."""
    box = {"seconds": seconds, "fired": False}

    def fire():
        box["fired"] = True
        _thread.interrupt_main(signal.SIGUSR1)
    previous = signal.signal(signal.SIGUSR1, _expire)
    timer = threading.Timer(max(seconds, 0.0), fire)
    timer.daemon = True
    _OPEN.append(box)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        _OPEN.remove(box)
        signal.signal(signal.SIGUSR1, previous)


class Clock:
    def __init__(self, budget: float):
        self.start, self.budget = time.perf_counter(), budget

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)


# -- the GPU --------------------------------------------------------------------------------

def gpu_target():
    """(target, "GPU name (sm_XY)") for this machine's GPU, or (None, why there is none)."""
    import fractal as ft
    from fractal.backends.cuda import cupy_device
    from fractal.backends.cuda.presets import REFERENCE
    try:
        _, name, arch = cupy_device.gpu_of(cupy_device.import_cupy())
    except ft.DeviceError as e:
        return None, e.message
    fits = [a for a in REFERENCE if cupy_device._capability(a) <= cupy_device._capability(arch)]
    if not fits:
        return None, f"the GPU ({name}, {arch}) is older than every CUDA target ({', '.join(REFERENCE)})"
    return ft.targets.cuda(arch if arch in REFERENCE else fits[-1]), f"{name} ({arch})"


def _map(x, fn):
    """`fn` on every array of a nest of tuples and lists (named tuples kept)."""
    if isinstance(x, tuple):
        items = [_map(v, fn) for v in x]
        return type(x)(*items) if hasattr(x, "_fields") else tuple(items)
    if isinstance(x, list):
        return [_map(v, fn) for v in x]
    return fn(x)


def on_device(compiled, args):
    """`args` with every NumPy tensor on the compiled program's device (its `xp`'s arrays)."""
    xp = getattr(compiled._executable.device, "xp", np)
    return _map(args, lambda a: xp.asarray(a) if isinstance(a, np.ndarray) else a)


def to_host(compiled, out):
    device = compiled._executable.device
    return _map(out, lambda a: a if isinstance(a, np.ndarray) or not hasattr(a, "shape") else device.to_host(a))


def synchronize(compiled) -> None:
    sync = getattr(compiled._executable.device, "synchronize", None)
    if sync is not None:
        sync()


# -- 1. the tests ---------------------------------------------------------------------------

def run_tests(seconds: float) -> dict:
    """`pytest tests/backends/cuda -q -rs`: its summary, and whether the GPU tests ran."""
    cmd = [sys.executable, "-m", "pytest", "tests/backends/cuda", "-q", "-rs", "-p", "no:cacheprovider"]
    if importlib.util.find_spec("xdist") is not None:  # (the emulation tests are CPU work: spread them)
        cmd += ["-n", str(min(8, os.cpu_count() or 1))]
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=seconds)
    except subprocess.TimeoutExpired:
        return {"ok": False, "summary": f"timed out after {seconds:.0f} s", "seconds": seconds, "gpu_skips": []}
    lines = done.stdout.strip().splitlines()
    summary = next((ln.strip("= ") for ln in reversed(lines) if re.search(r"\d+ (passed|failed|error)", ln)),
                   lines[-1] if lines else done.stderr.strip()[-200:])
    gpu_skips = [ln for ln in lines if ln.startswith("SKIPPED") and "test_gpu.py" in ln]
    return {"ok": done.returncode == 0 and not gpu_skips, "summary": summary, "gpu_skips": gpu_skips[:3],
            "seconds": time.perf_counter() - t0}


# -- 2. the answers at small ----------------------------------------------------------------

def check_small(models, target, clock: Clock, seconds: float) -> list[dict]:
    """Each model at `small` on `target` against the interpreter, in a box of its share."""
    from examples import zoo
    rows, end = [], time.perf_counter() + seconds
    for k, name in enumerate(models):
        left = end - time.perf_counter()
        if left <= 0 or clock.left() <= 0:
            rows += [{"model": n, "error": "skipped: the budget of the small checks is spent"} for n in models[k:]]
            break
        rows.append(_check_one(zoo, name, target, min(left / (len(models) - k) * 2, left)))
        print(f"  small {name}: {rows[-1].get('error') or 'max abs error %.1e' % rows[-1]['max_abs_error']}",
              file=sys.stderr, flush=True)
    return rows


def _check_one(zoo, name, target, seconds: float) -> dict:
    m = zoo.load(name)
    row = {"model": name, "error": None}
    try:
        with time_box(seconds):
            args = m.inputs("small", dtype=DTYPE)
            compiled = m.model.compile(*args, target=target)
            got = m.outputs(to_host(compiled, compiled.run(*args)))
            want = m.outputs(m.model.interpret(*args))
        err = zoo.max_abs_error(got, want)
        row.update(max_abs_error=err, agrees=bool(err <= zoo.tolerance(DTYPE)))
    except OverBudget as e:
        row["error"] = str(e)
    except Exception as e:
        row["error"] = harness.error_text(e)
    return row


# -- 3. the speed at paper ------------------------------------------------------------------

def torch_peers():
    """The PyTorch family on the GPU (torch's default device made CUDA), or (None, why not)."""
    try:
        import torch
    except ImportError as e:
        return None, f"torch is not installed ({e})"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} has no CUDA here"
    torch.set_default_device("cuda")
    family = load_family("torch")
    return (family, "") if family.error is None else (None, family.error)


def _synced(prepared: Prepared, sync) -> Prepared:
    def run():
        out = prepared.run()
        sync()
        return out
    return Prepared(run, prepared.to_reference)


def fractal_prepare(m, args, target, rec: dict):
    def prepare():
        t0 = time.perf_counter()
        compiled = m.model.compile(*args, target=target)
        rec["compile_ms"] = 1e3 * (time.perf_counter() - t0)
        resident = on_device(compiled, args)
        run = Prepared(lambda: compiled.run(*resident, keep_on_device=True),
                       lambda out: m.outputs(to_host(compiled, out)))
        return _synced(run, lambda: synchronize(compiled))
    return prepare


def time_case(name: str, config: str, target, peers, repeats: int, seconds: float) -> dict:
    """One model at `config`: fractal on `target` and the GPU peers, timed by the CPU harness."""
    from examples import zoo
    m = zoo.load(name)
    case = {"model": name, "config": config, "systems": {}, "note": None, "useful_gflop": None}
    args = None
    try:
        with time_box(seconds):
            t0 = time.perf_counter()
            args = m.inputs(config, dtype=DTYPE)
            expected = None
            try:
                with time_box(max(1.0, 0.4 * seconds - (time.perf_counter() - t0))):
                    expected = m.reference(*args)
            except OverBudget:
                case["note"] = "the NumPy reference ran over its share of the box: results unchecked"
            rec: dict = {}
            timed = [harness.Timed(FRACTAL, "fractal", False, fractal_prepare(m, args, target, rec), expected)]
            timed[0].rec.update(rec)
            if peers is not None:
                import torch
                for peer in peers.peers.get(name, ()):
                    timed.append(harness.Timed(peer.name, "torch", peer.library,
                                               lambda peer=peer: _synced(peer.prepare(m, args), torch.cuda.synchronize),
                                               expected))
            for r in harness.interleave(timed, repeats):
                case["systems"][r["name"]] = r
    except OverBudget as e:
        case["note"] = f"stopped: {e}" + (f" ({case['note']})" if case["note"] else "")
    cfg = m.CONFIGS[config]
    flops = harness.USEFUL_FLOPS.get(name)
    if flops and args is not None:  # (None: the box ran out while making them)
        case["useful_gflop"] = float(flops(cfg, args)) / 1e9
    peak = target.hardware.peak("float32")
    for r in case["systems"].values():
        if case["useful_gflop"] and r.get("median_ms"):
            r["gflops"] = case["useful_gflop"] / r["median_ms"] * 1e3
            r["pct_peak"] = 100.0 * r["gflops"] / peak
    frac = case["systems"].get(FRACTAL, {}).get("median_ms")
    peer_ms = {n: r["median_ms"] for n, r in case["systems"].items()
               if n != FRACTAL and r.get("median_ms") and r.get("agrees", True)}
    if frac and peer_ms:
        best = min(peer_ms, key=peer_ms.get)
        case["best_peer"], case["speedup_over_best_peer"] = best, peer_ms[best] / frac
    print(f"  {config} {name}: " + ", ".join(f"{n} {report._ms(r['median_ms'])} ms" if r.get("median_ms") else
                                              f"{n} {r['error']}" for n, r in case["systems"].items())
          + (f" [{case['note']}]" if case["note"] else ""), file=sys.stderr, flush=True)
    return case


def time_cases(models, config: str, target, peers, repeats: int, clock: Clock) -> tuple[list[dict], list[str]]:
    cases, skipped = [], []
    from examples import zoo
    for k, name in enumerate(models):
        if config not in zoo.load(name).CONFIGS:
            continue
        left = clock.left()
        if left < 5.0:
            skipped = list(models[k:])
            break
        cases.append(time_case(name, config, target, peers, repeats, min(MODEL_CAP_S, left / (len(models) - k) * 1.5,
                                                                          left)))
    return cases, skipped


# -- the report -----------------------------------------------------------------------------

def section(results: dict) -> str:
    """The markdown section of this GPU (`report.splice_gpu_section` puts it in BENCHMARKS.md)."""
    v, tests = results["versions"], results["tests"]
    lines = [f"## GPU: {results['gpu']}", "",
             f"Generated by `python benchmarks/gpu_check.py` (or `fractal bench --target cuda`) on {results['date']}; "
             f"target `{results['target']}`; fractal commit `{(v.get('fractal_commit') or '?')[:12]}`, "
             f"CuPy {v.get('cupy') or '?'}, torch {v.get('torch') or 'not installed'}. float32, ragged inputs; "
             f"median of up to {results['repeats']} timed runs after a warm-up, the device synchronised before "
             f"every clock read; {results['seconds']:.0f} s in all. fractal's tensor arguments are CuPy arrays "
             f"and its results stay on the GPU, as the peers' do; its list arguments (FractalTensors) are "
             f"copied to the GPU by every call, which the peers, given padded tensors, are not.", "",
             f"- **Tests** (`pytest tests/backends/cuda`): {'OK' if tests['ok'] else 'FAILED'}: {tests['summary']}"
             + ("; the GPU tests skipped: " + tests["gpu_skips"][0] if tests["gpu_skips"] else ""),
             "- **Peers**: " + (results["peers_note"] or "PyTorch on the GPU"), ""]
    small = results["small"]
    agree = sum(1 for r in small if r.get("agrees"))
    lines += [f"### Every model at `small` against the interpreter: {agree} of {len(small)} agree", "",
              *report._table(["model", "max abs error", "status"],
                             [[r["model"], "—" if r.get("max_abs_error") is None else f"{r['max_abs_error']:.1e}",
                               r["error"] or ("agrees" if r["agrees"] else "DISAGREES")] for r in small]), ""]
    rows = []
    for c in results["paper"]:
        frac = c["systems"].get(FRACTAL, {})
        peers = [r for n, r in c["systems"].items() if n != FRACTAL and r.get("median_ms")]
        best = min(peers, key=lambda r: r["median_ms"]) if peers else None
        rows.append([c["model"], c["config"], _cell(frac), report._ms(frac.get("compile_ms")),
                     f"{_cell(best)} ({report._short(best['name'])})" if best else "—",
                     f"{c['speedup_over_best_peer']:.2f}x" if c.get("speedup_over_best_peer") else "—",
                     "—" if frac.get("pct_peak") is None else f"{frac['pct_peak']:.1f}%", c["note"] or ""])
    lines += ["### The zoo at `paper`", "",
              *report._table(["model", "config", "fractal cuda ms", "compile ms", "best torch ms (which)",
                              "fractal speedup over best peer", "% fp32 peak (fractal)", "note"], rows), "",
              "(!) marks a result that disagrees with the NumPy reference; *failed* systems are listed below.", ""]
    errors = [f"- {c['model']} [{c['config']}] {n}: {r['error']}" for c in results["paper"]
              for n, r in c["systems"].items() if r.get("error")]
    skipped = [f"- {n}: not run, the budget was spent" for n in results["skipped"]]
    if errors or skipped:
        lines += ["Notes:", "", *errors, *skipped, ""]
    return "\n".join(lines)


def _cell(r) -> str:
    if not r:
        return "—"
    if r.get("error"):
        return "failed"
    return report._ms(r.get("median_ms")) + ("" if r.get("agrees", True) else " (!)")


def versions() -> dict:
    out = {"fractal_commit": harness.git_commit(), "cupy": None, "torch": None}
    for lib in ("cupy", "torch"):
        try:
            out[lib] = __import__(lib).__version__
        except ImportError:
            pass
    return out


# -- the run --------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", metavar="MODEL", help="zoo models (default: all)")
    ap.add_argument("--repeats", type=int, default=10, help="timed runs per system at most (median; default 10)")
    ap.add_argument("--budget", type=float, default=BUDGET_S, help=f"seconds in all (default {BUDGET_S:.0f})")
    ap.add_argument("--skip-tests", action="store_true", help="do not run pytest tests/backends/cuda")
    ap.add_argument("--out", help="results JSON (default benchmarks/results/gpu_<gpu>.json)")
    ap.add_argument("--markdown", help="the markdown file whose section of this GPU is written "
                                       "(default BENCHMARKS.md at the repository root)")
    opts = ap.parse_args(argv)
    target, gpu = gpu_target()
    if target is None:
        print(f"gpu_check: no GPU to check here ({gpu}); nothing was run", file=sys.stderr)
        return 2
    from examples import zoo
    models = opts.models or zoo.available()
    unknown = [n for n in models if n not in zoo.MODELS]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; the zoo has: {', '.join(zoo.MODELS)}")
    clock = Clock(opts.budget)
    harness.BUDGET_S = SYSTEM_BUDGET_S
    print(f"gpu_check on {gpu}, target {target.name}, {opts.budget:.0f} s", file=sys.stderr, flush=True)
    tests = ({"ok": True, "summary": "not run (--skip-tests)", "gpu_skips": [], "seconds": 0.0} if opts.skip_tests
             else run_tests(min(TESTS_S, clock.left() * 0.4)))
    print(f"  tests: {tests['summary']}", file=sys.stderr, flush=True)
    small = check_small(models, target, clock, clock.left() * SMALL_SHARE)
    peers, why = torch_peers()
    paper, skipped = time_cases(models, "paper", target, peers, opts.repeats, clock)
    results = {"benchmark": "gpu_check", "gpu": gpu, "target": target.name, "date": time.strftime("%Y-%m-%d %H:%M %z"),
               "versions": versions(), "repeats": opts.repeats, "tests": tests, "small": small, "paper": paper,
               "skipped": skipped, "peers_note": why and f"none ({why})", "seconds": opts.budget - clock.left()}
    slug = re.sub(r"[^a-z0-9]+", "_", gpu.lower()).strip("_")
    out_json = Path(opts.out or ROOT / "benchmarks" / "results" / f"gpu_{slug}.json")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=2, default=float) + "\n")
    out_md = Path(opts.markdown or ROOT / "BENCHMARKS.md")
    out_md.write_text(report.splice_gpu_section(out_md.read_text() if out_md.is_file() else "", gpu,
                                                section(results)))
    print(f"wrote {out_json} and the {gpu} section of {out_md}", file=sys.stderr)
    wrong = [r for r in small if not (r.get("agrees") or (r["error"] or "").startswith("skipped"))]
    return 0 if tests["ok"] and not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
