"""The CPU benchmark harness (benchmarks/cpu_backend.py), run small: two zoo models at their
`small` configuration, one timed run each, into a temporary folder.  Structure only: the
machine is shared, so nothing here asserts on a timing."""

import json
import time
from types import SimpleNamespace

import pytest

from benchmarks import cpu_backend, report
from benchmarks.peers import Prepared
from fractal.lower.tile_ir import TileProgram

MODELS = ("stacked_lstm", "flash_attention")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    results = cpu_backend.run_benchmark(list(MODELS), config="small", repeats=1,
                                        out_json=out / "cpu_backend.json", out_md=out / "BENCHMARKS.md")
    return results, out


def test_the_json_has_the_machine_the_versions_the_peak_and_one_case_per_model(run):
    _, out = run
    saved = json.loads((out / "cpu_backend.json").read_text())
    assert saved["machine"]["cpu"] and saved["machine"]["cores"] >= 1
    assert {"python", "numpy", "torch", "jax", "fractal_commit"} <= set(saved["versions"])
    assert saved["gemm_peak_gflops"] > 0
    assert [(c["model"], c["config"]) for c in saved["cases"]] == [(m, "small") for m in MODELS]


def test_every_system_has_a_time_or_an_error(run):
    results, _ = run
    for case in results["cases"]:
        assert {"numpy reference", "fractal cpu", "interpreter"} <= set(case["systems"])
        for rec in case["systems"].values():
            assert (rec["median_ms"] is None) == (rec["error"] is not None), rec
            if rec["error"] is None:
                assert rec["median_ms"] > 0 and rec["repeats"] == 1


def test_the_interpreter_is_checked_against_the_reference(run):
    results, _ = run
    for case in results["cases"]:
        interp = case["systems"]["interpreter"]
        assert interp["agrees"] and interp["max_abs_error"] <= results["tolerance"]


def test_gemm_heavy_models_report_useful_flops_and_the_share_of_the_peak(run):
    results, _ = run
    for case in results["cases"]:
        assert case["useful_gflop"] > 0
        ref = case["systems"]["numpy reference"]
        assert ref["gflops"] > 0 and ref["pct_peak"] == pytest.approx(100 * ref["gflops"] / results["gemm_peak_gflops"])


def test_torch_peers_run_and_agree_with_the_reference(run):
    pytest.importorskip("torch")
    results, _ = run
    systems = {c["model"]: c["systems"] for c in results["cases"]}
    assert systems["stacked_lstm"]["torch nn.LSTM (packed)"]["agrees"]
    assert systems["stacked_lstm"]["torch eager cell loop"]["agrees"]
    assert systems["flash_attention"]["torch SDPA"]["agrees"]


def test_the_markdown_has_the_results_and_goals_tables(run):
    _, out = run
    md = (out / "BENCHMARKS.md").read_text()
    assert "| model | config | fractal cpu ms | compile ms | interpreter ms |" in md
    for model in MODELS:
        assert f"| {model} | small |" in md
    assert "## Goals" in md and "every model >= 20x faster than the interpreter" in md
    assert "## Where fractal's time goes" in md


def test_each_case_profiles_its_top_stages(run):
    """Which stages dominate fractal's time (the goals' misses are explained from it)."""
    results, _ = run
    for case in results["cases"]:
        prof = case["profile"]
        assert prof["threads"] >= 1 and 1 <= len(prof["stages"]) <= 3
        times = [r["ms"] for r in prof["stages"]]
        assert times == sorted(times, reverse=True) and all(0 <= r["share"] <= 1.5 for r in prof["stages"])
        assert all(r["ops"] and r["stage"] for r in prof["stages"])
    (lstm,) = [c for c in results["cases"] if c["model"] == "stacked_lstm"]
    assert any("gemm" in r["ops"] for r in lstm["profile"]["stages"])


def test_quick_skips_the_interpreter(tmp_path):
    results = cpu_backend.run_benchmark(["b2b_gemm"], config="small", quick=True,
                                        out_json=tmp_path / "r.json", out_md=tmp_path / "r.md")
    (case,) = results["cases"]
    assert results["repeats"] == 1 and "interpreter" not in case["systems"]
    assert "numpy (A@B)@C" in case["systems"]


def test_a_failing_system_is_recorded_and_the_run_goes_on():
    def boom():
        raise ValueError("no backend\nsecond line")
    rec = cpu_backend.run_system("x", "fractal", False, boom, None, 1)
    assert rec["error"] == "ValueError: no backend" and rec["median_ms"] is None
    rec = cpu_backend.run_system("y", "numpy", False, lambda: Prepared(lambda: [1.0], lambda r: r), [2.0], 1)
    assert rec["error"] is None and not rec["agrees"] and rec["max_abs_error"] == 1.0


def _recording_systems(calls, sleep_s=0.0):
    def run(n):
        calls.append(n)
        time.sleep(sleep_s)
    return [cpu_backend.Timed(n, "numpy", False, lambda n=n: Prepared(lambda: run(n), lambda r: r), None)
            for n in "ab"]


def test_systems_are_timed_round_robin_after_their_warm_ups(monkeypatch):
    monkeypatch.setattr(cpu_backend, "SHORT_S", 0.0)  # (no case counts as short)
    calls = []
    recs = cpu_backend.interleave(_recording_systems(calls), 3)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert [r["repeats"] for r in recs] == [3, 3] and all(r["error"] is None for r in recs)


