"""`@ft.function`: trace a Python function into a typed `Program` and run it.

Arguments may be tensors, FractalTensors and nested tuples/NamedTuples of
them (parameter bundles); they are flattened to the program's parameters.
Python numbers, strings and None are static: Python code sees their values
at trace time (loop counts, flags), and a new value traces a new program.  Annotations, when present, are checked against the
arguments; when absent, types come from the call.  Traced programs are cached
per argument structure and types (list lengths are runtime data, so a new
length does not re-trace), at most `TRACE_CACHE_SIZE` per function.  NumPy arrays the
body captures (globals, closure variables) are implicit arguments: parameters after the
function's own, read at every call (README, "Captured arrays").  Tracing is per thread,
and a first call made by several threads at once traces once (`cache.OnceCache`).

Calling a function runs it on the cpu backend (`f.compile`, compiled and cached per
argument sizes, since the lowering unrolls list structure); `f(*args, backend="interpreter")`
runs the NumPy reference interpreter, and programs the backend cannot lower yet fall back to
it with a warning.  Compiling and running on a backend are the compile layer's: `Function`
delegates them to the runner `fractal.compile` installs (`fractal.lang.runner`).  The
analysis of a function for some arguments is `ft.analyze(f, *args)`.
"""

from __future__ import annotations

import functools
import inspect
import re
import sys
import typing

import numpy as np

from .cache import OnceCache
from .errors import FractalTypeError, SourceLoc, TraceError, _short_path
from .interpreter import run_program
from .ir import Program
from .runner import installed_runner
from .tracing import Tracer, ZipTracer, current_frame, frame_scope, trace_scope
from .tree import TreeDef, flatten, unflatten
from .types import FractalTensorType, TensorType, TupleType
from .values import type_of

_FRACTAL_TYPES = (TensorType, FractalTensorType, TupleType)
TRACE_CACHE_SIZE = 256  # traces a function keeps, the least recently used dropped first
COMPILED_CACHE_SIZE = 64  # compiled programs it keeps for the runner (each holds its buffers)


