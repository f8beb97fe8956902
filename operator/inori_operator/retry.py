"""The retry schedule of webhook deliveries.

Pure arithmetic over a `RetryPolicy`: when the next attempt is due and when to give up. Randomness
stays out: callers pass a jitter value, and `jitter_for` derives one deterministically so that
different deliveries spread out while a given delivery's schedule is reproducible (after an
operator restart the same retry lands at the same time).

The defaults (5 retries, exponential from 45 minutes) spread retries over about 24 hours:
45 + 90 + 180 + 360 + 720 minutes = 23 h 15 min, plus jitter.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Literal, get_args

Backoff = Literal["exponential", "linear"]

DEFAULT_RETRY = 5
MAX_RETRY = 10
DEFAULT_BACKOFF: Backoff = "exponential"
DEFAULT_DELAY = timedelta(minutes=45)
DEFAULT_TIMEOUT = timedelta(seconds=10)

MAX_JITTER = 0.1
"""Jitter is a fraction of the delay in [0, MAX_JITTER): up to 10% later, never earlier."""

_BACKOFFS: frozenset[str] = frozenset(get_args(Backoff))

_MAX_DURATION_TEXT = 64
_NUMBER = r"[0-9]+(?:[.,][0-9]+)?"
_DURATION = re.compile(
    rf"P(?:(?P<days>{_NUMBER})D)?"
    rf"(?:T(?:(?P<hours>{_NUMBER})H)?(?:(?P<minutes>{_NUMBER})M)?(?:(?P<seconds>{_NUMBER})S)?)?"
)
_UNSUPPORTED_DESIGNATORS = re.compile(rf"P(?:{_NUMBER}[YMW])")
_SECONDS_PER = {"days": 86_400, "hours": 3_600, "minutes": 60, "seconds": 1}
_MICROSECONDS_PER_SECOND = 1_000_000


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how far apart a failed delivery is retried (the Webhook's `spec.delivery`).

    `retry` counts retries after the first attempt, so a delivery makes at most `retry + 1`
    attempts. Invalid values raise ValueError at construction, not at the first failure.
    """

    retry: int = DEFAULT_RETRY
    backoff: Backoff = DEFAULT_BACKOFF
    delay: timedelta = DEFAULT_DELAY
    timeout: timedelta = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if isinstance(self.retry, bool) or not isinstance(self.retry, int):
            raise ValueError(f"retry must be a whole number from 0 to {MAX_RETRY}, not {self.retry!r}")
        if not 0 <= self.retry <= MAX_RETRY:
            raise ValueError(f"retry must be from 0 to {MAX_RETRY}, not {self.retry}")
        if self.backoff not in _BACKOFFS:
            raise ValueError(
                f"backoff must be one of {sorted(_BACKOFFS)}, not {self.backoff!r}"
            )
        if not isinstance(self.delay, timedelta) or self.delay < timedelta(0):
            raise ValueError(f"delay must be a duration of zero or more, not {self.delay!r}")
        if not isinstance(self.timeout, timedelta) or self.timeout <= timedelta(0):
            raise ValueError(f"timeout must be a positive duration, not {self.timeout!r}")


def parse_duration(text: str) -> timedelta:
    """Parse an ISO 8601 duration made of days, hours, minutes and seconds (PT45M, P1DT2H, PT0.5S).

    Any component may have a fraction (with '.' or ','). Years, months and weeks are refused:
    their length depends on the calendar, and a retry delay needs a fixed length.
    """
    if not isinstance(text, str) or len(text) > _MAX_DURATION_TEXT:
        raise ValueError(f"{_shorten(text)} is not an ISO 8601 duration such as PT45M")
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.groupdict().values()) or text.endswith("T"):
        if _UNSUPPORTED_DESIGNATORS.match(text):
            raise ValueError(
                f"{text!r} uses years, months or weeks, whose length varies; "
                "use days, hours, minutes and seconds instead, such as P7D or PT45M"
            )
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT45M")
    seconds = sum(
        (
            Decimal(value.replace(",", ".")) * _SECONDS_PER[name]
            for name, value in match.groupdict().items()
            if value is not None
        ),
        Decimal(0),
    )
    try:
        microseconds = (seconds * _MICROSECONDS_PER_SECOND).to_integral_value(ROUND_HALF_EVEN)
        return timedelta(microseconds=int(microseconds))
    except (OverflowError, InvalidOperation) as error:
        raise ValueError(f"{text!r} is too long a duration") from error


def backoff_delay(policy: RetryPolicy, retry_index: int) -> timedelta:
    """Return the wait before retry number `retry_index` (0 for the first retry), before jitter."""
    if retry_index < 0:
        raise ValueError(f"retry_index counts from 0, not {retry_index}")
    if policy.backoff == "exponential":
        return policy.delay * 2**retry_index
    return policy.delay * (retry_index + 1)


def exhausted(policy: RetryPolicy, attempts_made: int) -> bool:
    """Tell whether the first attempt and all `policy.retry` retries have been made."""
    return attempts_made > policy.retry


def next_attempt_at(
    policy: RetryPolicy,
    attempts_made: int,
    last_attempt: datetime,
    *,
    jitter: float,
) -> datetime | None:
    """Return when the next attempt is due after `attempts_made` failed attempts, or None when done.

    `last_attempt` must be timezone-aware, so that schedules written to status compare correctly
    with the clock of another operator replica.
    """
    if attempts_made < 1:
        raise ValueError(f"attempts_made counts the attempts already made (1 or more), not {attempts_made}")
    if last_attempt.tzinfo is None or last_attempt.utcoffset() is None:
        raise ValueError("last_attempt must be timezone-aware (for example in UTC)")
    if not 0.0 <= jitter < MAX_JITTER:
        raise ValueError(f"jitter must be in [0, {MAX_JITTER}), not {jitter}")
    if exhausted(policy, attempts_made):
        return None
    return last_attempt + backoff_delay(policy, attempts_made - 1) * (1 + jitter)


def jitter_for(key: str, attempt: int) -> float:
    """Derive a jitter in [0, MAX_JITTER) from a delivery key and attempt number.

    A hash rather than `random`: retries of different deliveries spread out, while one delivery
    gets the same schedule every time it is computed, on any replica.
    """
    digest = hashlib.sha256(f"{key}\0{attempt}".encode("utf-8")).digest()
    fraction = (int.from_bytes(digest[:8], "big") >> 11) / 2**53  # 53 bits: exact in a float, < 1
    value = fraction * MAX_JITTER
    return value if value < MAX_JITTER else math.nextafter(MAX_JITTER, 0.0)


def _shorten(value: object) -> str:
    """Quote a rejected value without echoing a huge one back into status or logs."""
    text = repr(value)
    return text if len(text) <= _MAX_DURATION_TEXT else text[:_MAX_DURATION_TEXT] + "..."
