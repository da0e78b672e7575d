"""`check`'s options, checked before anything runs: a mistake is an `ft.FractalError` naming
the option, at the line that called `check` (or `checks`)."""

from __future__ import annotations

import datetime
import numbers
from dataclasses import dataclass

from fractal.backends import registry
from fractal.lang.errors import ArgumentError, FractalTypeError

from .properties import PROPERTIES

REFERENCE_INPUTS = ("fractal", "lists", "padded")
OPTIONS = ("arguments", "backends", "rtol", "atol", "max_examples", "reference_inputs", "pad_value", "properties",
           "outputs", "deadline", "seed", "derandomize")


@dataclass
class Options:
    arguments: object
    backends: tuple | None
    rtol: float | None
    atol: float | None
    max_examples: int
    reference_inputs: str
    pad_value: float
    properties: tuple
    outputs: object
    deadline: object
    seed: int | None
    derandomize: bool


def validate(f, reference, arguments, backends, rtol, atol, max_examples, reference_inputs, pad_value, properties,
             outputs, deadline, seed, derandomize, unknown=None) -> Options:
    from hypothesis.strategies import SearchStrategy

    if unknown is not None:
        extra = sorted(set(unknown) - set(OPTIONS))
        if extra:
            raise ArgumentError(f"check: unknown option {extra[0]!r}; the options are {', '.join(OPTIONS)}")
    if not callable(f):
        raise FractalTypeError(f"check: the model must be an @ft.function (or a Python function), got {_kind(f)}")
    if not callable(reference):
        raise FractalTypeError(f"check: the reference must be a function of the model's arguments, got "
                               f"{_kind(reference)}")
    if arguments is not None and not isinstance(arguments, SearchStrategy):
        raise FractalTypeError(f"check: arguments= must be a hypothesis strategy of argument tuples (e.g. "
                               f"st.tuples(fractal_tensors(...), tensors(...))), got {_kind(arguments)}")
    if backends is not None:
        names = (backends,) if isinstance(backends, str) else backends
        if not isinstance(names, (tuple, list)) or not names:
            raise FractalTypeError(f"check: backends= must name one backend or more (e.g. ('interpreter', 'cpu')), "
                                   f"got {_kind(backends)}")
        for name in names:
            registry.get(name)  # an unknown name: the registry's error, listing the backends
        if len(set(names)) != len(names):
            raise ArgumentError(f"check: backends= names a backend twice: {list(names)}")
        backends = tuple(names)
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and (not isinstance(value, numbers.Real) or isinstance(value, bool) or not value >= 0):
            raise ArgumentError(f"check: {name}= must be a non-negative number or None, got {_kind(value)}")
    if not isinstance(max_examples, numbers.Integral) or isinstance(max_examples, bool) or max_examples < 1:
        raise ArgumentError(f"check: max_examples= must be a positive int (examples to try), got {_kind(max_examples)}")
    if reference_inputs not in REFERENCE_INPUTS:
        raise ArgumentError(f"check: reference_inputs= must be one of {', '.join(map(repr, REFERENCE_INPUTS))}, "
                            f"got {_kind(reference_inputs)}")
    if not isinstance(pad_value, numbers.Number) or isinstance(pad_value, bool):
        raise FractalTypeError(f"check: pad_value= must be a number, got {_kind(pad_value)}")
    props = (properties,) if isinstance(properties, str) else properties
    if not isinstance(props, (tuple, list)):
        raise FractalTypeError(f"check: properties= must be a tuple of property names ({', '.join(PROPERTIES)}), "
                               f"got {_kind(properties)}")
    for p in props:
        if p not in PROPERTIES:
            raise ArgumentError(f"check: unknown property {p!r}; the properties are {', '.join(PROPERTIES)}")
    if outputs is not None and not callable(outputs):
        raise FractalTypeError(f"check: outputs= must be a function of the model's result, got {_kind(outputs)}")
    if deadline is not None and not isinstance(deadline, (numbers.Real, datetime.timedelta)) or \
            isinstance(deadline, bool):
        raise FractalTypeError(f"check: deadline= must be milliseconds, a timedelta or None, got {_kind(deadline)}")
    if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool)):
        raise FractalTypeError(f"check: seed= must be an int or None, got {_kind(seed)}")
    if not isinstance(derandomize, bool):
        raise FractalTypeError(f"check: derandomize= must be True or False, got {_kind(derandomize)}")
    return Options(arguments, backends, rtol, atol, int(max_examples), reference_inputs, pad_value, tuple(props),
                   outputs, deadline, seed, derandomize)


def _kind(x) -> str:
    r = repr(x)
    return f"{type(x).__name__} {r if len(r) <= 40 else r[:37] + '...'}"
