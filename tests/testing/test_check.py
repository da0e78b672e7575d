"""`ft.testing.check`: a model against a NumPy reference on every backend.

Planted bugs in the reference are caught with a small counterexample that is valid Python
and reproduces the failure; the semantics checks (text round trip, determinism, declared
properties) each catch a planted failure; a backend that disagrees is named; mistakes in the
call are `ft.FractalError`s at the caller's line."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import strategies as st

import fractal as ft
from fractal import backends
from fractal.backends.interpreter import InterpreterBackend
from fractal.lower.target import Target
from fractal.testing import CheckWarning, check, checks, compare, fractal_tensors, tensors

F64 = ft.float64
SEQS = ft.FractalTensor[ft.FractalTensor[ft.Tensor[(1, 2), F64]]]
SEQ = ft.FractalTensor[ft.Tensor[(2,), F64]]
SMALL = st.floats(-1, 1)
FAST = dict(max_examples=25, derandomize=True)


@ft.function
def last_states(batch: SEQS, u: ft.Tensor[(2, 2), F64]):
    """The final state of an RNN over each sequence of a ragged batch."""
    h0 = ft.ones((1, 2), F64)
    return ft.map(lambda seq: ft.fold(lambda h, x: ft.tanh(x + h @ u), seq, h0), batch)


BATCHES = st.tuples(fractal_tensors(SEQS, max_len=4, elements=SMALL), tensors((2, 2), F64, elements=SMALL))


def masked_rnn(padded, u):
    """Correct: pads, runs every step, keeps a sequence's state once it has ended."""
    x, lengths = padded
    h = np.ones((x.shape[0], 1, 2))
    for t in range(x.shape[1]):
        step = np.tanh(x[:, t] + h @ u)
        h = np.where((t < lengths)[:, None, None], step, h)
    return h


def unmasked_rnn(padded, u):
    """Planted bug: forgets the ragged mask (runs the recurrence over the padding)."""
    x, _ = padded
    h = np.ones((x.shape[0], 1, 2))
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] + h @ u)
    return h


def failure(run) -> str:
    with pytest.raises(AssertionError) as info:
        run()
    return str(info.value)


def counterexample(message: str) -> str:
    """The pasteable code of a failure message."""
    code = message.split("(paste it into a test):\n\n", 1)[1].split("\n\n")[0]
    return "\n".join(line[4:] for line in code.splitlines())


def replay(message: str, **names) -> dict:
    namespace = dict(names)
    exec(compile(counterexample(message), "<counterexample>", "exec"), namespace)
    return namespace


# ---- planted bugs in the reference ---------------------------------------------------------


def test_a_correct_model_and_reference_pass_on_every_backend():
    report = check(last_states, masked_rnn, arguments=BATCHES, reference_inputs="padded", **FAST)
    assert report.examples == 25 and set(report.backends) >= {"interpreter", "cpu", "pointwise"}
    assert report.skipped == {}


def test_a_reference_that_forgets_the_ragged_mask_is_caught_with_a_small_counterexample():
    message = failure(lambda: check(last_states, unmasked_rnn, arguments=BATCHES, reference_inputs="padded", **FAST))
    assert "disagrees with the reference unmasked_rnn" in message
    assert "max abs error" in message and "result[" in message
    ns = replay(message, last_states=last_states, unmasked_rnn=unmasked_rnn)
    batch = ns["batch"]
    assert len(batch) <= 3 and sum(batch.lengths()) <= 3 and len(set(batch.lengths())) > 1  # ragged, tiny
    assert compare(ns["result"], ns["expected"])  # the pasted code reproduces the failure


@ft.function
def sums(xs: SEQS):
    return ft.map(lambda seq: ft.reduce(lambda a, b: a + b, seq, ft.zeros((1, 2), F64)), xs)


def stacked_sums(xs):
    """Planted bug: np.stack of an empty list raises."""
    return [np.stack(seq).sum(axis=0) for seq in xs]


def test_a_reference_that_mishandles_empty_lists_is_caught_on_an_empty_list():
    args = st.tuples(fractal_tensors(SEQS, max_len=4, elements=SMALL))
    message = failure(lambda: check(sums, stacked_sums, arguments=args, reference_inputs="lists", **FAST))
    assert "the reference raised ValueError" in message
    ns = {"sums": sums, "stacked_sums": stacked_sums}
    with pytest.raises(ValueError):
        exec(compile(counterexample(message), "<counterexample>", "exec"), ns)
    assert ns["xs"].lengths() == [0]  # exactly one list, and it is empty


@ft.function
def causal_sums(xs: SEQ):
    """The sum of each element and the two before it."""
    windows = ft.window(xs, 3, padding=(2, 0))
    return ft.map(lambda w: ft.reduce(lambda a, b: a + b, w, ft.zeros((2,), F64)), windows)


