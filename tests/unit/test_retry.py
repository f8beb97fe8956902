"""Unit tests for inori_operator.retry: durations, backoff and the retry schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from inori_operator.retry import (
    MAX_JITTER,
    RetryPolicy,
    backoff_delay,
    exhausted,
    jitter_for,
    next_attempt_at,
    parse_duration,
)

T0 = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC)


# --- parse_duration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT45M", timedelta(minutes=45)),
        ("PT10S", timedelta(seconds=10)),
        ("PT0.5S", timedelta(milliseconds=500)),
        ("PT0,5S", timedelta(milliseconds=500)),
        ("P1D", timedelta(days=1)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P1DT2H3M4S", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("PT1.5H", timedelta(minutes=90)),
        ("PT0.25M", timedelta(seconds=15)),
        ("P0.5D", timedelta(hours=12)),
        ("PT0S", timedelta(0)),
        ("PT90M", timedelta(minutes=90)),
        ("PT0.000001S", timedelta(microseconds=1)),
        ("PT0.0000005S", timedelta(0)),  # half a microsecond rounds to even
        ("PT0.0000015S", timedelta(microseconds=2)),
        ("PT0.1S", timedelta(microseconds=100_000)),
    ],
)
def test_an_iso_8601_duration_is_parsed(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "45 minutes",
        "",
        "P",
        "PT",
        "P1DT",
        "45m",
        "pt45m",
        "PT45",
        "T45M",
        "PT-1S",
        "-PT1S",
        " PT1S",
        "PT1S ",
        "PT1S\n",
        "PT.5S",
        "PT5.S",
        "PT1M1H",
        "PT1S1M",
        "P1H",
        "PT1D",
        "PT١S",  # a non-ASCII digit
        "P" + "9" * 100 + "D",
    ],
)
def test_text_that_is_not_an_iso_8601_duration_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601 duration such as PT45M"):
        parse_duration(text)


def test_the_refusal_quotes_the_text_it_refused() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("45 minutes")
    assert str(caught.value) == "'45 minutes' is not an ISO 8601 duration such as PT45M"


@pytest.mark.parametrize("text", ["P1Y", "P2M", "P1W", "P1Y2M3D", "P0.5W"])
def test_years_months_and_weeks_are_refused_because_their_length_varies(text: str) -> None:
    with pytest.raises(ValueError, match="years, months or weeks"):
        parse_duration(text)


def test_a_duration_too_long_for_timedelta_is_refused_as_a_value_error() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("P9999999999D")


def test_a_non_string_is_refused_as_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_duration(45)  # type: ignore[arg-type]


# --- RetryPolicy --------------------------------------------------------------------------------


def test_the_default_policy_is_five_exponential_retries_from_45_minutes_with_a_10_second_timeout() -> None:
    policy = RetryPolicy()
    assert (policy.retry, policy.backoff) == (5, "exponential")
    assert policy.delay == timedelta(minutes=45)
    assert policy.timeout == timedelta(seconds=10)


def test_the_default_retries_spread_over_about_a_day() -> None:
    policy = RetryPolicy()
    total = sum((backoff_delay(policy, n) for n in range(policy.retry)), timedelta(0))
    assert total == timedelta(hours=23, minutes=15)


@pytest.mark.parametrize("retry", [0, 1, 10])
def test_a_retry_count_from_0_to_10_is_accepted(retry: int) -> None:
    assert RetryPolicy(retry=retry).retry == retry


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"retry": -1}, "retry"),
        ({"retry": 11}, "retry"),
        ({"retry": True}, "retry"),
        ({"retry": 2.0}, "retry"),
        ({"backoff": "fibonacci"}, "backoff"),
        ({"delay": timedelta(seconds=-1)}, "delay"),
        ({"delay": 45}, "delay"),
        ({"timeout": timedelta(0)}, "timeout"),
        ({"timeout": timedelta(seconds=-1)}, "timeout"),
        ({"timeout": 10}, "timeout"),
    ],
)
def test_an_invalid_policy_is_refused_at_construction(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**changes)  # type: ignore[arg-type]


def test_a_zero_delay_is_allowed_for_immediate_retries() -> None:
    assert RetryPolicy(delay=timedelta(0)).delay == timedelta(0)


def test_a_policy_cannot_be_changed_after_construction() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.retry = 3  # type: ignore[misc]


# --- backoff_delay ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backoff", "retry_index", "minutes"),
    [
        ("exponential", 0, 45),
        ("exponential", 1, 90),
        ("exponential", 2, 180),
        ("exponential", 4, 720),
        ("exponential", 10, 45 * 1024),
        ("linear", 0, 45),
        ("linear", 1, 90),
        ("linear", 2, 135),
        ("linear", 4, 225),
    ],
)
def test_the_backoff_grows_exponentially_or_linearly_from_the_delay(
    backoff: str, retry_index: int, minutes: int
) -> None:
    policy = RetryPolicy(backoff=backoff)  # type: ignore[arg-type]
    assert backoff_delay(policy, retry_index) == timedelta(minutes=minutes)


def test_a_fractional_delay_keeps_its_precision() -> None:
    policy = RetryPolicy(delay=parse_duration("PT0.5S"))
    assert backoff_delay(policy, 3) == timedelta(seconds=4)


def test_a_negative_retry_index_is_refused() -> None:
    with pytest.raises(ValueError):
        backoff_delay(RetryPolicy(), -1)


# --- next_attempt_at / exhausted ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts_made", "expected"),
    [
        (1, T0 + timedelta(minutes=45)),
        (2, T0 + timedelta(minutes=90)),
        (3, T0 + timedelta(minutes=180)),
        (5, T0 + timedelta(minutes=720)),
        (6, None),
        (7, None),
    ],
)
def test_the_next_attempt_follows_the_backoff_until_the_retries_run_out(
    attempts_made: int, expected: datetime | None
) -> None:
    assert next_attempt_at(RetryPolicy(), attempts_made, T0, jitter=0.0) == expected


@pytest.mark.parametrize(("attempts_made", "done"), [(1, False), (5, False), (6, True), (9, True)])
def test_a_delivery_is_exhausted_after_the_first_attempt_and_every_retry(attempts_made: int, done: bool) -> None:
    assert exhausted(RetryPolicy(retry=5), attempts_made) is done


def test_with_no_retries_the_first_failure_is_final() -> None:
    policy = RetryPolicy(retry=0)
    assert exhausted(policy, 1)
    assert next_attempt_at(policy, 1, T0, jitter=0.0) is None


def test_jitter_delays_the_next_attempt_by_a_fraction_of_the_backoff() -> None:
    assert next_attempt_at(RetryPolicy(), 2, T0, jitter=0.05) == T0 + timedelta(minutes=90 * 1.05)


def test_a_linear_schedule_uses_the_retry_index_of_the_attempt() -> None:
    policy = RetryPolicy(backoff="linear", delay=timedelta(minutes=10))
    assert next_attempt_at(policy, 3, T0, jitter=0.0) == T0 + timedelta(minutes=30)


def test_the_schedule_keeps_the_time_zone_of_the_last_attempt() -> None:
    last = datetime(2026, 12, 4, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    result = next_attempt_at(RetryPolicy(), 1, last, jitter=0.0)
    assert result == T0 + timedelta(minutes=45)


@pytest.mark.parametrize("jitter", [-0.01, 0.1, 0.5, 1.0])
def test_jitter_outside_zero_to_a_tenth_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter"):
        next_attempt_at(RetryPolicy(), 1, T0, jitter=jitter)


@pytest.mark.parametrize("attempts_made", [0, -1])
def test_scheduling_before_any_attempt_was_made_is_refused(attempts_made: int) -> None:
    with pytest.raises(ValueError, match="attempts_made"):
        next_attempt_at(RetryPolicy(), attempts_made, T0, jitter=0.0)


def test_a_naive_last_attempt_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_attempt_at(RetryPolicy(), 1, datetime(2026, 12, 4, 10, 0), jitter=0.0)


# --- jitter_for ---------------------------------------------------------------------------------


def test_jitter_for_the_same_delivery_and_attempt_is_reproducible() -> None:
    assert jitter_for("team-a/event-1/bi-dashboard", 2) == jitter_for("team-a/event-1/bi-dashboard", 2)


def test_jitter_for_is_always_at_least_zero_and_below_a_tenth() -> None:
    values = [jitter_for(f"delivery-{n}", attempt) for n in range(500) for attempt in range(1, 4)]
    assert all(0.0 <= value < MAX_JITTER for value in values)


def test_jitter_for_spreads_different_deliveries_out() -> None:
    values = [jitter_for(f"delivery-{n}", 1) for n in range(1000)]
    assert len(set(values)) == len(values)
    assert min(values) < 0.01
    assert max(values) > 0.09
    assert 0.04 < sum(values) / len(values) < 0.06


def test_jitter_for_differs_between_attempts_of_one_delivery() -> None:
    assert len({jitter_for("delivery", attempt) for attempt in range(1, 11)}) == 10


def test_jitter_for_is_accepted_by_next_attempt_at() -> None:
    jitter = jitter_for("delivery", 1)
    result = next_attempt_at(RetryPolicy(), 1, T0, jitter=jitter)
    assert result is not None
    assert T0 + timedelta(minutes=45) <= result < T0 + timedelta(minutes=45 * 1.1)
