"""Random programs of the language (tests/lang/strategies.py), compiled by the native backend
(the tile IR verified after every pass) and run, give what the interpreter gives."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

import fractal as ft
from fractal.compile import compile_function
from tests.backends.native.conftest import needs_compiler
from tests.lang.strategies import assert_values_close, build, make_args, program_descs

pytestmark = needs_compiler
TARGET = ft.targets.get("cpu-generic-native")   # (the cpu-generic record: the same tile IR on any host)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(program_descs())
def test_random_programs_compiled_natively_equal_the_interpreter(desc):
    fn = ft.function(build(desc))
    args = make_args(desc)
    try:
        compiled = compile_function(fn, args, {}, TARGET, verify=True)
    except ft.UnsupportedError:
        return  # said so (a traced gather of lists of lists): the interpreter still runs it
    assert compiled.target.backend == "native"
    assert_values_close(compiled.run(*args), fn.interpret(*args))
