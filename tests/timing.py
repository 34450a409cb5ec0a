"""Telling a linear check from a quadratic one by timing it, robustly on a shared, noisy machine.

Never a wall-clock bound: the cost of a check on its worst-case input is compared with its cost
on a benign input of the same size. A linear check stays within a small factor; a quadratic one
is hundreds to thousands of times slower at the sizes the tests use. Each side is the best of
several runs (noise only ever adds time), and a run too short to time is a loop of calls.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

SAMPLE_SECONDS = 0.005  # a run shorter than this is repeated in a loop until it is not
SLOW_SECONDS = 1.0  # one call this slow is unmistakable: no need to run it again


def cost_ratio(check: Callable[[T], object], worst: T, benign: T, *, bound: float, repeats: int = 7) -> float:
    """The best time of ``check(worst)`` over the best time of ``check(benign)``.

    The worst case is run again only while the ratio is above ``bound`` (so a passing check is
    quick to confirm), and not again after one call that took over a second (so a quadratic one
    fails after one slow run). Exceptions of ``check`` are the caller's to handle.
    """
    with _quiet_gc():
        base = _per_call(check, benign, repeats)
        best = math.inf
        for _ in range(repeats):
            seconds = _per_call(check, worst, 1)
            best = min(best, seconds)
            if best <= bound * base or seconds > SLOW_SECONDS:
                break
    return best / base


def _per_call(check: Callable[[T], object], value: T, repeats: int) -> float:
    """Seconds per call of ``check(value)``, the best of ``repeats`` runs of a loop long enough to time."""
    loops, best = 1, math.inf
    for _ in range(repeats):
        while True:
            start = time.perf_counter()
            for _ in range(loops):
                check(value)
            elapsed = time.perf_counter() - start
            if elapsed >= SAMPLE_SECONDS:
                break
            loops *= 2
        best = min(best, elapsed / loops)
        if elapsed > SLOW_SECONDS:
            break
    return best


@contextlib.contextmanager
def _quiet_gc() -> Iterator[None]:
    """No cyclic garbage collection while timing: it runs whenever it likes, and only adds noise.
    (No gc.collect() first: it would finalize, and blame on this test, what earlier tests leaked.)"""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
