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
    assert "OK" in out and "compile" in out and "cpu" in out and "func @model(" in out


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
