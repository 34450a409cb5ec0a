"""Moving windows in this process's memory: the counters of ``RateLimits`` without Redis.

The same rule as ``limits``' moving window: a hit is allowed when fewer than the item's amount of
hits were allowed within the item's expiry before it, and counts from then on. Each key keeps the
expiry times of its hits, oldest first, at most ``amount`` of them: a hit drops the expired ones
from the front and appends at the back, a refund removes the newest. Everything runs on the event
loop's thread without a wait, so a check and its count are one step no other request interleaves
with.

Not ``limits``' memory storage (issue 18): it inserts every hit at the front of a list (a copy of
the whole window, up to ``amount`` entries, per hit), and while hits come it starts a thread every
10 ms to sweep expired entries, which the event loop's thread waits to see started. Here idle keys
are swept on the loop, after as many hits as there are keys (never more than a constant cost per
hit).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from limits import RateLimitItem, WindowStats

__all__ = ["MovingWindows"]

_FIRST_SWEEP = 1024  # hits before the first sweep (and the least between two)


class MovingWindows:
    """Moving-window counters by key; ``clock`` gives monotonic seconds (tests pass their own)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}  # key -> expiry times of its counted hits, oldest first
        self._until_sweep = _FIRST_SWEEP

    async def hit(self, item: RateLimitItem, *key: str) -> bool:
        """Count one hit against ``item`` for ``key``; False, counting nothing, when its window is full."""
        now, name = self._clock(), item.key_for(*key)
        self._until_sweep -= 1
        if self._until_sweep <= 0:
            self._sweep(now)
        hits = self._hits.get(name)
        if hits is None:
            hits = self._hits[name] = deque()
        while hits and hits[0] <= now:
            hits.popleft()
        if len(hits) >= item.amount:
            return False
        hits.append(now + item.get_expiry())
        return True

    async def get_window_stats(self, item: RateLimitItem, *key: str) -> WindowStats:
        """When the window of ``key`` next has room (wall-clock seconds, as ``limits`` reports it),
        and how many hits it has left."""
        now, hits = self._clock(), self._hits.get(item.key_for(*key), ())
        live = [expiry for expiry in hits if expiry > now]
        frees_at = live[0] if live else now
        return WindowStats(time.time() + (frees_at - now), max(0, item.amount - len(live)))

    async def give_back(self, name: str) -> None:
        """Remove the newest hit counted under the storage key ``name`` (a refund of one ``hit``)."""
        hits = self._hits.get(name)
        if hits:
            hits.pop()

    def __len__(self) -> int:
        """How many keys are kept."""
        return len(self._hits)

    def _sweep(self, now: float) -> None:
        """Forget the keys with no live hit; the next sweep comes after as many hits as keys remain."""
        for name in [name for name, hits in self._hits.items() if not hits or hits[-1] <= now]:
            del self._hits[name]
        self._until_sweep = max(_FIRST_SWEEP, len(self._hits))
