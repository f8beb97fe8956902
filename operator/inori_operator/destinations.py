"""The destination policy: where the operator may send webhook deliveries.

A Webhook URL is chosen by a tenant, and the operator runs inside the cluster, so an unchecked URL
is a server-side request forgery: it could reach the cloud metadata service, the Kubernetes API or
any private service. The default policy therefore allows HTTPS only, and only addresses that are
globally routable. An explicit allow-list of CIDRs (and a plain-HTTP switch) opens exceptions for
development and tests; the allow-list wins over every refusal.

Checking a name is not enough, because DNS can answer differently at connect time (DNS
rebinding). `resolve` therefore returns the checked addresses, and the sender connects to
`Destination.addresses[0]` itself while keeping the original Host header and TLS SNI (server
name) of the URL, so that certificates are still verified against the host name. Redirects are
never followed, so no unchecked second destination is ever contacted.

Messages never contain the URL's user information, path or query, which often carry credentials
(basic-auth passwords, Slack-style secret paths, tokens); they name only the host and port.

Errors:

    DestinationRefused (reason)
    ├── SchemeNotAllowed   the URL is not https (or http when plain HTTP is allowed)
    ├── InvalidURL         the URL cannot be parsed, has no host, or has a bad port
    ├── AddressNotAllowed  the host is, or resolves to, a refused address
    └── UnresolvableHost   the host name has no address (may be temporary: DNS can recover)
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

SCHEME_NOT_ALLOWED = "SchemeNotAllowed"
ADDRESS_NOT_ALLOWED = "AddressNotAllowed"
UNRESOLVABLE_HOST = "UnresolvableHost"
INVALID_URL = "InvalidURL"

_MAX_SHOWN_SCHEME = 16

HTTPS = "https"
HTTP = "http"
DEFAULT_PORTS = {HTTPS: 443, HTTP: 80}

_ADVICE = (
    "the destination policy refuses such addresses unless its allow-list of networks (CIDRs) "
    "contains them"
)


def _networks(*entries: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), label) for cidr, label in entries)


# Judged in order: the first network that contains the address names the refusal. Listed
# explicitly (rather than relying only on `is_private` and friends) so that the policy does not
# change with the Python patch release, whose special-purpose tables have been corrected over time.
_REFUSED_IPV4 = _networks(
    ("0.0.0.0/32", "an unspecified address"),
    ("0.0.0.0/8", "a 'this network' address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a carrier-grade NAT (shared) address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local (cloud metadata) address"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol assignment address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a deprecated 6to4 relay anycast address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
)
_REFUSED_IPV6 = _networks(
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("::/96", "a deprecated IPv4-compatible address"),
    ("::ffff:0:0:0/96", "an IPv4-translated address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001::/23", "an IETF protocol assignment address"),
    ("2001:db8::/32", "a documentation address"),
    ("fc00::/7", "a private (unique local) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a deprecated site-local address"),
    ("ff00::/8", "a multicast address"),
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NOT_GLOBAL = "an address that is not globally routable"


@dataclass(frozen=True)
class DestinationPolicy:
    """Which webhook destinations are allowed (operator settings, not per tenant)."""

    allow_plain_http: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_cidrs(cls, allow_plain_http: bool, cidrs: Iterable[str]) -> DestinationPolicy:
        """Build a policy from CIDR strings; blank entries (a trailing comma) are skipped."""
        networks: list[IPNetwork] = []
        for cidr in cidrs:
            text = cidr.strip()
            if not text:
                continue
            try:
                networks.append(ipaddress.ip_network(text))
            except ValueError as error:
                raise ValueError(
                    f"{text!r} is not a network in CIDR notation such as 10.0.0.0/8 "
                    f"or fd00::/8 ({error})"
                ) from error
        return cls(allow_plain_http=allow_plain_http, allowed_networks=tuple(networks))


class DestinationRefused(Exception):
    """The URL may not be used as a webhook destination; `reason` says why, in one CamelCase word.

    Fix the URL, or (for development) widen the operator's destination policy. Only
    `UnresolvableHost` may go away by itself, when DNS recovers.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Destination:
    """A URL whose addresses passed the policy; the sender connects to `addresses[0]`."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def check_scheme(policy: DestinationPolicy, url: str) -> tuple[str, str, int]:
    """Return the scheme, host and port of `url` if its scheme is allowed; raise otherwise."""
    if not isinstance(url, str) or any(c.isspace() or not c.isprintable() for c in url):
        raise DestinationRefused(
            INVALID_URL, "the URL contains whitespace or control characters"
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
        explicit_port = parts.port
    except ValueError as error:
        raise DestinationRefused(INVALID_URL, "the URL is not a valid http(s) URL") from error
    scheme = parts.scheme.lower()
    allowed = (HTTPS, HTTP) if policy.allow_plain_http else (HTTPS,)
    if scheme not in allowed:
        raise DestinationRefused(
            SCHEME_NOT_ALLOWED,
            f"{_describe_scheme(url, parts.scheme)} is not allowed; use {' or '.join(allowed)}"
            + ("" if policy.allow_plain_http else " (plain http needs the operator's allow-plain-HTTP setting)"),
        )
    if not host:
        raise DestinationRefused(INVALID_URL, "the URL has no host")
    if explicit_port == 0:
        raise DestinationRefused(INVALID_URL, f"the URL for {host} has port 0, which cannot be reached")
    port = explicit_port if explicit_port is not None else DEFAULT_PORTS[scheme]
    return scheme, host, port


def _describe_scheme(url: str, scheme: str) -> str:
    """Name the scheme only when it is unambiguous: in "user:password@host" the "scheme" is a user name."""
    if scheme and url.startswith(f"{scheme}://") and len(scheme) <= _MAX_SHOWN_SCHEME:
        return f"the URL scheme {scheme.lower()!r}"
    return "a URL without an http(s) scheme"


def check_address(policy: DestinationPolicy, ip: IPAddress) -> None:
    """Raise DestinationRefused (AddressNotAllowed) unless the policy allows connecting to `ip`."""
    problem = _why_refused(policy, ip)
    if problem is not None:
        raise DestinationRefused(ADDRESS_NOT_ALLOWED, f"the address {problem}; {_ADVICE}")


async def resolve(
    policy: DestinationPolicy,
    url: str,
    *,
    resolver: Resolver | None = None,
) -> Destination:
    """Check `url` and resolve its host to addresses that are all allowed.

    Every resolved address must pass: whoever controls the DNS of the host must not be able to mix
    a public address with a private one and win whichever the connection happens to pick. Wrap the
    call in a timeout if the resolver may hang.
    """
    scheme, host, port = check_scheme(policy, url)
    literal = _ip_literal(host)
    if literal is not None:
        check_address(policy, literal)
        return Destination(url=url, scheme=scheme, host=host, port=port, addresses=(str(literal),))

    lookup = resolver if resolver is not None else _system_resolver
    try:
        answers = await lookup(host, port)
    except (OSError, UnicodeError) as error:  # socket.gaierror, timeouts, bad IDNA names
        raise DestinationRefused(
            UNRESOLVABLE_HOST, f"the host {host} cannot be resolved ({type(error).__name__})"
        ) from error

    addresses: list[IPAddress] = []
    for answer in answers:
        address = _ip_literal(answer)
        if address is None:
            raise DestinationRefused(
                UNRESOLVABLE_HOST, f"the host {host} resolved to {answer!r}, which is not an IP address"
            )
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise DestinationRefused(UNRESOLVABLE_HOST, f"the host {host} has no address")
    for address in addresses:
        problem = _why_refused(policy, address)
        if problem is not None:
            raise DestinationRefused(ADDRESS_NOT_ALLOWED, f"the host {host} resolves to {problem}; {_ADVICE}")
    return Destination(
        url=url, scheme=scheme, host=host, port=port, addresses=tuple(str(a) for a in addresses)
    )


async def _system_resolver(host: str, port: int) -> list[str]:
    """Resolve with the operating system, IPv4 and IPv6 alike."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _ip_literal(text: str) -> IPAddress | None:
    """Return the address if `text` is an IP literal (IPv6 possibly with a zone), else None."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _why_refused(policy: DestinationPolicy, ip: IPAddress) -> str | None:
    """Describe why `ip` is refused, as "<ip>, <category>", or return None when it is allowed."""
    if _allow_listed(policy, ip):
        return None
    embedded = _embedded_ipv4(ip)
    if embedded:
        for inner in embedded:
            problem = _why_refused(policy, inner)
            if problem is not None:
                return f"{ip}, which embeds {problem}"
        return None
    category = _refused_category(ip)
    return None if category is None else f"{ip}, {category}"


def _allow_listed(policy: DestinationPolicy, ip: IPAddress) -> bool:
    """Tell whether an allow-listed network contains `ip` (the explicit allow-list wins)."""
    bare = _without_zone(ip)
    return any(bare.version == net.version and bare in net for net in policy.allowed_networks)


def _without_zone(ip: IPAddress) -> IPAddress:
    """Drop an IPv6 zone id (fe80::1%eth0), which would otherwise take part in comparisons."""
    return ipaddress.IPv6Address(ip.packed) if isinstance(ip, ipaddress.IPv6Address) else ip


def _embedded_ipv4(ip: IPAddress) -> tuple[ipaddress.IPv4Address, ...]:
    """Return the IPv4 addresses an IPv6 address stands for, so they are judged instead.

    IPv4-mapped (::ffff:a.b.c.d) connects to the IPv4 address itself; 6to4, Teredo (server and
    client) and well-known-prefix NAT64 (64:ff9b::/96) carry an IPv4 address the traffic reaches.
    """
    if not isinstance(ip, ipaddress.IPv6Address):
        return ()
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return ip.teredo
    if _without_zone(ip) in _NAT64:
        return (ipaddress.IPv4Address(ip.packed[-4:]),)
    return ()


def _refused_category(ip: IPAddress) -> str | None:
    """Name the special-purpose range of `ip`, or return None for a globally routable address."""
    bare = _without_zone(ip)
    table = _REFUSED_IPV4 if bare.version == 4 else _REFUSED_IPV6
    for network, category in table:
        if bare in network:
            return f"{category} ({network})"
    if bare.is_reserved:
        return "a reserved address"
    if not bare.is_global or bare.is_multicast or bare.is_loopback or bare.is_link_local:
        return _NOT_GLOBAL
    return None
