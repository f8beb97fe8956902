"""The sender against real HTTPS servers on loopback (no cluster needed).

Every way an attempt can go wrong must come back as an outcome with an error a receiver's owner
can act on, never as an exception, and never mislabelled (a dropped connection is not a timeout).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import trustme
from support.receiver import Answer, Receiver

from inori_operator.delivery.sender import USER_AGENT, Sender
from inori_operator.destinations import Destination

BODY = b'{"id":"e1","event":"vendor.created","timestamp":"2026-01-01T00:00:00Z","data":{}}'


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def receiver(ca: trustme.CA) -> Iterator[Receiver]:
    rec = Receiver(ca)
    yield rec
    rec.close()


@pytest.fixture
async def sender(ca: trustme.CA, tmp_path) -> AsyncIterator[Sender]:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    s = Sender(ca_bundle=bundle, max_response_bytes=65536)
    yield s
    await s.aclose()


def dest(host: str, port: int, address: str = "127.0.0.1") -> Destination:
    return Destination(url=f"https://{host}:{port}/hook", scheme="https", host=host, port=port, addresses=(address,))


async def send(sender: Sender, destination: Destination, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    return await sender.send(destination, BODY, {"User-Agent": USER_AGENT, "Content-Type": "application/json"}, timeout)


async def test_success_sends_exact_body_to_the_pinned_address_and_verifies_the_name(sender: Sender, receiver: Receiver) -> None:
    # "localhost" is never looked up: the pin says where to connect, the certificate is checked
    # against the URL's name.
    outcome = await send(sender, dest("localhost", receiver.port))
    assert outcome.ok and outcome.http_status == 200 and outcome.error is None
    (got,) = receiver.requests
    assert got.body == BODY and got.headers["User-Agent"] == USER_AGENT


async def test_cookies_are_never_kept(sender: Sender, receiver: Receiver) -> None:
    receiver.answer(Answer(headers=(("Set-Cookie", "session=tenant-a; Path=/"),)))
    for _ in range(2):
        assert (await send(sender, dest("localhost", receiver.port))).ok
    assert all("Cookie" not in r.headers for r in receiver.requests)


async def test_redirect_is_a_failure_and_not_followed(sender: Sender, receiver: Receiver) -> None:
    receiver.answer(Answer(status=302, headers=(("Location", "https://169.254.169.254/"),)))
    outcome = await send(sender, dest("127.0.0.1", receiver.port))
    assert not outcome.ok and outcome.http_status == 302 and "redirects are not followed" in (outcome.error or "")
    assert receiver.count() == 1


async def test_server_error_is_a_failure(sender: Sender, receiver: Receiver) -> None:
    receiver.answer(Answer(status=503))
    outcome = await send(sender, dest("127.0.0.1", receiver.port))
    assert (outcome.ok, outcome.http_status, outcome.error) == (False, 503, "HTTP 503")


async def test_slow_receiver_times_out(sender: Sender, receiver: Receiver) -> None:
    receiver.answer(Answer(stall=3))
    outcome = await send(sender, dest("127.0.0.1", receiver.port), timeout=0.5)
    assert not outcome.ok and outcome.error == "timed out after 0.5s" and outcome.duration < 2


async def test_huge_answer_is_read_only_up_to_the_cap(sender: Sender, receiver: Receiver) -> None:
    receiver.answer(Answer(huge_body=100 * 2**20))
    started = time.monotonic()
    outcome = await send(sender, dest("127.0.0.1", receiver.port), timeout=10)
    assert outcome.ok and outcome.http_status == 200
    assert time.monotonic() - started < 5  # 100 MiB were not read
    assert (await send(sender, dest("127.0.0.1", receiver.port))).ok  # and the pool still works


async def test_refused_connection(sender: Sender) -> None:
    outcome = await send(sender, dest("127.0.0.1", free_port()))
    assert not outcome.ok and outcome.http_status is None
    assert (outcome.error or "").startswith("connection failed:"), outcome.error


async def test_untrusted_certificate(sender: Sender) -> None:
    stranger = Receiver(trustme.CA())  # a CA the sender does not trust
    try:
        outcome = await send(sender, dest("127.0.0.1", stranger.port))
    finally:
        stranger.close()
    assert not outcome.ok and (outcome.error or "").startswith("TLS certificate not accepted"), outcome.error


async def test_dropped_connection_is_not_called_a_timeout(sender: Sender, ca: trustme.CA) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    async with server:
        outcome = await send(sender, dest("127.0.0.1", port))
    assert not outcome.ok and outcome.error == "connection closed by the receiver before a complete answer", outcome.error


async def test_unpinned_host_is_never_resolved(sender: Sender, receiver: Receiver) -> None:
    # Fail closed: a host the policy did not check has no address to connect to.
    outcome = await sender._send(dest("localhost", receiver.port), BODY, {}, 5.0)
    assert not outcome.ok and "not checked by the destination policy" in (outcome.error or ""), outcome.error
    assert receiver.count() == 0


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