class Function:
    """A traceable fractal function (what `@ft.function` returns)."""

    def __init__(self, fn, name: str | None = None):
        if not callable(fn):
            raise FractalTypeError(f"ft.function takes a Python function, got {type(fn).__name__} {fn!r:.40}")
        if name is not None and not isinstance(name, str):
            raise FractalTypeError(f"ft.function: name= must be a str, got {type(name).__name__} {name!r:.40}")
        functools.update_wrapper(self, fn)
        self.fn = fn
        # program names print as `@name`: keep them to identifier characters (`<lambda>` -> `_lambda_`)
        self.name = re.sub(r"[^A-Za-z0-9_.]", "_", name or getattr(fn, "__name__", "function"))
        self.signature = inspect.signature(fn)
        # traced programs by argument structure, types and static values (made once per key,
        # thread-safe: `cache.OnceCache`)
        self._cache = OnceCache(TRACE_CACHE_SIZE)
        # what the installed runner keeps for this function (the compile layer's compiled
        # programs): stored here, its contents the runner's, so it lives as long as the function
        self.runner_cache = OnceCache(COMPILED_CACHE_SIZE)

    def flatten_args(self, args, kwargs) -> tuple[list, TreeDef, list[str]]:
        """`(leaves, tree, names)`: the arguments checked against the signature and the
        annotations, flattened to leaves (static ones included, see `is_static`), the tree
        that rebuilds them, and the bound parameter names."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise FractalTypeError(f"{self.name}{self.signature}: {e}") from None
        bound.apply_defaults()
        self._check_annotations(bound)
        values = tuple(_keywords(v) if self.signature.parameters[k].kind is inspect.Parameter.VAR_KEYWORD
                       else v for k, v in bound.arguments.items())
        names = list(bound.arguments)
        leaves, tree = flatten(values)
        return leaves, tree, names

    def _check_annotations(self, bound) -> None:
        hints = {k: _resolve(v, self.fn) for k, v in getattr(self.fn, "__annotations__", {}).items()
                 if k != "return"}
        for name, value in bound.arguments.items():
            if name not in hints:
                continue
            kind = self.signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:  # `*args: T` annotates each one
                for i, v in enumerate(value):
                    _check(hints[name], v, f"{name}[{i}]", self.name)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                for k, v in value.items():
                    _check(hints[name], v, k, self.name)
            else:
                _check(hints[name], value, name, self.name)

    def trace(self, *args, **kwargs) -> Program:
        """The typed program for these arguments (cached by structure and types)."""
        return self.traced(args, kwargs)[0]

    def traced(self, args, kwargs) -> tuple[Program, TreeDef, list]:
        """`(program, out_tree, leaves)` for a call with `args` and `kwargs`: the typed program
        (cached by argument structure and types), the tree that nests its flat results, and
        the values of its parameters (the non-static argument leaves, in order, then the
        NumPy arrays the function captured: its implicit arguments, read now)."""
        return self.traced_call(args, kwargs)[:3]

    def traced_call(self, args, kwargs) -> tuple[Program, TreeDef, list, tuple]:
        """`traced`'s three, and the captured arrays (the last of the leaves) on their own."""
        leaves, tree, names = self.flatten_args(args, kwargs)
        # Python numbers, strings and None are static: part of the cache key, not traced
        static = tuple(x if is_static(x) else None for x in leaves)
        types = tuple(None if is_static(x) else type_of(x) for x in leaves)
        key = (tree, types, tuple(_static_key(x) for x in static))
        program, out_tree, captured, _ = self._cache.get_or_make(
            key, lambda: self._trace(tree, types, static, names), valid=_captured_unchanged)
        return program, out_tree, [x for x in leaves if not is_static(x)] + list(captured), captured

    def _trace(self, tree: TreeDef, types, static, names):
        hints = leaf_names(tree, names)
        with trace_scope() as trace, frame_scope(trace, None) as frame:
            tracers = [s if t is None else frame.param(t, hint) for t, s, hint in zip(types, static, hints)]
            args, kwargs = _call_args(self.signature, names, unflatten(tree, tracers))
            try:
                result = self.fn(*args, **kwargs)
            except RecursionError:
                raise TraceError(f"{self.name} recursed without end while it was traced (Python's "
                                 f"recursion limit was reached); a traced function runs its Python code "
                                 f"once, so recursion must stop on values known at trace time, not on "
                                 f"traced data", loc=_recursion_site(self.fn)) from None
            out_leaves, out_tree = flatten(result)
            if not out_leaves and out_tree.kind == "leaf":
                raise TraceError(f"{self.name} returned nothing; return its results")
            out_vars = [frame.lift(x) for x in out_leaves]
            body = frame.region(out_vars)
        program = Program(self.name, body, out_tree.out_tree())
        captured = trace.captured_arrays()
        return program, out_tree, captured, tuple((x.shape, x.dtype) for x in captured)

    def interpret(self, *args, progress=None, **kwargs):
        """Run the traced program with the NumPy reference interpreter.

        `progress(done, total)`, if given, is called after each step of the
        program's outermost loops (the `fractal run` command draws a bar with it)."""
        program, out_tree, leaves = self.traced(args, kwargs)
        flat = run_program(program, leaves, progress)
        return unflatten(out_tree, flat)

    def compile(self, *args, **kwargs):
        """Compile for these arguments' types and sizes (cached): a `Compiled` with `.tile_ir`
        and `.run(*args)`.  The installed runner (`fractal.compile`) compiles, for the options
        among the keywords that it names (`target=`, `backend=`) and the function does not take."""
        runner = installed_runner()
        return runner.compile(self, args, kwargs, **self._options(runner, kwargs))

    def __call__(self, *args, **kwargs):
        """Run the function: for the runner's default target, or as its options say (`target=`,
        `backend=`; a keyword the function takes itself is its own).  While tracing, the body is
        inlined instead."""
        runner = installed_runner()
        options = self._options(runner, kwargs)
        if current_frame() is not None:
            # called while tracing (from another traced function, or from an eager map's
            # abstract pass over an empty list): inline the body into the enclosing trace
            self.flatten_args(args, kwargs)  # the same signature and annotation checks
            return self.fn(*args, **kwargs)
        return runner.call(self, args, kwargs, **options)

    def _options(self, runner, kwargs: dict) -> dict:
        """The runner's options taken out of `kwargs` (those the function does not take itself)."""
        return {k: kwargs.pop(k) for k in sorted(runner.call_options & kwargs.keys())
                if k not in self.signature.parameters}

    def __repr__(self):
        return f"<fractal function {self.name}>"


def function(fn=None, *, name: str | None = None):
    """Decorator: `@ft.function` or `@ft.function(name="...")`."""
    if fn is None:
        return lambda f: Function(f, name)
    return Function(fn, name)


def _call_args(signature, names, values):
    """Positional and keyword arguments re-binding `values` (one per bound parameter, in order):
    a `*args` parameter is spread and keyword-only parameters are passed by name."""
    args, kwargs = [], {}
    for name, value in zip(names, values):
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            args.extend(value)
        elif kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[name] = value
        elif kind is inspect.Parameter.VAR_KEYWORD:
            kwargs.update(zip(value._fields, value))
        else:
            args.append(value)
    return args, kwargs


@functools.lru_cache(maxsize=None)
def _keywords_class(keys: tuple[str, ...]) -> type:
    """The tuple class that carries a `**kwargs` argument with these keys through flattening
    (one class per key set, so that equal calls hit the trace cache)."""
    return type("kwargs", (tuple,), {"_fields": keys, "__slots__": (),
                                     "__new__": lambda cls, *values: tuple.__new__(cls, values)})


def _keywords(d: dict) -> tuple:
    """A `**kwargs` dict as a tuple (a parameter bundle) of its values, in key order."""
    keys = tuple(sorted(d))
    return _keywords_class(keys)(*(d[k] for k in keys))


