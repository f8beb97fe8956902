"""Settings from the environment: defaults, parsing, and a clear error naming each bad variable."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from inori_operator.settings import Settings, describe_error


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for key in list(__import__("os").environ):
        if key.startswith("INORI_") or key == "POD_NAMESPACE":
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_the_defaults_are_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(monkeypatch)
    assert s.allow_plain_http is False and s.allowed_cidrs == [] and s.watch_namespaces == []
    assert s.event_retention == timedelta(hours=24) and s.http_port == 8080


def test_lists_are_comma_separated_and_durations_iso_8601(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(monkeypatch, INORI_WATCH_NAMESPACES="team-a, team-b,", INORI_ALLOWED_CIDRS="10.0.0.0/8,::1/128",
                 INORI_EVENT_RETENTION="PT2H", INORI_ALERT_RECIPIENTS="a@example.com")
    assert s.watch_namespaces == ["team-a", "team-b"] and s.allowed_cidrs == ["10.0.0.0/8", "::1/128"]
    assert s.event_retention == timedelta(hours=2) and s.alert_recipients == ["a@example.com"]


def test_the_pod_namespace_is_the_operator_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings(monkeypatch, POD_NAMESPACE="platform").namespace == "platform"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"INORI_HTTP_PORT": "eighty"}, "INORI_HTTP_PORT"),
        ({"INORI_ALLOWED_CIDRS": "10.0.0.0/33"}, "INORI_ALLOWED_CIDRS"),
        ({"INORI_EVENT_RETENTION": "forever"}, "INORI_EVENT_RETENTION"),
        ({"INORI_CA_BUNDLE": "/nonexistent/ca.pem"}, "INORI_CA_BUNDLE"),
        ({"INORI_ALERT_RECIPIENTS": "not-an-address"}, "INORI_ALERT_RECIPIENTS"),
        ({"INORI_LOG_LEVEL": "LOUD"}, "INORI_LOG_LEVEL"),
    ],
)
def test_a_bad_value_is_reported_with_the_variable_name(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str) -> None:
    with pytest.raises(ValidationError) as err:
        settings(monkeypatch, **env)
    assert named in describe_error(err.value)
