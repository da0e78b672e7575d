"""`check`: a model against the user's NumPy reference, on every backend, on drawn arguments.

    import fractal as ft

    ft.testing.check(rnn, numpy_rnn)                       # arguments drawn from rnn's annotations
    ft.testing.check(rnn, numpy_rnn, arguments=st.tuples(fractal_tensors(SEQS), tensors((4, 4))),
                     reference_inputs="padded", max_examples=20)

    test_rnn = ft.testing.checks(rnn, numpy_rnn)           # the same as a pytest test, in one line

For each drawn argument tuple, `check` traces the model, runs it on each backend (twice),
runs the reference, and compares every result with every other (`fractal.testing.compare`:
structurally, with dtype-aware tolerances).  A failure is an `AssertionError` whose text
says what went wrong, who disagreed with whom and by how much, and gives the smallest
failing example hypothesis found as Python to paste into a test (`fractal.testing.report`).

What is checked on every example, the first failure being the one reported:

1. the model traces, and its program text parses back to the same program
   (`ft.parse_program(str(program)) == program`);
2. on every backend the model runs, and two runs give identical bits (deterministic);
3. the reference runs; the results of all backends and the reference agree pairwise;
4. the declared `properties` hold (`fractal.testing.properties`: `"associative"`,
   `"reverse_scan"`); a property the model gives nothing to check on is an error.

Backends: `backends=None` means every registered backend that runs on this machine
(`ft.backends.names()`: the interpreter, cpu and pointwise ones and any registered since;
`cuda` where there is a GPU: `ft.backends.unavailable(name)`) but those that say
`checked_by_default = False` (the CUDA emulation: a C++ build per example and CUDA threads run
one at a time; `native`: a C++ build per example; name them in `backends=` to check them).  A backend that cannot compile
the model for an example (`ft.UnsupportedError`: a call would fall back to the interpreter;
or `ft.ResourceError`: its default target cannot hold the example, as a small mesh's SRAM)
is a failure if you named it, and otherwise is left out of that example's comparison with a
`CheckWarning` naming it and saying how many examples it missed (`CheckReport.skipped`).
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from time import perf_counter

import numpy as np

from fractal.backends import registry
from fractal.lang.errors import ArgumentError, FractalError, ResourceError, UnsupportedError, user_location
from fractal.lang.function import Function, function as _function

from .compare import bits_equal, compare
from .options import Options, validate
from .properties import ForwardScans, associativity_failures, round_trip_problem, unavailable
from .report import failure_message, name_of as _name


class CheckWarning(UserWarning):
    """A backend `check` did not compare on some examples (it cannot compile the model)."""


@dataclass
class CheckReport:
    """What a passing `check` did: examples run, backends compared, those skipped (name ->
    `(examples missed, the first reason)`), seconds taken, and the registered backends that
    cannot run on this machine, left out (name -> why)."""

    function: str
    examples: int = 0
    backends: tuple = ()
    skipped: dict = field(default_factory=dict)
    seconds: float = 0.0
    unavailable: dict = field(default_factory=dict)


class _Failure(Exception):
    """Raised inside the hypothesis test: hypothesis shrinks the example and re-raises it."""


class _Abort(Exception):
    """A mistake in how `check` was called, found on the first example: not a counterexample."""

    def __init__(self, error: FractalError):
        super().__init__(str(error))
        self.error = error


def check(f, reference, *, arguments=None, backends=None, rtol=None, atol=None, max_examples=50,
          reference_inputs="fractal", pad_value=0.0, properties=(), outputs=None, deadline=None, seed=None,
          derandomize=False) -> CheckReport:
    """Check `f` (an `@ft.function`, or a plain Python function, traced) against `reference`.

    * `arguments`: a hypothesis strategy of argument tuples (a value that is not a plain
      `tuple` is the one argument); default `arguments_for(f)`, from `f`'s annotations.
    * `backends`: the backends to run (names); default every registered one (see above).
    * `rtol`, `atol`: override the dtype's default tolerance (`compare.TOLERANCES`: float16
      1e-2/1e-3, float32 1e-4/1e-5, float64 1e-9/1e-9; integers and booleans exact).
    * `reference_inputs`: what `reference` receives: `"fractal"` the arguments as they are
      (FractalTensors: use `.to_list()`, `.to_numpy(pad_value=)`, `.lengths()`), `"lists"`
      each FractalTensor as nested lists of arrays, `"padded"` each FractalTensor as
      `(x.to_numpy(pad_value=pad_value), lengths)` with lengths as `compare.padded_lengths`
      gives them (an int64 array `[batch]` for a batch of sequences).  Arrays are copies.
    * `outputs`: a function applied to the model's result (on every backend) before it is
      compared, e.g. to put it in the structure the reference returns.
    * `properties`: algebraic properties to check too, `("associative", "reverse_scan")`.
    * `max_examples`, `deadline` (ms or None), `seed`, `derandomize`: hypothesis's settings.

    Returns a `CheckReport`; raises `AssertionError` with the smallest counterexample on a
    failure, and an `ft.FractalError` for a mistake in the call itself."""
    opts = validate(f, reference, arguments, backends, rtol, atol, max_examples, reference_inputs, pad_value,
                    properties, outputs, deadline, seed, derandomize)
    loc = user_location()
    fn = f if isinstance(f, Function) else _function(f)
    if opts.arguments is None:
        from .strategies import arguments_for
        opts.arguments = arguments_for(fn)
    return _Run(fn, reference, opts, loc).run()


def checks(f, reference, **options):
    """`check(f, reference, **options)` as a pytest test, in one line of a test file:

        test_rnn = ft.testing.checks(rnn, numpy_rnn, max_examples=20)

    or as a decorator of a test whose body runs after the check passes:

        @ft.testing.checks(rnn, numpy_rnn)
        def test_rnn():
            ...
    The options are checked now, so a mistake fails when the file is collected."""
    validate(f, reference, options.get("arguments"), options.get("backends"), options.get("rtol"),
             options.get("atol"), options.get("max_examples", 50), options.get("reference_inputs", "fractal"),
             options.get("pad_value", 0.0), options.get("properties", ()), options.get("outputs"),
             options.get("deadline"), options.get("seed"), options.get("derandomize", False), unknown=options)

    def test_check(*args, **kwargs):
        if len(args) == 1 and not kwargs and callable(args[0]):  # used as a decorator
            body = args[0]

            def test(*a, **k):
                check(f, reference, **options)
                return body(*a, **k)
            test.__name__, test.__qualname__, test.__doc__ = body.__name__, body.__qualname__, body.__doc__
            test.__signature__ = inspect.signature(body)  # (pytest reads the fixtures it asks for)
            test.__module__ = body.__module__
            return test
        check(f, reference, **options)

    name = getattr(f, "name", getattr(f, "__name__", "model"))
    test_check.__name__ = test_check.__qualname__ = f"test_{name}_matches_reference"
    test_check.__signature__ = inspect.Signature()
    return test_check


def default_backends() -> list[str]:
    """The backends `check` runs when none are named."""
    return [n for n in registry.names() if getattr(registry.get(n), "checked_by_default", True)]


class _Run:
    """One call of `check`: the hypothesis test and what it learns across examples."""

    def __init__(self, fn: Function, reference, opts: Options, loc):
        self.fn, self.reference, self.opts, self.loc = fn, reference, opts, loc
        self.explicit = opts.backends is not None
        # the interpreter first: the semantics the others are held to, named first in a message
        absent = {} if self.explicit else {n: why for n in registry.names() if (why := registry.unavailable(n))}
        self.backends = sorted(opts.backends if self.explicit else [n for n in default_backends() if n not in absent],
                               key=lambda n: n != "interpreter")
        self.report = CheckReport(fn.name, backends=tuple(self.backends), unavailable=absent)
        self.checked_programs: dict = {}  # programs whose text round trip passed
        self.forward = ForwardScans(fn) if "reverse_scan" in opts.properties else None
        self.last: str | None = None
        self.reference_failed = False

    def run(self) -> CheckReport:
        from hypothesis import HealthCheck, Phase, Verbosity, given, settings
        from hypothesis import seed as hypothesis_seed
        from hypothesis.errors import Flaky

        o = self.opts
        config = dict(max_examples=o.max_examples, deadline=o.deadline, derandomize=o.derandomize,
                      suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet, print_blob=False,
                      # (not `explain`: its notes on which parts of the example matter are not
                      # shown, and it reruns the model dozens of times)
                      phases=[p for p in Phase if p.name != "explain"])
        if o.derandomize:
            config["database"] = None

        @settings(**config)
        @given(o.arguments)
        def examples(drawn):
            self.report.examples += 1
            args = drawn if type(drawn) is tuple else (drawn,)
            problem = self.example(args)
            if problem is not None:
                self.last = failure_message(self.fn, self.reference, self.opts, args, *problem)
                raise _Failure(self.last)

        if o.seed is not None:
            examples = hypothesis_seed(o.seed)(examples)
        start = perf_counter()
        try:
            examples()
        except _Failure as e:
            raise AssertionError(str(e)) from None
        except _Abort as e:
            raise e.error from None
        except Flaky:
            if self.last is None:
                raise
            raise AssertionError(self.last + "\n\n(hypothesis saw this failure come and go on the same example: "
                                 "something the model or the reference reads is not deterministic)") from None
        self.report.seconds = perf_counter() - start
        for name, (missed, reason) in self.report.skipped.items():
            warnings.warn(f"check({self.fn.name}): the {name} backend cannot compile it for {missed} of "
                          f"{self.report.examples} examples, which were not checked on it: {reason}",
                          CheckWarning, stacklevel=3)
        return self.report

    # -- one example ------------------------------------------------------------------------

    def example(self, args) -> tuple[str, list[tuple]] | None:
        """None when the example passes, else `(what went wrong, the calls that show it)`: each
        call `(label, backend or None for the reference)`."""
        o = self.opts
        try:
            program = self.fn.trace(*args)
        except FractalError as e:
            return f"{self.fn.name} cannot be traced for this example:\n{_indent(str(e))}", [("result", "interpreter")]
        if program not in self.checked_programs:
            for name in o.properties:
                why = unavailable(program, name)
                if why is not None:
                    raise _Abort(ArgumentError(why, self.loc))
            problem = round_trip_problem(program)
            if problem is not None:
                return problem, []
            self.checked_programs[program] = True
        results: dict[str, object] = {}
        raw: dict[str, object] = {}
        want, have_want = None, False
        # once the interpreter has disagreed with the reference, hypothesis shrinks that failure:
        # the other backends are not compiled for its candidates (a failure found is real)
        for name in ["interpreter"] if self.reference_failed else self.backends:
            problem = self.run_backend(name, args, results, raw)
            if problem is not None:
                return problem
            if name == "interpreter" and name in results:
                # fractal's semantics against the reference first: when they disagree, the other
                # backends do not matter (and are not compiled while hypothesis shrinks)
                want, problem = self.run_reference(args)
                if problem is not None:
                    self.reference_failed = True
                    return problem
                have_want = True
                diffs = compare(results[name], want, rtol=o.rtol, atol=o.atol)
                if diffs:
                    self.reference_failed = True
                    return (f"the interpreter (fractal's semantics, which every backend is held to) disagrees "
                            f"with the reference {_name(self.reference, 'reference')}:\n  {_summary(diffs)}",
                            [("result", name), ("expected", None)])
        if not have_want:
            want, problem = self.run_reference(args)
            if problem is not None:
                return problem
        problem = self.disagreements(results, want)
        if problem is not None:
            return problem
        if "associative" in o.properties:
            found = associativity_failures(program, self.fn.traced(args, {})[2], o.rtol, o.atol)
            if found:
                return found[0], []
        if self.forward is not None:
            for name in raw:
                rewritten = self.forward.compile(*args, backend=name).run(*args)
                diffs = compare(raw[name], rewritten, rtol=o.rtol, atol=o.atol)
                if diffs:
                    return (f"property 'reverse_scan' fails on the {name} backend: its reverse scans differ from "
                            f"reversing their inputs, scanning forward and reversing the states: {diffs[0]}",
                            [("result", name)])
        return None

    def run_backend(self, name, args, results: dict, raw: dict) -> tuple[str, list] | None:
        """Compile and run the model twice on backend `name`: into `raw` (and `results`, after
        `outputs=`), or a problem; a default backend that cannot compile it is skipped."""
        o = self.opts
        try:
            compiled = self.fn.compile(*args, backend=name)
        except (UnsupportedError, ResourceError) as e:   # (cannot lower it, or its target cannot hold it)
            if self.explicit:
                return f"the {name} backend cannot compile {self.fn.name} for this example: {e.message}", \
                    [("result", name)]
            missed, reason = self.report.skipped.get(name, (0, e.message))
            self.report.skipped[name] = (missed + 1, reason)
            return None
        except Exception as e:  # noqa: BLE001  (a crash on a valid input is what a check is for)
            return f"compiling for the {name} backend raised {_error(e)}", [("result", name)]
        try:
            first, second = compiled.run(*args), compiled.run(*args)
        except Exception as e:  # noqa: BLE001
            return f"the {name} backend raised {_error(e)}", [("result", name)]
        if not bits_equal(first, second):
            where = compare(first, second, rtol=0.0, atol=0.0)
            place = f": {where[0]}" if where else ""
            return (f"the {name} backend is not deterministic: two runs on the same arguments differ{place}",
                    [("first", name), ("second", name)])
        raw[name] = first
        try:
            results[name] = first if o.outputs is None else o.outputs(first)
        except Exception as e:  # noqa: BLE001
            return f"outputs= raised {_error(e)} on the {name} backend's result", [("result", name)]
        return None

    def run_reference(self, args):
        """`(the reference's result, None)` or `(None, the problem)`."""
        o = self.opts
        try:
            return self.reference(*reference_arguments(args, o.reference_inputs, o.pad_value)), None
        except Exception as e:  # noqa: BLE001
            return None, (f"the reference raised {_error(e)}", [("expected", None)])

    def disagreements(self, results: dict, want) -> tuple[str, list] | None:
        """Every pair of backends, and every backend against the reference; the message names who
        disagreed with whom (one line when all backends agree with each other)."""
        o = self.opts
        names = list(results)
        pairs = {}
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                diffs = compare(results[a], results[b], rtol=o.rtol, atol=o.atol, same_dtype=True)
                if diffs:
                    pairs[a, b] = diffs
        versus = {a: d for a in names if (d := compare(results[a], want, rtol=o.rtol, atol=o.atol))}
        if not pairs and not versus:
            return None
        ref = _name(self.reference, "reference")
        if not pairs:
            first = names[0]
            agree = f"the backends ({', '.join(names)}) agree with each other" if len(names) > 1 else \
                f"the {first} backend"
            return (f"{agree} but not with the reference {ref}:\n  {_summary(versus[first])}",
                    [("result", first), ("expected", None)])
        involved = [n for n in names if all(n in pair for pair in pairs)]
        if len(involved) == 1 and len(pairs) == len(names) - 1:
            head = f"the {involved[0]} backend disagrees with the other backends, which agree with each other:"
        else:
            head = "the backends disagree:"
        lines = [f"  {a} vs {b}: {_summary(d)}" for (a, b), d in pairs.items()]
        lines += [f"  {a} vs the reference {ref}: {_summary(d)}" for a, d in versus.items()]
        calls = [(n, n) for n in names if any(n in pair for pair in pairs) or n in versus]
        return "\n".join([head] + lines), calls + ([("expected", None)] if versus else [])

    # -- the message ----------------------------------------------------------------------


def reference_arguments(args: tuple, mode: str = "fractal", pad_value=0.0) -> tuple:
    """The arguments as `check` hands them to the reference (`reference_inputs=mode`):
    FractalTensors as they are (`"fractal"`), as nested lists of arrays (`"lists"`) or as
    `(padded array, lengths)` (`"padded"`), inside tuples and NamedTuples too; arrays copied."""
    from fractal.lang.values import FractalTensor

    from .compare import padded_lengths

    def convert(x):
        if isinstance(x, FractalTensor):
            if mode == "lists":
                return x.to_list()
            if mode == "padded":
                return x.to_numpy(pad_value=pad_value), padded_lengths(x)
            return x
        if isinstance(x, np.ndarray):
            return x.copy()
        if isinstance(x, tuple):
            items = [convert(v) for v in x]
            return type(x)(*items) if hasattr(type(x), "_fields") else tuple(items)
        if isinstance(x, list):
            return [convert(v) for v in x]
        return x

    return tuple(convert(a) for a in args)


def _summary(diffs) -> str:
    more = f" (and {len(diffs) - 1} more place{'s' if len(diffs) > 2 else ''})" if len(diffs) > 1 else ""
    return f"{diffs[0]}{more}"


def _error(e: Exception) -> str:
    return f"{type(e).__name__}:\n{_indent(str(e))}"


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


__all__ = ["CheckReport", "CheckWarning", "check", "checks", "reference_arguments"]
