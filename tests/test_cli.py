"""The `fractal` command line."""

import pytest

from fractal.cli import main


def test_models_lists_the_zoo(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "stacked_lstm" in out and "configs: small" in out


def test_run_checks_against_the_reference_and_times(capsys):
    assert main(["run", "stacked_lstm", "--dtype", "float64", "--print-ir"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "compile" in out and "host" in out and "func @model(" in out


def test_run_for_a_named_target(capsys):
    assert main(["run", "grid_rnn", "--target", "xeon-8480"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["run", "grid_rnn", "--target", "z80"]) == 2
    assert "unknown target 'z80'; the targets are host, cpu-generic" in capsys.readouterr().err
    assert main(["run", "grid_rnn", "--target", "xeon-8480", "--backend", "interpreter"]) == 2
    assert "target 'xeon-8480' runs on the 'cpu' backend, not 'interpreter'" in capsys.readouterr().err


def test_targets_prints_every_number_and_its_source(capsys, monkeypatch):
    monkeypatch.setenv("FRACTAL_HOST", "graviton3")
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for name in ("host (backend cpu)", "cpu-generic (backend cpu)", "epyc-9654", "xeon-8480", "interpreter"):
        assert name in out
    assert "FRACTAL_HOST=graviton3" in out and "peak GFLOP/s" in out and "policy: CpuPolicy(" in out
    assert main(["targets", "nope"]) == 2
    assert "unknown target 'nope'" in capsys.readouterr().err


def test_targets_measure_measures_the_host_again(capsys, monkeypatch, tmp_path):
    from fractal.backends.cpu import host
    monkeypatch.delenv("FRACTAL_HOST", raising=False)
    monkeypatch.setenv("FRACTAL_CACHE_DIR", str(tmp_path))
    rates = iter([10.0, 5.0, 20.0, 10.0])
    monkeypatch.setattr(host, "gemm_gflops", lambda dtype: next(rates))
    monkeypatch.setattr(host, "copy_gbs", lambda: 9.0)
    host._measured.cache_clear()
    try:
        assert main(["targets", "host"]) == 0 and "float32 10" in capsys.readouterr().out
        assert main(["targets", "host", "--measure"]) == 0 and "float32 20" in capsys.readouterr().out
        assert main(["targets", "host"]) == 0 and "float32 20" in capsys.readouterr().out  # kept
    finally:
        host._measured.cache_clear()


def test_run_on_the_interpreter(capsys):
    assert main(["run", "stacked_lstm", "--backend", "interpreter"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "interpreter" in out and "compile" not in out


def test_run_prints_the_tile_ir(capsys):
    assert main(["run", "b2b_gemm", "--print-tile-ir"]) == 0
    out = capsys.readouterr().out
    assert "== tile IR ==" in out and "tile @model {" in out and "gemm(" in out


def test_run_rejects_unknown_models_and_configs(capsys):
    assert main(["run", "no_such_model"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["run", "stacked_lstm", "--config", "huge"]) == 2
    assert "has no config 'huge'" in capsys.readouterr().err


def test_progress_bar_reports_steps():
    from fractal.cli import _Bar
    import io
    stream = io.StringIO()
    bar = _Bar("interpreter", stream)
    bar.start -= 10  # pretend the run has been going for a while
    bar(3, 8)
    bar.close()
    assert "3/8 steps" in stream.getvalue()


def test_usage_error_exits():
    with pytest.raises(SystemExit):
        main([])
