"""Batched, change-only status writes.

Callers mark an object dirty and say how to compose its status; every ``interval`` the writer
composes each dirty object's status once and patches only what changed since the last write. A
burst of a thousand delivery outcomes for one Webhook becomes one API write, and an unchanged
status costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from . import metrics
from .kube import Kube, NotFound
from .supervision import spawn

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (plural, namespace, name)
Compose = Callable[[], dict[str, Any] | None]
MAIN = "main"


def diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The merge patch from ``old`` to ``new``: changed top-level fields only.

    Fields absent from ``new`` are left alone rather than nulled, so that two owners of one
    status (say the ApiKey controller and the usage recorder) can each compose their own part.
    """
    return {k: v for k, v in new.items() if old.get(k) != v}


class StatusWriter:
    def __init__(
        self,
        kube: Kube,
        interval: float = 0.05,
        concurrency: int = 16,
        min_spacing: dict[str, float] | None = None,
    ) -> None:
        self._kube = kube
        self._interval = interval
        # Per kind, the least time between two writes of one object: a Webhook taking hundreds of
        # deliveries a second gets its lastDelivery refreshed once a second, not hundreds of times.
        self._spacing = min_spacing or {}
        # Objects whose first write may wait until then (see ``mark``'s ``defer``).
        self._first_due: dict[Key, float] = {}
        self._last_write: dict[Key, float] = {}
        self._dirty: dict[Key, dict[str, Compose]] = {}
        self._written: dict[Key, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._limit = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None
        self.writes = 0

    def seed(self, key: Key, status: dict[str, Any] | None) -> None:
        """Remember what the API server already holds so an identical status is not rewritten."""
        if status is not None and key not in self._written:
            self._written[key] = dict(status)

    def mark(self, key: Key, compose: Compose, part: str = MAIN, defer: float = 0.0) -> None:
        """Schedule a write of ``key``; ``part`` names which owner's fields ``compose`` returns.

        ``defer`` lets the first write of a never-written object wait up to that many seconds for
        a mark that matters more: a new IntegrationEvent's planned state is then written together
        with its first outcomes. A mark without ``defer`` makes the object due at the next flush.
        """
        self._dirty.setdefault(key, {})[part] = compose
        if not defer:
            self._first_due.pop(key, None)
        elif key not in self._last_write and key not in self._written:
            self._first_due.setdefault(key, time.monotonic() + defer)
        self._wake.set()

    def forget(self, key: Key) -> None:
        self._dirty.pop(key, None)
        self._written.pop(key, None)
        self._last_write.pop(key, None)
        self._first_due.pop(key, None)

    def start(self) -> None:
        self._task = spawn(self._run(), name="status-writer")

    async def stop(self) -> None:
        """Flush what is pending, then stop: a graceful shutdown loses no recorded outcome."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush(force=True)

    async def settle(self, key: Key) -> None:
        """Return once nothing is pending for ``key`` (its last status has been written)."""
        while key in self._dirty:
            await asyncio.sleep(self._interval)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._interval)  # let a burst accumulate
            await self.flush()

    async def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        batch: dict[Key, dict[str, Compose]] = {}
        for key in list(self._dirty):
            if force or (
                now - self._last_write.get(key, -1e9) >= self._spacing.get(key[0], 0.0)
                and now >= self._first_due.get(key, 0.0)
            ):
                batch[key] = self._dirty.pop(key)
                self._first_due.pop(key, None)
        await asyncio.gather(*(self._write(key, parts) for key, parts in batch.items()))
        if self._dirty:
            self._wake.set()  # spaced-out keys wait for their turn; the loop sleeps between flushes

    async def _write(self, key: Key, parts: dict[str, Compose]) -> None:
        status: dict[str, Any] = {}
        for compose in parts.values():
            status.update(compose() or {})
        if not status:
            return
        patch = diff(self._written.get(key, {}), status)
        if not patch:
            return
        plural, namespace, name = key
        self._last_write[key] = time.monotonic()
        async with self._limit:
            try:
                await self._kube.patch_status(plural, namespace, name, patch)
                self.writes += 1
                metrics.STATUS_WRITES.inc()
            except NotFound:
                self.forget(key)
                return
            except Exception as exc:  # noqa: BLE001 - retried on the next flush
                log.warning("status write for %s/%s/%s failed: %s; retrying", plural, namespace, name, exc)
                for part, compose in parts.items():
                    self._dirty.setdefault(key, {}).setdefault(part, compose)
                await asyncio.sleep(min(self._interval * 20, 1.0))
                self._wake.set()
                return
        self._written[key] = {**self._written.get(key, {}), **status}
