"""A keyed, de-duplicating work queue with delayed and backed-off retries.

Level-triggered reconciliation the controller-runtime way: watch events only *enqueue* a key,
a worker reconciles the object's current state, and a failure re-enqueues the key with
exponential backoff. A key is never processed by two workers at once; an enqueue that arrives
while it is processing runs it once more afterwards.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from .supervision import spawn

K = TypeVar("K", bound=Hashable)
Reconcile = Callable[[K], Awaitable[float | None]]  # returns "reconcile again after N seconds"

log = logging.getLogger(__name__)

BASE_BACKOFF = 0.5
MAX_BACKOFF = 60.0


class WorkQueue(Generic[K]):
    def __init__(self, name: str, reconcile: Reconcile[K], workers: int = 4) -> None:
        self.name = name
        self._reconcile = reconcile
        self._workers = workers
        self._due: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0
        self._active: set[K] = set()
        self._again: set[K] = set()
        self._failures: dict[K, int] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, key: K, delay: float = 0.0) -> None:
        """Schedule ``key``; an earlier due time wins over a later one."""
        if key in self._active and delay <= 0:
            self._again.add(key)
            return
        due = time.monotonic() + max(0.0, delay)
        current = self._due.get(key)
        if current is not None and current <= due:
            return
        self._due[key] = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key))
        self._wake.set()

    def __len__(self) -> int:
        return len(self._due)

    def start(self) -> None:
        self._tasks = [spawn(self._worker(), name=f"{self.name}-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _next(self) -> K:
        while True:
            now = time.monotonic()
            while self._heap:
                due, _, key = self._heap[0]
                if self._due.get(key) != due:  # superseded by an earlier add
                    heapq.heappop(self._heap)
                    continue
                if key in self._active:  # processing: retried by _again or after it finishes
                    heapq.heappop(self._heap)
                    del self._due[key]
                    self._again.add(key)
                    continue
                if due <= now:
                    heapq.heappop(self._heap)
                    del self._due[key]
                    return key
                break
            self._wake.clear()
            timeout = self._heap[0][0] - now if self._heap else None
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _worker(self) -> None:
        while True:
            key = await self._next()
            self._active.add(key)
            try:
                after = await self._reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure is retried with backoff
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(MAX_BACKOFF, BASE_BACKOFF * 2 ** (failures - 1))
                log.warning("%s: reconciling %s failed (%s); retrying in %.1fs", self.name, key, exc, delay)
                self._active.discard(key)
                self._again.discard(key)
                self.add(key, delay)
                continue
            self._failures.pop(key, None)
            self._active.discard(key)
            if key in self._again:
                self._again.discard(key)
                self.add(key)
            elif after is not None:
                self.add(key, after)
