"""The trace cache of an `@ft.function` and the compiled-program cache (`cache.OnceCache`).

Specification checked here:

* A static float argument is keyed by its bits: 20 calls with NaN make one trace (NaN != NaN
  made one per call), and 0.0 and -0.0 are two.
* The caches are bounded: past `size` entries the least recently used is dropped
  (`TRACE_CACHE_SIZE` traces and `COMPILED_CACHE_SIZE` compiled programs per function).
* A key is made once however many threads ask for it at once; a maker that raises caches
  nothing and its waiters try in turn; other keys are made meanwhile; an entry that fails
  `valid` is made again.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fractal as ft
from fractal.lang.cache import OnceCache
from fractal.lang.function import COMPILED_CACHE_SIZE, TRACE_CACHE_SIZE


def test_a_nan_static_argument_hits_the_trace_cache():
    f = ft.function(lambda x, c: x * c)
    for _ in range(20):
        assert math.isnan(float(f.interpret(np.ones(2), float("nan"))[0]))
    assert len(f._cache) == 1
    f.trace(np.ones(2), 0.0)
    f.trace(np.ones(2), -0.0)
    assert len(f._cache) == 3  # 0.0 and -0.0: two keys (1 / x tells them apart)


def test_the_function_caches_are_bounded():
    f = ft.function(lambda x, k: x * k)
    assert f._cache.size == TRACE_CACHE_SIZE and f.runner_cache.size == COMPILED_CACHE_SIZE
    f._cache.size = 4
    for k in range(10):
        f.trace(np.ones(2), k)
    assert sorted(key[2][1][1] for key in f._cache.keys()) == [6, 7, 8, 9]


def test_the_least_recently_used_entry_goes_first():
    cache = OnceCache(2)
    cache.get_or_make("a", lambda: 1)
    cache.get_or_make("b", lambda: 2)
    assert cache.get_or_make("a", lambda: pytest.fail("cached")) == 1  # a: used last
    cache.get_or_make("c", lambda: 3)
    assert cache.keys() == ["a", "c"]


def test_concurrent_askers_of_one_key_wait_for_one_maker():
    cache, made = OnceCache(8), []

    def make():
        made.append(1)
        time.sleep(0.05)
        return object()
    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(lambda _: cache.get_or_make("k", make), range(8)))
    assert len(made) == 1 and all(v is values[0] for v in values)


def test_other_keys_are_made_while_one_is_being_made():
    cache, inside, other_done = OnceCache(8), threading.Event(), threading.Event()

    def slow():
        inside.set()
        assert other_done.wait(10)
        return "slow"
    thread = threading.Thread(target=cache.get_or_make, args=("slow", slow))
    thread.start()
    assert inside.wait(10)
    assert cache.get_or_make("fast", lambda: "fast") == "fast"
    other_done.set()
    thread.join()
    assert cache.get_or_make("slow", lambda: "again") == "slow"


def test_a_maker_that_raises_caches_nothing():
    cache = OnceCache(8)
    with pytest.raises(ZeroDivisionError):
        cache.get_or_make("k", lambda: 1 / 0)
    assert "k" not in cache and cache.get_or_make("k", lambda: 2) == 2


def test_an_entry_failing_valid_is_made_again():
    cache = OnceCache(8)
    cache.get_or_make("k", lambda: 1)
    assert cache.get_or_make("k", lambda: 2, valid=lambda v: v == 2) == 2
    assert cache.get_or_make("k", lambda: 3, valid=lambda v: v == 2) == 2
