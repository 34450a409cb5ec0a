"""Unit tests of keyturn.server.http._windows: the in-memory moving windows, on a clock the test
moves (no sleeping), checked against ``limits``' own moving window where they must agree."""

from __future__ import annotations

import time

import pytest
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from keyturn.server.http._windows import MovingWindows

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_window_allows_its_amount_then_refuses_until_its_oldest_hit_expires() -> None:
    clock, item = Clock(), parse("3/minute")
    windows = MovingWindows(clock)
    for at in (0.0, 10.0, 20.0):
        clock.now = 1000.0 + at
        assert await windows.hit(item, "ip", "a")
    clock.now = 1059.0
    assert not await windows.hit(item, "ip", "a")  # the hit at 0 counts until 60
    assert await windows.hit(item, "ip", "b")  # another key has its own window
    clock.now = 1060.0
    assert await windows.hit(item, "ip", "a")  # the hit at 0 has expired: one place
    assert not await windows.hit(item, "ip", "a")
    clock.now = 1070.0
    assert await windows.hit(item, "ip", "a")  # and the hit at 10


async def test_a_refused_hit_is_not_counted() -> None:
    """A client that keeps hitting a full window is not locked out past its hits' expiry."""
    clock, item = Clock(), parse("1/minute")
    windows = MovingWindows(clock)
    assert await windows.hit(item, "k")
    for second in range(1, 60):
        clock.now = 1000.0 + second
        assert not await windows.hit(item, "k")
    clock.now = 1060.0
    assert await windows.hit(item, "k")


async def test_stats_give_the_room_left_and_when_the_oldest_hit_frees_a_place() -> None:
    clock, item = Clock(), parse("2/minute")
    windows = MovingWindows(clock)
    stats = await windows.get_window_stats(item, "k")
    assert stats.remaining == 2
    await windows.hit(item, "k")
    clock.now += 15
    await windows.hit(item, "k")
    clock.now += 5
    before = time.time()
    stats = await windows.get_window_stats(item, "k")
    assert stats.remaining == 0
    assert before + 39 <= stats.reset_time <= time.time() + 40  # the first hit, 20 s ago, expires in 40


async def test_give_back_removes_the_newest_hit_only() -> None:
    clock, item = Clock(), parse("2/minute")
    windows = MovingWindows(clock)
    await windows.hit(item, "k")
    clock.now += 30
    await windows.hit(item, "k")
    await windows.give_back(item.key_for("k"))
    assert (await windows.get_window_stats(item, "k")).remaining == 1
    clock.now = 1060.0  # the first hit expires: the window is empty, so the second was the one removed
    assert (await windows.get_window_stats(item, "k")).remaining == 2
    await windows.give_back(item.key_for("never-hit"))  # nothing to give back: nothing happens
    assert (await windows.get_window_stats(item, "never-hit")).remaining == 2


async def test_idle_keys_are_forgotten_at_a_bounded_cost_per_hit() -> None:
    """Keys whose hits have all expired are swept after as many hits as there are keys: memory
    follows the live keys, whatever the number of distinct ones seen."""
    clock, item = Clock(), parse("5/second")
    windows = MovingWindows(clock)
    for i in range(5000):
        await windows.hit(item, "ip", str(i))
    assert len(windows) == 5000
    clock.now += 2  # every hit has expired
    for _ in range(5000):
        await windows.hit(item, "ip", "live")
    assert len(windows) == 1


async def test_the_same_hits_are_allowed_as_by_limits_moving_window() -> None:
    """Many keys and amounts, hit in one burst: each window allows exactly what ``limits``' own
    moving window allows (the rule keyturn kept when it stopped using its memory storage)."""
    clock = Clock()
    ours, theirs = MovingWindows(clock), MovingWindowRateLimiter(MemoryStorage())
    items = [parse(text) for text in ("1/minute", "3/minute", "10/hour", "7/15minutes")]
    for n in range(200):
        item, key = items[n % len(items)], ("k", str(n % 7))
        assert await ours.hit(item, *key) == theirs.hit(item, *key), (n, item, key)