def test_a_case_of_short_runs_gets_more_runs(monkeypatch):
    """Runs of a few milliseconds sway with the machine: a case where some system runs that
    short is repeated 5x as often (b2b_gemm's 3 ms beside torch's 28 ms); a case of slower
    systems keeps the asked-for count."""
    monkeypatch.setattr(cpu_backend, "SHORT_S", 0.05)  # wide of a busy machine's hiccups
    assert [r["repeats"] for r in cpu_backend.interleave(_recording_systems([]), 2)] == [10, 10]
    assert [r["repeats"] for r in cpu_backend.interleave(_recording_systems([], sleep_s=0.06), 2)] == [2, 2]
    mixed = _recording_systems([])[:1] + _recording_systems([], sleep_s=0.06)[1:]
    assert [r["repeats"] for r in cpu_backend.interleave(mixed, 2)] == [10, 10]


def test_a_compiled_model_gets_its_compile_time_ratios_and_interpreter_speedup(monkeypatch, tmp_path):
    from fractal.lang.function import Function

    class Compiled:  # stands in for the CPU backend: runs the interpreter
        tile_ir = TileProgram("p", [], [])
        _executable = SimpleNamespace(threads=1)

        def __init__(self, fn):
            self.fn = fn

        def run(self, *args, profile=None):
            return self.fn.interpret(*args)
    monkeypatch.setattr(Function, "compile", lambda self, *args, target: Compiled(self), raising=False)
    results = cpu_backend.run_benchmark(["b2b_gemm"], config="small", repeats=1,
                                        out_json=tmp_path / "r.json", out_md=tmp_path / "r.md")
    (case,) = results["cases"]
    frac = case["systems"]["fractal cpu"]
    assert frac["error"] is None and frac["agrees"] and frac["compile_ms"] >= 0
    ratios = case["ratios"]
    assert ratios["speedup_over_interpreter"] > 0 and ratios["best_peer"] in case["systems"]
    assert set(ratios["fractal_time_over"]) == set(case["systems"]) - {"fractal cpu"}


def _system(name, family, ms, **extra):
    return {"name": name, "family": family, "median_ms": ms, "error": None, "agrees": True, **extra}


def _case(model, config, *systems):
    recs = {r["name"]: r for r in systems}
    return {"model": model, "config": config, "systems": recs, "ratios": cpu_backend.ratios(recs)}


def test_goals_compare_fractal_with_the_named_peers():
    results = {"cases": [
        _case("b2b_gemm", "cpu", _system("fractal cpu", "fractal", 10.0), _system("interpreter", "interpreter", 500.0),
              _system("numpy (A@B)@C", "numpy", 9.0)),
        _case("stacked_lstm", "cpu", _system("fractal cpu", "fractal", 10.0, pct_peak=70.0),
              _system("interpreter", "interpreter", 100.0))]}
    rows = {(g["goal"], g["case"]): g for g in report.goals(results)}
    assert rows[("b2b_gemm >= 0.9x the speed of NumPy's two GEMMs", "b2b_gemm [cpu]")]["status"] == "met"
    assert rows[("stacked_lstm reaches >= 80% of the float32 GEMM peak", "stacked_lstm [cpu]")]["status"] \
        == "missed by 12%"
    assert rows[("stacked_lstm time <= 1.15x nn.LSTM", "stacked_lstm [cpu]")]["status"] == "not measured"
    worst = rows[("every model >= 20x faster than the interpreter", "slowest: stacked_lstm [cpu]")]
    assert worst["value"] == 10.0 and worst["status"] == "missed by 50%"


def test_goal_status_says_met_missed_by_or_not_measured():
    assert report._status(1.1, 1.15, at_least=False) == "met"
    assert report._status(1.38, 1.15, at_least=False) == "missed by 20%"
    assert report._status(1.2, 1.5, at_least=True) == "missed by 20%"
    assert report._status(None, 1.5, at_least=True) == "not measured"


def test_fractal_bench_calls_the_benchmark(monkeypatch):
    from fractal.cli import main
    seen = []
    monkeypatch.setattr(cpu_backend, "main", lambda argv: seen.append(argv) or 0)
    assert main(["bench", "--quick", "--models", "b2b_gemm", "grid_rnn"]) == 0
    assert seen == [["--repeats", "5", "--quick", "--models", "b2b_gemm", "grid_rnn"]]


@pytest.mark.skipif(not cpu_backend.native_compiler(), reason="no host C++ compiler: the native backend is not timed")
def test_the_native_backend_is_timed_beside_the_cpu_backend_and_has_its_own_section(run):
    results, out = run
    for case in results["cases"]:
        native = case["systems"]["fractal native"]
        assert native["error"] is None and native["agrees"] and native["compile_ms"] > 0
    page = (out / "BENCHMARKS.md").read_text()
    section = page.split("## The native backend", 1)[1].split("\n## ", 1)[0]
    assert [r["case"] for r in report.native_rows(results)] == [f"{m} [small]" for m in MODELS]
    for m in MODELS:
        assert f"| {m} [small] |" in section
