"""How long compiling for the cpu backend takes on every zoo model at its `paper` configuration,
and how much memory it needs.

    python benchmarks/compile_time.py [--config paper] [MODEL ...]

Each model compiles in a fresh Python process (so its peak resident memory is its own, and no
compile cache is warm): the seconds of each stage `Compiled.seconds` reports (trace, lower,
passes, backend build) and the process's peak RSS.  Input generation is not timed.  Lowering
runs the access operators per point of each combinator's domain, so its cost grows with the
sizes (unlike the symbolic analysis, `benchmarks/analysis_time.py`); the goal is under a second
per model at the `cpu` configurations, which `benchmarks/cpu_backend.py` reports.

Writes `benchmarks/results/compile_time_<config>.json` (machine and versions with it) and prints
a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/compile_time.py` from a checkout
    sys.path.insert(0, str(ROOT))

from benchmarks.analysis_time import machine, versions  # noqa: E402
from examples import zoo  # noqa: E402

# run in the child: compile once, print one JSON line
_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from examples import zoo
m = zoo.load({name!r})
args = m.inputs({config!r})
t0 = time.perf_counter()
compiled = m.model.compile(*args, target="cpu-generic")  # (a named target: the same work anywhere)
total = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
print(json.dumps({{"seconds": compiled.seconds, "total_s": total, "peak_rss_bytes": rss}}))
"""


def measure(name: str, config: str, timeout_s: float = 600.0) -> dict:
    """Compile one model in a fresh process; a failure or a timeout is recorded, not raised."""
    row = {"model": name, "config": config, "seconds": None, "total_s": None, "peak_rss_bytes": None,
           "error": None}
    code = _CHILD.format(root=str(ROOT), name=name, config=config)
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        row["error"] = f"timed out after {timeout_s:g} s"
        return row
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        row["error"] = lines[-1] if lines else f"exit status {done.returncode}"
        return row
    row.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return row


def table(rows) -> str:
    stages = ("trace", "lower", "passes", "backend")
    head = f"{'model':<26} {'total (s)':>9} " + " ".join(f"{s:>8}" for s in stages) + f" {'peak RSS':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r["error"]:
            lines.append(f"{r['model']:<26} failed: {r['error']}")
            continue
        parts = " ".join(f"{r['seconds'].get(s, 0.0):>8.2f}" for s in stages)
        lines.append(f"{r['model']:<26} {r['total_s']:>9.2f} {parts} {r['peak_rss_bytes'] / 2**30:>7.2f} GB")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", help="zoo models (default: all)")
    ap.add_argument("--config", default="paper")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per model (default 600)")
    ap.add_argument("--out", help="results JSON (default benchmarks/results/compile_time_<config>.json)")
    opts = ap.parse_args(argv)
    rows = []
    for name in opts.models or zoo.available():
        row = measure(name, opts.config, opts.timeout)
        rows.append(row)
        print(f"  {name}: {row['error'] or format(row['total_s'], '.2f') + ' s'}", file=sys.stderr, flush=True)
    print(f"cpu-backend compile time and peak memory, config {opts.config!r}, one fresh process per model")
    print(table(rows))
    out = Path(opts.out or ROOT / "benchmarks" / "results" / f"compile_time_{opts.config}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "compile_time", "config": opts.config, "machine": machine(),
                               "versions": versions(), "results": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