def off_by_one_sums(xs):
    """Planted bug: a window of 4 (`i - 3`), not 3."""
    leaves = xs.to_list()
    return [np.sum(leaves[max(0, i - 3):i + 1], axis=0) for i in range(len(leaves))]


def test_a_reference_off_by_one_in_a_window_is_caught_at_the_fourth_element():
    args = st.tuples(fractal_tensors(SEQ, max_len=6, elements=SMALL))
    message = failure(lambda: check(causal_sums, off_by_one_sums, arguments=args, **FAST))
    ns = replay(message, causal_sums=causal_sums, off_by_one_sums=off_by_one_sums)
    assert len(ns["xs"]) == 4 and "result[3]" in message  # the first window that reads too far back
    assert compare(ns["result"], ns["expected"])


@ft.function
def total(xs: SEQ):
    return ft.reduce(lambda a, b: a + b, xs, ft.zeros((2,), F64))


def float32_total(xs):
    """Planted bug: accumulates in float32 (then returns float64)."""
    acc = np.zeros(2, np.float32)
    for x in xs.to_list():
        acc = acc + x.astype(np.float32)
    return acc.astype(np.float64)


def test_float32_accumulation_is_caught_on_a_float64_model_by_its_tolerance():
    args = st.tuples(fractal_tensors(SEQ, max_len=4, elements=st.floats(-100, 100)))
    message = failure(lambda: check(total, float32_total, arguments=args, **FAST))
    assert "rtol=1e-09" in message
    ns = replay(message, total=total, float32_total=float32_total)
    assert len(ns["xs"]) <= 2 and compare(ns["result"], ns["expected"])


def test_the_same_float32_accumulation_passes_for_a_float32_model():
    @ft.function
    def total32(xs: ft.FractalTensor[ft.Tensor[(2,), ft.float32]]):
        return ft.reduce(lambda a, b: a + b, xs, ft.zeros((2,), ft.float32))

    args = st.tuples(fractal_tensors(ft.FractalTensor[ft.Tensor[(2,), ft.float32]], max_len=4,
                                     elements=st.floats(-100, 100, width=32)))
    check(total32, lambda xs: float32_total(xs).astype(np.float32), arguments=args, backends="interpreter", **FAST)


def test_arguments_default_to_the_models_annotations():
    report = check(total, lambda xs: np.sum(xs.to_numpy(), axis=0) if len(xs) else np.zeros(2),
                   backends=("interpreter", "cpu"), max_examples=10, derandomize=True, rtol=1e-6, atol=1e-6)
    assert report.examples == 10


# ---- semantics checks -----------------------------------------------------------------------


@ft.function
def differences(xs: SEQ):
    return ft.reduce(lambda a, b: a - b, xs, ft.zeros((2,), F64))


def left_fold_differences(xs):
    acc = np.zeros(2)
    for x in xs.to_list():
        acc = acc - x
    return acc


def test_a_non_associative_reduce_declared_associative_is_caught():
    args = st.tuples(fractal_tensors(SEQ, max_len=4, elements=SMALL))
    check(differences, left_fold_differences, arguments=args, backends="interpreter", **FAST)  # values agree
    message = failure(lambda: check(differences, left_fold_differences, arguments=args, backends="interpreter",
                                    properties=("associative",), **FAST))
    assert "is not associative on (init, xs[0], xs[1])" in message and "test_check.py" in message
    assert len(replay(message, differences=differences)["xs"]) == 2


def test_an_associative_reduce_passes_the_property():
    args = st.tuples(fractal_tensors(SEQ, max_len=4, elements=SMALL))
    check(total, lambda xs: sum(xs.to_list(), np.zeros(2)), arguments=args, properties=("associative",),
          backends="interpreter", **FAST)


class _Perturbing:
    """A program backend: the reference interpreter, then `change(results, program)` applied."""

    consumes = "program"
    description = "a test's broken backend"

    def __init__(self, name, change):
        self.name, self.change = name, change

    def default_target(self):
        return Target(self.name, self.name, None, None, "a test's backend")

    def targets(self):
        return {self.name: self.default_target}

    def build(self, program, target):
        inner, change = InterpreterBackend().build(program, target), self.change

        class Run:
            def run(self, inputs, profile=None):
                return change(list(inner.run(inputs)), program)
        return Run()


@pytest.fixture
def register():
    names = []

    def add(name, change):
        backends.register(_Perturbing(name, change))
        names.append(name)
    yield add
    for name in names:
        backends.unregister(name)


def _shift(results, amount):
    first = results[0]
    if isinstance(first, ft.FractalTensor):
        first = ft.fractal([x + amount for x in first.to_list()], type=first.type) if len(first) else first
    else:
        first = first + amount
    return [first] + results[1:]


