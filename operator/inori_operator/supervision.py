"""Long-running tasks that must never die quietly.

A background loop (scheduler, status writer, work queue) that crashes would leave a process that
looks alive and does nothing. ``spawn`` logs such a crash and marks the process unhealthy, so
``/healthz`` fails and the kubelet restarts the pod; the durable state in the statuses makes the
restart lose nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

failures: list[str] = []


def _check(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        failures.append(f"{task.get_name()}: {type(exc).__name__}: {exc}")
        log.critical("background task %s crashed; the process is now unhealthy", task.get_name(), exc_info=exc)


def spawn(coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(_check)
    return task