def _recursion_site(fn) -> "SourceLoc | None":
    """Where `fn` calls into the recursion that never ended: the line of `fn` on the stack that
    the `RecursionError` being handled unwound (the outermost call into it)."""
    tb = sys.exc_info()[2]
    code = getattr(inspect.unwrap(fn), "__code__", None)
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code is code:
            return SourceLoc(_short_path(frame.f_code.co_filename), tb.tb_lineno, frame.f_code.co_name)
        tb = tb.tb_next
    return None


def _static_key(x):
    """A static argument as part of the trace cache's key: a float by its bits (every NaN one
    key, where NaN != NaN would make a new entry per call; 0.0 and -0.0 two), others by type
    and value."""
    if isinstance(x, float):
        return type(x), x.hex()
    return type(x), x


def _captured_unchanged(entry) -> bool:
    """Whether a trace's captured arrays still have the shapes and dtypes it was traced for
    (an array resized in place, or given a new dtype through `.dtype =`: traced again)."""
    _, _, captured, types = entry
    return all((x.shape, x.dtype) == t for x, t in zip(captured, types))


def is_static(x) -> bool:
    """Python numbers, strings and None are static arguments: Python code sees their values at
    trace time, and they are part of the trace cache's key rather than program parameters."""
    return x is None or isinstance(x, (bool, int, float, str)) and not isinstance(x, np.generic)


def leaf_names(tree: TreeDef, names) -> list[str]:
    """Readable parameter names: `x`, `params.w_ih`, `xs.0` for tuple members."""
    out: list[str] = []
    for name, child in zip(names, tree.children):
        _add_leaf_names(child, name, out)
    return out


def _add_leaf_names(t: TreeDef, prefix: str, out: list) -> None:
    if t.kind == "leaf":
        out.append(prefix)
    elif t.kind == "tuple":
        fields = getattr(t.cls, "_fields", None) or [str(i) for i in range(len(t.children))]
        for f, c in zip(fields, t.children):
            _add_leaf_names(c, f"{prefix}.{f}", out)
    else:
        for i, c in enumerate(t.children):
            _add_leaf_names(c, f"{prefix}.{i}", out)


def _resolve(annotation, fn):
    """A string annotation (`from __future__ import annotations`) evaluated in `fn`'s module, as
    `typing.get_type_hints` would; one that names local variables stays a string (not checked)."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, getattr(fn, "__globals__", {}))
    except Exception:
        return annotation


@functools.lru_cache(maxsize=256)
def _field_hints(cls) -> dict:
    """A NamedTuple class's field annotations, resolved once per class (`typing.get_type_hints`
    takes about 0.1 ms, and a compiled program checks its arguments on every call)."""
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # names the class's module cannot resolve: documentation only
        return {}


def _check(annotation, value, path: str, owner: str) -> None:
    """Check one argument against its annotation (fractal types, NamedTuples, Tuple[...]).

    `path` names the checked part (`p`, `p.w`, `p[0]`) of an argument of function `owner`."""
    what = f"argument {path!r} of {owner}"
    if isinstance(annotation, _FRACTAL_TYPES):
        if isinstance(value, (Tracer, ZipTracer)):
            got = value.type
        else:
            try:
                got = type_of(value)
            except FractalTypeError:
                got = type(value).__name__
        if got != annotation:
            raise FractalTypeError(f"{what} is annotated {annotation} but the call passes {got}")
        return
    origin = typing.get_origin(annotation)
    if origin is tuple:
        sub = typing.get_args(annotation)
        if not isinstance(value, tuple) or (sub and sub[-1] is not Ellipsis and len(sub) != len(value)):
            raise FractalTypeError(f"{what} is annotated {annotation} but the call passes {type(value).__name__}")
        for i, (a, v) in enumerate(zip(sub, value)):
            if a is not Ellipsis:
                _check(a, v, f"{path}[{i}]", owner)
        return
    if isinstance(annotation, type) and issubclass(annotation, tuple) and hasattr(annotation, "_fields"):
        if not isinstance(value, annotation):
            got = type(value)
            if got.__qualname__ == annotation.__qualname__ and got.__module__ == annotation.__module__:
                raise FractalTypeError(
                    f"{what} is annotated {annotation.__name__} but the call passes a {got.__name__} of "
                    f"another definition: the class {annotation.__name__} was redefined (a notebook cell "
                    f"run again?) after {owner} was defined; run the cell that defines {owner} again, or "
                    f"build the argument with the class {owner} was annotated with")
            raise FractalTypeError(f"{what} is annotated {annotation.__name__} but the call passes "
                                   f"{type(value).__name__}")
        hints = _field_hints(annotation)
        for field in annotation._fields:
            if field in hints:
                _check(hints[field], getattr(value, field), f"{path}.{field}", owner)
    # other annotations (plain Python types, strings) are documentation only
