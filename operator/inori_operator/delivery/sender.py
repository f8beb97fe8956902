"""One signed POST to one checked destination; every failure becomes a ``DeliveryOutcome``.

Exceptions stop here (the kopf ``Outcome`` habit): the engine only ever sees an outcome value.

Connections go to the address the destination policy checked, never to a fresh DNS answer: the
pool's network backend looks each host up in a table of pinned, checked addresses and refuses a
host that is not in it (fail closed). TLS still verifies the certificate against the URL's host
name, because httpcore passes the origin host as the server name after connecting.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import certifi
import httpcore
import httpx
from httpcore._utils import is_socket_readable

from .. import __version__
from ..destinations import Destination

USER_AGENT = f"inori-operator/{__version__} (+https://inori.io/docs/webhooks)"
MAX_ERROR_LENGTH = 300


@dataclass(frozen=True)
class DeliveryOutcome:
    ok: bool
    http_status: int | None
    error: str | None
    duration: float  # seconds


class _Stream(httpcore.AsyncNetworkStream):
    """A network stream that answers the pool's frequent "is_readable" check cheaply.

    httpcore asks every pooled connection whether it is readable each time it assigns a
    request; through anyio's TLS stream that rebuilds an attribute table per call (12 % of the
    operator's CPU under load, measured with py-spy). The raw socket never changes, so keep it.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream, sock: socket.socket | None = None) -> None:
        self._inner = inner
        self._sock = sock if sock is not None else inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout), self._sock)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return is_socket_readable(self._sock)
        return self._inner.get_extra_info(info)


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connect to the pinned, policy-checked address of a host, or refuse to connect at all."""

    def __init__(self, pins: dict[str, str]) -> None:
        self._pins = pins
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = self._pins.get(host.strip("[]"))
        if address is None:
            raise httpcore.ConnectError(f"{host} was not checked by the destination policy")
        return _Stream(await self._inner.connect_tcp(address, port, timeout, local_address, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, pins: dict[str, str], ssl_context: ssl.SSLContext, limits: httpx.Limits) -> None:
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        # httpx does not expose the pool's network backend; rebuild the pool with ours.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinnedBackend(pins),
        )


def ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """Public CAs plus, optionally, an extra bundle (private receivers, test CAs)."""
    ctx = ssl.create_default_context(cafile=certifi.where())
    if ca_bundle is not None:
        ctx.load_verify_locations(cafile=str(ca_bundle))
    return ctx


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"


class Sender:
    """The shared, pooled HTTP client for all deliveries."""

    def __init__(
        self,
        *,
        ca_bundle: Path | None = None,
        max_connections: int = 512,
        max_per_host: int = 8,
        max_response_bytes: int = 65536,
    ) -> None:
        self._pins: dict[str, str] = {}
        # httpcore's pool slows down sharply with many requests in flight to one origin (measured
        # here: 500 POST/s at 10 concurrent, 300/s at 32, 130/s at 256), so each host gets a lane.
        self._per_host = max_per_host
        self._lanes: dict[tuple[str, int], asyncio.Semaphore] = {}
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=30)
        self._client = httpx.AsyncClient(
            transport=_PinnedTransport(self._pins, ssl_context(ca_bundle), limits),
            follow_redirects=False,
            trust_env=False,
        )
        self._max_response_bytes = max_response_bytes

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(self, destination: Destination, body: bytes, headers: dict[str, str], timeout: float) -> DeliveryOutcome:
        self._pins[destination.host] = destination.addresses[0]
        lane = self._lanes.get((destination.host, destination.port))
        if lane is None:
            lane = self._lanes[(destination.host, destination.port)] = asyncio.Semaphore(self._per_host)
        async with lane:
            return await self._send(destination, body, headers, timeout)

    async def _send(self, destination: Destination, body: bytes, headers: dict[str, str], timeout: float) -> DeliveryOutcome:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):  # caps slow-drip answers too, not just each read
                async with self._client.stream(
                    "POST", destination.url, content=body, headers=headers, timeout=httpx.Timeout(timeout)
                ) as response:
                    await self._drain(response)
                    status = response.status_code
        except TimeoutError:
            return DeliveryOutcome(False, None, f"timed out after {timeout:g}s", time.perf_counter() - started)
        except httpx.TimeoutException:
            return DeliveryOutcome(False, None, f"timed out after {timeout:g}s", time.perf_counter() - started)
        except httpx.ConnectError as exc:
            return DeliveryOutcome(False, None, _short(f"connection failed: {exc or type(exc).__name__}"), time.perf_counter() - started)
        except httpx.HTTPError as exc:
            return DeliveryOutcome(False, None, _short(f"{type(exc).__name__}: {exc}"), time.perf_counter() - started)
        duration = time.perf_counter() - started
        if 200 <= status < 300:
            return DeliveryOutcome(True, status, None, duration)
        if 300 <= status < 400:
            return DeliveryOutcome(False, status, f"HTTP {status}: redirects are not followed", duration)
        return DeliveryOutcome(False, status, f"HTTP {status}", duration)

    async def _drain(self, response: httpx.Response) -> None:
        """Read at most ``max_response_bytes`` of the answer; a 100 MiB reply costs us nothing."""
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read >= self._max_response_bytes:
                break