def test_a_non_deterministic_backend_is_caught(register):
    runs = iter(range(1 << 30))
    register("flaky", lambda results, program: _shift(results, next(runs) * 1e-3))
    args = st.tuples(fractal_tensors(SEQ, max_len=3, elements=SMALL))
    message = failure(lambda: check(total, lambda xs: sum(xs.to_list(), np.zeros(2)), arguments=args,
                                    backends=("interpreter", "flaky"), **FAST))
    assert "the flaky backend is not deterministic: two runs on the same arguments differ" in message
    assert "first = total(xs, backend='flaky')" in message


def test_a_backend_that_disagrees_is_named_with_its_error(register):
    register("perturbed", lambda results, program: _shift(results, 1e-3))
    args = st.tuples(fractal_tensors(SEQ, max_len=3, elements=SMALL))
    message = failure(lambda: check(total, lambda xs: sum(xs.to_list(), np.zeros(2)), arguments=args,
                                    backends=("interpreter", "cpu", "perturbed"), **FAST))
    assert "the perturbed backend disagrees with the other backends, which agree with each other" in message
    assert "interpreter vs perturbed: result[0]: 0 vs 0.001; max abs error 0.001" in message
    assert "perturbed = total(xs, backend='perturbed')" in message


@ft.function
def backward(xs: SEQ):
    return ft.scan(lambda h, x: h * 0.5 + x, xs, ft.zeros((2,), F64), reverse=True)


def test_reverse_scans_are_checked_against_reversing_inputs_and_outputs(register):
    args = st.tuples(fractal_tensors(SEQ, max_len=4, elements=SMALL))
    check(backward, lambda xs: backward(xs, backend="interpreter"), arguments=args, properties="reverse_scan",
          backends=("interpreter", "cpu"), **FAST)
    # a backend whose `reverse` disagrees with its reverse scans: only the property sees it
    register("badreverse", lambda results, program: _shift(results, 1.0)
             if any(e.op == "reverse" for e in program.eqns()) else results)
    message = failure(lambda: check(backward, lambda xs: backward(xs, backend="interpreter"), arguments=args,
                                    properties="reverse_scan", backends=("interpreter", "badreverse"), **FAST))
    assert "property 'reverse_scan' fails on the badreverse backend" in message
    assert len(replay(message, backward=backward)["xs"]) == 1


def test_a_program_whose_text_does_not_parse_back_is_caught(monkeypatch):
    import fractal.lang
    real = fractal.lang.parse_program
    monkeypatch.setattr(fractal.lang, "parse_program",
                        lambda text: real(text.replace("value=0.0", "value=1.0").replace("value=0", "value=1")))
    message = failure(lambda: check(total, lambda xs: sum(xs.to_list(), np.zeros(2)), backends="interpreter",
                                    max_examples=5, derandomize=True))
    assert "the program's text parses back to a different program (line 2:" in message


def test_a_reference_whose_failures_come_and_go_still_fails_with_its_message():
    calls = iter(range(1 << 30))

    def sometimes(xs):  # wrong on every third call, whatever the arguments
        return sum(xs.to_list(), np.zeros(2)) + (next(calls) % 3 == 0)

    message = failure(lambda: check(total, sometimes, arguments=st.tuples(fractal_tensors(SEQ, max_len=2)),
                                    backends="interpreter", **FAST))
    assert "disagrees with the reference sometimes" in message


def test_a_declared_property_with_nothing_to_check_is_an_error_naming_it():
    with pytest.raises(ft.ArgumentError) as info:
        check(total, lambda xs: sum(xs.to_list(), np.zeros(2)), properties=("reverse_scan",), **FAST)
    assert "property 'reverse_scan' was declared, but total has no ft.scan(..., reverse=True)" in str(info.value)
    assert info.value.loc.file.endswith("test_check.py")


# ---- backends that cannot compile a model ---------------------------------------------------


class _Refusing(_Perturbing):
    consumes = "tile"

    def default_target(self):
        return dataclasses.replace(backends.get("cpu").default_target(), name=self.name, backend=self.name)

    def build(self, program, target):
        raise ft.UnsupportedError("this test's backend compiles nothing")


@pytest.fixture
def refusing():
    backends.register(_Refusing("refusing", None))
    yield
    backends.unregister("refusing")


class _Small(_Refusing):
    def build(self, program, target):
        raise ft.ResourceError("this test's machine holds nothing")


