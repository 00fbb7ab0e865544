"""The operator's work queue (which work items to reconcile, now or later) and its admission control
(how many attempts may run at once, and which waiting item starts first).

Called by the Kopf handlers (every watch event of a work item or of one of its Jobs adds the item's
key), by the reconciler (a wake-up time, a retry after an API error) and by the periodic resync.
The queue holds keys, not events: however many events arrive for an item, it is reconciled once
with the latest state, and never by two workers at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
Clock = Callable[[], datetime]


class WorkQueue(Generic[K]):
    """A de-duplicating queue of keys with delayed adds (like controller-runtime's workqueue).

    * ``add`` queues a key unless it is already queued; a key being processed is re-queued once
      processing ends (``done``), so a change that arrives mid-reconcile is never missed.
    * ``add_at`` wakes a key at a time of the injected clock (tests move the clock instead of waiting);
      only the earliest pending wake-up per key is kept.
    * ``retry`` re-adds a key after an error, with a per-key exponential delay (``forget`` resets it).
    * Ready keys come out in ``rank`` order (smallest first): the operator ranks work items by
      priority, so when several become due at once the most urgent asks for a slot first.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        tick: float = 1.0,
        base_delay: float = 0.2,
        max_delay: float = 60.0,
        rank: Callable[[K], tuple[object, ...]] | None = None,
    ) -> None:
        self.clock = clock
        self.tick = tick
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.rank = rank or (lambda _key: ())
        self._ready: asyncio.PriorityQueue[tuple[tuple[object, ...], int, K]] = asyncio.PriorityQueue()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._forced: set[K] = set()  # keys to reconcile even if nothing they depend on changed
        self._wakes: list[tuple[datetime, int, K]] = []
        self._next_wake: dict[K, datetime] = {}
        self._failures: Counter[K] = Counter()
        self._retries: dict[K, asyncio.TimerHandle] = {}
        self._seq = itertools.count()
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, key: K, *, force: bool = False) -> None:
        """Queue ``key``; ``force``: reconcile it even if its object and Job did not change
        (a wake-up time, a granted slot, a retry after an error, a resync)."""
        if force:
            self._forced.add(key)
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait((self.rank(key), next(self._seq), key))

    def add_at(self, key: K, when: datetime) -> None:
        known = self._next_wake.get(key)
        if known is not None and known <= when:
            return
        self._next_wake[key] = when
        heapq.heappush(self._wakes, (when, next(self._seq), key))
        self._changed.set()

    def retry(self, key: K) -> float:
        """Reconcile ``key`` again after a growing delay; returns the delay in seconds."""
        self._failures[key] += 1
        delay: float = min(self.base_delay * 2.0 ** (self._failures[key] - 1), self.max_delay)
        if key not in self._retries:
            loop = asyncio.get_running_loop()
            self._retries[key] = loop.call_later(delay, self._retry_now, key)
        return delay

    def _retry_now(self, key: K) -> None:
        self._retries.pop(key, None)
        self.add(key, force=True)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def drop(self, key: K) -> None:
        """The object is gone: forget its wake-ups and error history."""
        self._next_wake.pop(key, None)
        self._failures.pop(key, None)
        self._forced.discard(key)
        handle = self._retries.pop(key, None)
        if handle is not None:
            handle.cancel()

    async def get(self) -> tuple[K, bool]:
        """The next key, and whether it must be reconciled even if nothing changed."""
        _, _, key = await self._ready.get()
        self._queued.discard(key)
        self._processing.add(key)
        forced = key in self._forced
        self._forced.discard(key)
        return key, forced

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    async def run_timer(self) -> None:
        """Move due wake-ups into the queue, forever."""
        while True:
            now = self.clock()
            while self._wakes and self._wakes[0][0] <= now:
                when, _, key = heapq.heappop(self._wakes)
                if self._next_wake.get(key) == when:
                    del self._next_wake[key]
                    self.add(key, force=True)
            delay = self.tick
            if self._wakes:
                delay = max(0.0, min(delay, (self._wakes[0][0] - now).total_seconds()))
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=delay)


Order = tuple[int, str, str, str]  # (-priority, desired/creation time, creation time, name): smaller first


class Admission(Generic[K]):
    """Concurrency limits, global and per pipeline, with priority ordering of waiting items.

    A work item due to start asks for a slot (``request``). Slots go to waiting items in order
    (higher ``spec.priority`` first, then earlier ``desiredAt``/creation); an item whose pipeline is
    at its limit does not hold back items of other pipelines. A granted slot counts as running
    until the item is seen RUNNING (``observe``) or gives the slot back (``release``); a slot frees
    when a running item leaves RUNNING, and the next waiting items are woken (``on_grant``).
    """

    def __init__(self, max_running: int, max_per_pipeline: int, on_grant: Callable[[K], None]) -> None:
        self.max_running = max_running
        self.max_per_pipeline = max_per_pipeline
        self.on_grant = on_grant
        self.running: dict[K, str] = {}
        self.granted: dict[K, str] = {}
        self._waiting: list[tuple[Order, int, K, str]] = []
        self._entry: dict[K, int] = {}
        self._order: dict[K, Order] = {}
        self._seq = itertools.count()

    def waiting(self) -> int:
        return len(self._entry)

    def observe(self, key: K, pipeline: str, running: bool) -> None:
        if running:
            self.running[key] = pipeline
            self.granted.pop(key, None)
            self._entry.pop(key, None)
            self._order.pop(key, None)
        elif self.running.pop(key, None) is not None:
            self.dispatch()

    def forget(self, key: K) -> None:
        freed = self.running.pop(key, None) is not None
        freed = self.granted.pop(key, None) is not None or freed
        self._entry.pop(key, None)
        self._order.pop(key, None)
        if freed:
            self.dispatch()

    def request(self, key: K, pipeline: str, order: Order) -> bool:
        if key in self.granted or key in self.running:
            return True
        if self._order.get(key) != order:  # new, or its priority changed: (re)queue it
            seq = next(self._seq)
            self._entry[key] = seq
            self._order[key] = order
            heapq.heappush(self._waiting, (order, seq, key, pipeline))
        self.dispatch(asking=key)
        return key in self.granted

    def release(self, key: K) -> None:
        if self.granted.pop(key, None) is not None:
            self.dispatch()

    def dispatch(self, asking: K | None = None) -> None:
        per_pipeline = Counter(self.running.values())
        per_pipeline.update(self.granted.values())
        total = len(self.running) + len(self.granted)
        skipped = []
        while self._waiting and total < self.max_running:
            entry = heapq.heappop(self._waiting)
            _, seq, key, pipeline = entry
            if self._entry.get(key) != seq:
                continue  # superseded by a newer request, or no longer waiting
            if per_pipeline[pipeline] >= self.max_per_pipeline:
                skipped.append(entry)
                continue
            del self._entry[key]
            del self._order[key]
            self.granted[key] = pipeline
            per_pipeline[pipeline] += 1
            total += 1
            if key != asking:
                self.on_grant(key)
        for entry in skipped:
            heapq.heappush(self._waiting, entry)
