"""Unit tests for inori_operator.destinations: the server-side request forgery policy.

No network: a fake resolver stands in for DNS, except for one real lookup of "localhost".
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable

import pytest

from inori_operator.destinations import (
    Destination,
    DestinationPolicy,
    DestinationRefused,
    check_address,
    check_scheme,
    resolve,
)

STRICT = DestinationPolicy()
PLAIN_HTTP = DestinationPolicy(allow_plain_http=True)


def fake_resolver(answers: dict[str, list[str]]) -> Callable[[str, int], Awaitable[list[str]]]:
    """A resolver that answers from a table and records what it was asked."""
    asked: list[tuple[str, int]] = []

    async def lookup(host: str, port: int) -> list[str]:
        asked.append((host, port))
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    lookup.asked = asked  # type: ignore[attr-defined]
    return lookup


# --- check_scheme -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "url", "expected"),
    [
        (STRICT, "https://hooks.example.com/inori", ("https", "hooks.example.com", 443)),
        (STRICT, "https://hooks.example.com:8443/inori", ("https", "hooks.example.com", 8443)),
        (STRICT, "HTTPS://Hooks.Example.COM/", ("https", "hooks.example.com", 443)),
        (STRICT, "https://[2001:4860::8888]/x", ("https", "2001:4860::8888", 443)),
        (STRICT, "https://user:pass@hooks.example.com/", ("https", "hooks.example.com", 443)),
        (PLAIN_HTTP, "http://receiver.test/hook", ("http", "receiver.test", 80)),
        (PLAIN_HTTP, "http://receiver.test:8080/hook", ("http", "receiver.test", 8080)),
        (PLAIN_HTTP, "https://receiver.test/hook", ("https", "receiver.test", 443)),
    ],
)
def test_an_allowed_scheme_gives_the_host_and_port(
    policy: DestinationPolicy, url: str, expected: tuple[str, str, int]
) -> None:
    assert check_scheme(policy, url) == expected


@pytest.mark.parametrize(
    ("policy", "url"),
    [
        (STRICT, "http://hooks.example.com/"),
        (STRICT, "ftp://hooks.example.com/"),
        (STRICT, "file:///etc/passwd"),
        (STRICT, "gopher://127.0.0.1:6379/_FLUSHALL"),
        (PLAIN_HTTP, "ws://hooks.example.com/"),
        (STRICT, "hooks.example.com/inori"),
        (STRICT, "//hooks.example.com/inori"),
        (STRICT, ""),
    ],
)
def test_a_scheme_other_than_https_is_refused(policy: DestinationPolicy, url: str) -> None:
    with pytest.raises(DestinationRefused) as caught:
        check_scheme(policy, url)
    assert caught.value.reason == "SchemeNotAllowed"


def test_the_scheme_refusal_explains_how_plain_http_can_be_allowed() -> None:
    with pytest.raises(DestinationRefused, match="allow-plain-HTTP"):
        check_scheme(STRICT, "http://hooks.example.com/")


@pytest.mark.parametrize(
    "url",
    [
        "https:///path",
        "https://:443/path",
        "https://hooks.example.com:99999/",
        "https://hooks.example.com:port/",
        "https://hooks.example.com:0/",
        "https://[::1/",
        "https://hooks.example.com/in ori",
        "https://hooks.example.com/\ninori",
        "\thttps://hooks.example.com/",
        "https://hooks.example.com/\x00",
    ],
)
def test_a_url_that_cannot_be_parsed_or_has_no_host_is_invalid(url: str) -> None:
    with pytest.raises(DestinationRefused) as caught:
        check_scheme(STRICT, url)
    assert caught.value.reason == "InvalidURL"


@pytest.mark.parametrize(
    "url",
    [
        "http://admin:hunter2@hooks.example.com/",
        "https://admin:hunter2@hooks.example.com:99999/",
        "https://admin:hunter2@[::1/",
        "admin:hunter2@hooks.example.com",
        "https://admin:hunter2@/path",
        "https://admin:hunter2@hooks.example.com/ hunter2",
    ],
)
def test_credentials_in_a_refused_url_never_appear_in_the_message(url: str) -> None:
    with pytest.raises(DestinationRefused) as caught:
        check_scheme(STRICT, url)
    assert "hunter2" not in str(caught.value)
    assert "admin" not in str(caught.value)


# --- check_address ------------------------------------------------------------------------------

REFUSED_ADDRESSES = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.0.1",
    "100.64.0.1",
    "100.127.255.254",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "0.0.0.0",
    "0.1.2.3",
    "192.0.0.1",
    "192.0.0.9",
    "192.0.0.170",
    "192.0.2.1",
    "198.18.0.1",
    "198.19.255.255",
    "198.51.100.7",
    "203.0.113.7",
    "::",
    "::1",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "fe80::1%eth0",
    "fec0::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:0.0.0.0",
    "::127.0.0.1",
    "::ffff:0:7f00:1",
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::808:808",  # local-use NAT64
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo with a documentation client
    "2001:db8::1",
    "100::1",
    "2001:10::1",
    "4000::1",  # unassigned (reserved) space
]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_an_address_that_is_not_globally_routable_is_refused(address: str) -> None:
    with pytest.raises(DestinationRefused) as caught:
        check_address(STRICT, ipaddress.ip_address(address))
    assert caught.value.reason == "AddressNotAllowed"


PUBLIC_ADDRESSES = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.63.255.255",  # just below carrier-grade NAT
    "100.128.0.0",  # just above carrier-grade NAT
    "172.15.255.255",
    "172.32.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8, as DNS64 answers in IPv6-only clusters
]


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_a_globally_routable_address_is_allowed(address: str) -> None:
    check_address(STRICT, ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("169.254.169.254", "metadata"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("198.18.0.1", "benchmarking"),
        ("255.255.255.255", "broadcast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("fd00::1", "private"),
        ("::ffff:127.0.0.1", "embeds 127.0.0.1, a loopback"),
        ("64:ff9b::a00:1", "embeds 10.0.0.1, a private"),
    ],
)
def test_the_refusal_names_the_kind_of_address(address: str, words: str) -> None:
    with pytest.raises(DestinationRefused, match=words):
        check_address(STRICT, ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("cidrs", "address"),
    [
        (["127.0.0.0/8"], "127.0.0.1"),
        (["10.0.0.0/8"], "10.96.0.10"),
        (["10.96.0.10/32"], "10.96.0.10"),
        (["10.96.0.10"], "10.96.0.10"),
        (["169.254.169.254/32"], "169.254.169.254"),
        (["::1/128"], "::1"),
        (["fd00::/8"], "fd00::1"),
        (["127.0.0.0/8"], "::ffff:127.0.0.1"),
        (["::ffff:127.0.0.0/104"], "::ffff:127.0.0.1"),
        (["fe80::/10"], "fe80::1%eth0"),
        (["192.168.0.0/16", "::1/128"], "192.168.49.2"),
    ],
)
def test_an_address_inside_an_allowed_network_is_allowed_even_if_private(cidrs: list[str], address: str) -> None:
    policy = DestinationPolicy.from_cidrs(False, cidrs)
    check_address(policy, ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("cidrs", "address"),
    [
        (["10.0.0.0/8"], "127.0.0.1"),
        (["10.96.0.10/32"], "10.96.0.11"),
        (["127.0.0.0/8"], "::1"),
        (["::1/128"], "127.0.0.1"),
    ],
)
def test_the_allow_list_opens_only_its_own_networks(cidrs: list[str], address: str) -> None:
    policy = DestinationPolicy.from_cidrs(False, cidrs)
    with pytest.raises(DestinationRefused):
        check_address(policy, ipaddress.ip_address(address))


# --- DestinationPolicy.from_cidrs ---------------------------------------------------------------


def test_a_policy_is_built_from_cidr_strings() -> None:
    policy = DestinationPolicy.from_cidrs(True, [" 10.0.0.0/8", "fd00::/8 ", ""])
    assert policy.allow_plain_http
    assert policy.allowed_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    )


def test_the_default_policy_allows_only_https_and_no_exceptions() -> None:
    assert DestinationPolicy() == DestinationPolicy.from_cidrs(False, [])


@pytest.mark.parametrize("cidr", ["10.0.0.1/8", "10.0.0.0/33", "not-a-network", "10.0.0.0/8,fd00::/8", "::1/129"])
def test_a_bad_cidr_is_refused_with_an_example_of_a_good_one(cidr: str) -> None:
    with pytest.raises(ValueError, match="CIDR notation such as 10.0.0.0/8"):
        DestinationPolicy.from_cidrs(False, [cidr])


# --- resolve ------------------------------------------------------------------------------------


async def test_a_public_host_resolves_to_its_checked_addresses() -> None:
    resolver = fake_resolver({"hooks.example.com": ["93.184.216.34", "2606:2800:220:1::1", "93.184.216.34"]})
    destination = await resolve(STRICT, "https://hooks.example.com/inori", resolver=resolver)
    assert destination == Destination(
        url="https://hooks.example.com/inori",
        scheme="https",
        host="hooks.example.com",
        port=443,
        addresses=("93.184.216.34", "2606:2800:220:1::1"),
    )
    assert resolver.asked == [("hooks.example.com", 443)]  # type: ignore[attr-defined]


async def test_the_resolver_is_asked_with_the_url_port() -> None:
    resolver = fake_resolver({"hooks.example.com": ["93.184.216.34"]})
    destination = await resolve(STRICT, "https://hooks.example.com:8443/", resolver=resolver)
    assert destination.port == 8443
    assert resolver.asked == [("hooks.example.com", 8443)]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "answers",
    [
        ["10.0.0.5"],
        ["169.254.169.254"],
        ["127.0.0.1"],
        ["93.184.216.34", "10.0.0.5"],
        ["10.0.0.5", "93.184.216.34"],
        ["2606:2800:220:1::1", "::1"],
        ["93.184.216.34", "::ffff:192.168.0.1"],
    ],
)
async def test_a_host_with_any_refused_address_is_refused(answers: list[str]) -> None:
    resolver = fake_resolver({"hooks.example.com": answers})
    with pytest.raises(DestinationRefused) as caught:
        await resolve(STRICT, "https://hooks.example.com/", resolver=resolver)
    assert caught.value.reason == "AddressNotAllowed"
    assert "hooks.example.com resolves to" in str(caught.value)


async def test_a_redirect_target_in_a_private_network_is_refused() -> None:
    resolver = fake_resolver({"internal.corp": ["192.168.10.20"]})
    with pytest.raises(DestinationRefused) as caught:
        await resolve(STRICT, "https://internal.corp/admin", resolver=resolver)
    assert caught.value.reason == "AddressNotAllowed"


async def test_a_host_that_does_not_resolve_is_unresolvable() -> None:
    with pytest.raises(DestinationRefused) as caught:
        await resolve(STRICT, "https://nowhere.invalid/", resolver=fake_resolver({}))
    assert caught.value.reason == "UnresolvableHost"


async def test_a_host_with_no_addresses_is_unresolvable() -> None:
    with pytest.raises(DestinationRefused) as caught:
        await resolve(STRICT, "https://empty.example/", resolver=fake_resolver({"empty.example": []}))
    assert caught.value.reason == "UnresolvableHost"


async def test_a_resolver_answer_that_is_not_an_address_is_unresolvable() -> None:
    resolver = fake_resolver({"odd.example": ["93.184.216.34", "not-an-ip"]})
    with pytest.raises(DestinationRefused) as caught:
        await resolve(STRICT, "https://odd.example/", resolver=resolver)
    assert caught.value.reason == "UnresolvableHost"


async def test_a_resolver_timeout_is_unresolvable() -> None:
    async def slow(host: str, port: int) -> list[str]:
        raise TimeoutError

    with pytest.raises(DestinationRefused) as caught:
        await resolve(STRICT, "https://slow.example/", resolver=slow)
    assert caught.value.reason == "UnresolvableHost"


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://127.0.0.1:8443/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://169.254.169.254/latest/meta-data/",
        "https://0.0.0.0/",
        "https://[::]/",
    ],
)
async def test_an_ip_literal_is_checked_without_asking_the_resolver(url: str) -> None:
    resolver = fake_resolver({})
    with pytest.raises(DestinationRefused) as caught:
        await resolve(STRICT, url, resolver=resolver)
    assert caught.value.reason == "AddressNotAllowed"
    assert resolver.asked == []  # type: ignore[attr-defined]


async def test_an_allowed_loopback_literal_becomes_the_destination() -> None:
    policy = DestinationPolicy.from_cidrs(True, ["127.0.0.0/8", "::1/128"])
    destination = await resolve(policy, "http://127.0.0.1:8080/hook", resolver=fake_resolver({}))
    assert destination == Destination(
        url="http://127.0.0.1:8080/hook", scheme="http", host="127.0.0.1", port=8080, addresses=("127.0.0.1",)
    )
    ipv6 = await resolve(policy, "http://[::1]:8080/hook", resolver=fake_resolver({}))
    assert ipv6.addresses == ("::1",)
    assert ipv6.host == "::1"


async def test_an_allow_listed_in_cluster_service_resolves() -> None:
    policy = DestinationPolicy.from_cidrs(True, ["10.96.0.0/12"])
    resolver = fake_resolver({"receiver.team-a.svc.cluster.local": ["10.96.12.34"]})
    destination = await resolve(policy, "http://receiver.team-a.svc.cluster.local/hook", resolver=resolver)
    assert destination.addresses == ("10.96.12.34",)


async def test_the_scheme_is_checked_before_anything_is_resolved() -> None:
    resolver = fake_resolver({"hooks.example.com": ["93.184.216.34"]})
    with pytest.raises(DestinationRefused) as caught:
        await resolve(STRICT, "http://hooks.example.com/", resolver=resolver)
    assert caught.value.reason == "SchemeNotAllowed"
    assert resolver.asked == []  # type: ignore[attr-defined]


async def test_credentials_never_appear_in_an_address_refusal() -> None:
    resolver = fake_resolver({"internal.corp": ["10.0.0.5"]})
    with pytest.raises(DestinationRefused) as caught:
        await resolve(STRICT, "https://admin:hunter2@internal.corp/secret-path?token=abc", resolver=resolver)
    message = str(caught.value)
    for secret in ("admin", "hunter2", "secret-path", "token", "abc"):
        assert secret not in message


async def test_localhost_resolves_with_the_system_resolver_and_is_refused() -> None:
    with pytest.raises(DestinationRefused) as caught:
        await resolve(STRICT, "https://localhost:8443/hook")
    assert caught.value.reason == "AddressNotAllowed"
    assert "loopback" in str(caught.value)


async def test_a_numeric_host_that_the_system_resolver_reads_as_loopback_is_refused() -> None:
    """Forms like 2130706433 or 127.1 are not IP literals to Python, but getaddrinfo reads them."""
    for url in ("https://2130706433/", "https://127.1/", "https://0x7f.1/"):
        with pytest.raises(DestinationRefused):
            await resolve(STRICT, url)


async def test_the_system_resolver_is_used_for_an_allow_listed_localhost() -> None:
    policy = DestinationPolicy.from_cidrs(True, ["127.0.0.0/8", "::1/128"])
    destination = await resolve(policy, "http://localhost:8080/")
    assert destination.addresses
    assert all(ipaddress.ip_address(a).is_loopback for a in destination.addresses)


def test_a_refusal_is_an_exception_with_a_reason_and_a_message() -> None:
    error = DestinationRefused("AddressNotAllowed", "the address 10.0.0.1 is private")
    assert error.reason == "AddressNotAllowed"
    assert error.message == str(error) == "the address 10.0.0.1 is private"