@pytest.mark.parametrize("kind, why", [
    (_Refusing, "this test's backend compiles nothing"),         # cannot lower it (UnsupportedError)
    (_Small, "this test's machine holds nothing"),               # its target cannot hold it (ResourceError)
])
def test_a_default_backend_that_cannot_compile_is_a_warning_not_a_silent_pass(kind, why):
    backends.register(kind("odd", None))
    try:
        args = st.tuples(fractal_tensors(SEQ, max_len=2, elements=SMALL))
        with pytest.warns(CheckWarning, match=f"the odd backend cannot compile it for 5 of 5 examples, which were "
                                              f"not checked on it: {why}"):
            report = check(total, lambda xs: sum(xs.to_list(), np.zeros(2)), arguments=args, max_examples=5,
                           derandomize=True)
    finally:
        backends.unregister("odd")
    assert report.skipped["odd"][0] == 5


def test_a_named_backend_that_cannot_compile_fails_the_check(refusing):
    args = st.tuples(fractal_tensors(SEQ, max_len=2, elements=SMALL))
    message = failure(lambda: check(total, lambda xs: sum(xs.to_list(), np.zeros(2)), arguments=args,
                                    backends=("refusing",), max_examples=2, derandomize=True))
    assert "the refusing backend cannot compile total for this example: this test's backend compiles nothing" in message


# ---- the pytest form --------------------------------------------------------------------------

test_last_states = checks(last_states, masked_rnn, arguments=BATCHES, reference_inputs="padded", max_examples=10,
                          derandomize=True)


def test_checks_is_a_test_function_and_a_decorator():
    assert test_last_states.__name__ == "test_last_states_matches_reference"
    ran = []

    @checks(last_states, unmasked_rnn, arguments=BATCHES, reference_inputs="padded", **FAST)
    def test_more():
        ran.append(True)

    with pytest.raises(AssertionError, match="disagrees with the reference unmasked_rnn"):
        test_more()
    assert ran == [] and test_more.__name__ == "test_more"

    @checks(last_states, masked_rnn, arguments=BATCHES, reference_inputs="padded", max_examples=3)
    def test_after():
        ran.append(True)
    test_after()
    assert ran == [True]


# ---- mistakes in the call: FractalErrors at the caller's line -----------------------------------


def _raises_at_this_file(cls, call):
    """`call()` (a lambda written on the line that calls check) raises `cls`, a FractalError
    pointing at that line."""
    with pytest.raises(cls) as info:
        call()
    assert isinstance(info.value, ft.FractalError) and type(info.value).__module__.startswith("fractal")
    assert info.value.loc.file.endswith("test_check.py") and info.value.loc.line == call.__code__.co_firstlineno
    return str(info.value)


def test_an_unknown_backend_is_an_error_listing_the_backends():
    text = _raises_at_this_file(ft.ArgumentError, lambda: check(total, float32_total, backends=("cpu", "gpu")))
    assert "unknown backend 'gpu'; the backends are" in text and "interpreter" in text


def test_bad_reference_inputs_is_an_error_naming_the_choices():
    text = _raises_at_this_file(ft.ArgumentError, lambda: check(total, float32_total, reference_inputs="numpy"))
    assert "reference_inputs= must be one of 'fractal', 'lists', 'padded', got str 'numpy'" in text


def test_a_negative_max_examples_is_an_error():
    text = _raises_at_this_file(ft.ArgumentError, lambda: check(total, float32_total, max_examples=-1))
    assert "max_examples= must be a positive int (examples to try), got int -1" in text


def test_an_unknown_option_of_checks_is_an_error():
    text = _raises_at_this_file(ft.ArgumentError, lambda: checks(total, float32_total, max_example=3))
    assert "unknown option 'max_example'" in text


def test_fractal_imports_without_hypothesis_and_ft_testing_names_the_extra():
    code = ("import sys; sys.modules['hypothesis'] = None\n"
            "import fractal as ft\n"
            "try:\n    ft.testing\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=pathlib.Path(__file__).resolve().parents[2]).stdout
    assert 'pip install "fractal-tensor[testing]"' in out


def test_no_warning_on_a_passing_check_with_stock_backends():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check(total, lambda xs: sum(xs.to_list(), np.zeros(2)),
              arguments=st.tuples(fractal_tensors(SEQ, max_len=2, elements=SMALL)), max_examples=5, derandomize=True)


# ---- the zoo's interface fits: inputs(config, seed=, ragged=), reference, outputs ---------------


def test_a_zoo_model_is_checked_on_drawn_sizes_with_its_reference_and_outputs():
    from examples import retention as m

    sizes = st.fixed_dictionaries(dict(batch=st.integers(1, 3), length=st.integers(1, 5), heads=st.integers(1, 2),
                                       d_model=st.integers(1, 4), head_dim=st.integers(1, 3)))
    args = st.builds(lambda cfg, seed, ragged: m.inputs(cfg, dtype=np.float64, seed=seed, ragged=ragged),
                     sizes, st.integers(0, 2 ** 16), st.booleans())
    report = check(m.model, m.reference, arguments=args, outputs=m.outputs, max_examples=5, derandomize=True)
    assert report.examples == 5 and report.skipped == {}
