"""The SMTP relay: accepts mail from the organisation's MTA for designated
addresses and makes it durable in the spool before answering 250.

Nothing here parses mail or touches the database; the ingester does that
after the 250, from the spool.

- :class:`ConnectionGate` refuses clients outside the relay networks (554)
  and connections over the cap (421).
- :class:`IntakeHandler` answers MAIL (SIZE) and RCPT (designated address).
- :class:`IntakeSMTP` streams DATA into a spool file, so memory use does not
  grow with the message and an oversize message is never held whole.
- :class:`SmtpRelay` owns the listening server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import ssl
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession

from ..config import Settings
from ..errors import ConfigError, SpoolError
from .addresses import AddressBook
from .counters import RelayMetrics
from .spool import Envelope, Spool, SpooledMessage

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 100

REPLY_NOT_RELAY = "554 5.7.1 Relay access denied: this host accepts mail only from the configured MTA"
REPLY_TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try again later"
REPLY_TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"
# Postfix defers on 421 and retries later (at the other node, if it has one).
REPLY_SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"


class ConnectionGate:
    """Shared by all connections of one relay: who may connect, and how many."""

    def __init__(self, networks: tuple[Any, ...], max_connections: int, metrics: RelayMetrics) -> None:
        self.networks = networks
        self.max_connections = max_connections
        self.metrics = metrics
        self.closing = False
        self.sessions: set[IntakeSMTP] = set()

    @property
    def active(self) -> int:
        return len(self.sessions)

    def allows(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.networks)


class IntakeHandler:
    """aiosmtpd hooks: validates the envelope; DATA is IntakeSMTP's."""

    def __init__(self, address_book: AddressBook, max_message_size: int, metrics: RelayMetrics) -> None:
        self.address_book = address_book
        self.max_message_size = max_message_size
        self.metrics = metrics

    async def handle_EHLO(
        self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        # aiosmtpd's own SIZE handling answers without an enhanced status
        # code, so the relay advertises and checks SIZE itself.
        return responses[:-1] + [f"250-SIZE {self.max_message_size}", responses[-1]]

    async def handle_MAIL(
        self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope, address: str, mail_options: list[str]
    ) -> str:
        for option in mail_options:
            key, _, value = option.partition("=")
            if key.upper() == "SIZE" and value.isdigit() and int(value) > self.max_message_size:
                self.metrics.refuse("too_big")
                return REPLY_TOO_BIG
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope, address: str, rcpt_options: list[str]
    ) -> str:
        if not self.address_book.accepts(address):
            self.metrics.refuse("unknown_recipient")
            log.info("refused RCPT %s from %s", address, session.peer)
            return f"550 5.1.1 <{address}>: Recipient address rejected: not a designated receiving address"
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"


class IntakeSMTP(SMTP):
    """aiosmtpd's protocol with a relay gate and a streaming DATA phase."""

    def __init__(
        self,
        handler: IntakeHandler,
        *,
        gate: ConnectionGate,
        spool: Spool,
        on_spooled: Callable[[SpooledMessage], None],
        max_message_size: int,
        **kwargs: Any,
    ) -> None:
        # data_size_limit=None: SIZE is advertised and enforced by us.
        super().__init__(handler, data_size_limit=None, **kwargs)
        self._gate = gate
        self._spool = spool
        self._on_spooled = on_spooled
        self._max_message_size = max_message_size
        self._refused = False
        # From 354 until the reply to the data is written: a shutdown waits
        # for this, so a message either gets its 250 or is simply not taken.
        self.in_data = False

    # -- connection gate ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Called again after STARTTLS, with the TLS transport: counted once.
        if self.transport is None and self not in self._gate.sessions:
            peer = transport.get_extra_info("peername")
            host = peer[0] if peer else ""
            reply = None
            if self._gate.closing:
                reply = REPLY_SHUTTING_DOWN
            elif not self._gate.allows(host):
                reply = REPLY_NOT_RELAY
                self._gate.metrics.refuse("not_relay_network")
                log.warning("refused connection from %s: not a relay network", host)
            elif self._gate.active >= self._gate.max_connections:
                reply = REPLY_TOO_MANY_CONNECTIONS
                self._gate.metrics.refuse("too_many_connections")
                log.warning("refused connection from %s: %d connections open", host, self._gate.active)
            if reply is not None:
                self._refused = True
                transport.write(reply.encode("ascii") + b"\r\n")  # type: ignore[attr-defined]
                transport.close()
                return
            self._gate.sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        self._gate.sessions.discard(self)
        super().connection_lost(error)

    def hang_up(self, reply: str | None = REPLY_SHUTTING_DOWN) -> None:
        """End the session now, telling the client why when ``reply`` is given."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if reply is not None:
            transport.write(reply.encode("ascii") + b"\r\n")  # type: ignore[attr-defined]
        transport.close()

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    # -- DATA -----------------------------------------------------------------

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None and self.session is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        metrics = self._gate.metrics
        try:
            self._spool.check_writable()
            writer = self._spool.open()
        except SpoolError as exc:
            metrics.refuse("spool_error")
            log.error("spool unavailable: %s", exc)
            await self.push(exc.smtp_reply)
            return
        committed = False
        self.in_data = True
        try:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            outcome = await self._receive_data(writer)
            if outcome is None:
                envelope = self._spool_envelope()
                try:
                    spooled = await self._spool.commit_async(writer, envelope)
                except SpoolError as exc:
                    metrics.refuse("spool_error")
                    log.error("spool commit failed: %s", exc)
                    outcome = exc.smtp_reply
                else:
                    metrics.accept()
                    committed = True
                    self._on_spooled(spooled)
                    outcome = f"250 2.0.0 Ok: queued as {spooled.spool_id}"
            elif outcome == REPLY_TOO_BIG:
                metrics.refuse("too_big")
            else:
                metrics.refuse("spool_error")
        finally:
            if not committed:
                writer.abort()
        self._set_post_data_state()
        try:
            await self.push(outcome)
        finally:
            self.in_data = False
        if self._gate.closing:
            self.hang_up()

    async def _receive_data(self, writer: Any) -> str | None:
        """Read until the lone dot; ``None`` when the data is all in ``writer``,
        else the reply to give after the data has been read to its end."""
        limit = self._max_message_size
        size = 0
        at_line_start = True
        problem: str | None = None
        lines_since_reset = 0
        while self.transport is not None:
            try:
                # CRLF only: a bare LF never ends a line, so never ends DATA.
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as exc:
                # A line longer than the stream limit: take it in fragments
                # rather than bouncing a citizen's mail over formatting.
                line = await self._reader.read(exc.consumed)
            if at_line_start:
                if line == b".\r\n":
                    return problem
                if line[:1] == b".":
                    line = line[1:]
            at_line_start = line.endswith(b"\r\n")
            lines_since_reset += 1
            if lines_since_reset >= 64:
                # A slow sender is fine while it keeps sending.
                self._reset_timeout()
                lines_since_reset = 0
            if problem is not None:
                continue
            size += len(line)
            if size > limit:
                problem = REPLY_TOO_BIG
                writer.abort()  # free the disk now; keep reading to the dot
                continue
            try:
                writer.write(line)
            except SpoolError as exc:
                log.error("spool write failed: %s", exc)
                problem = exc.smtp_reply
                writer.abort()
        raise ConnectionResetError("connection closed during DATA")

    def _spool_envelope(self) -> Envelope:
        assert self.envelope is not None and self.session is not None
        peer = self.session.peer
        return Envelope(
            mail_from=self.envelope.mail_from or "",
            rcpt_tos=tuple(self.envelope.rcpt_tos),
            client_address=peer[0] if isinstance(peer, tuple) else str(peer or ""),
            received_at=dt.datetime.now(dt.UTC),
            helo=self.session.host_name or "",
        )


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    """STARTTLS for an MTA on another host (smtp_tls_cert/smtp_tls_key)."""
    if settings.smtp_tls_cert is None or settings.smtp_tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.smtp_tls_cert, settings.smtp_tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"smtp_tls_cert/smtp_tls_key cannot be loaded: {exc}") from exc
    return context


class SmtpRelay:
    """Owns the listening SMTP server inside the current event loop."""

    def __init__(self, settings: Settings, spool: Spool, on_spooled: Callable[[SpooledMessage], None]) -> None:
        self.settings = settings
        self.spool = spool
        self.on_spooled = on_spooled
        self.metrics = RelayMetrics(settings.data_dir)
        self.gate = ConnectionGate(settings.relay_networks, settings.max_connections, self.metrics)
        self.handler = IntakeHandler(
            AddressBook(settings.address_snapshot, settings.copy_route_suffix), settings.max_message_size, self.metrics
        )
        self._publisher: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self._tls_context = _tls_context(settings)

    def _protocol(self) -> IntakeSMTP:
        return IntakeSMTP(
            self.handler,
            gate=self.gate,
            spool=self.spool,
            on_spooled=self.on_spooled,
            max_message_size=self.settings.max_message_size,
            hostname=self.settings.smtp_hostname or None,
            ident="mailintake",
            timeout=self.settings.smtp_timeout,
            enable_SMTPUTF8=True,
            tls_context=self._tls_context,
        )

    async def start(self) -> None:
        self.spool.recover()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, host=self.settings.smtp_host, port=self.settings.smtp_port, reuse_address=True
        )
        self._publisher = asyncio.create_task(self._publish_metrics())

    async def _publish_metrics(self) -> None:
        # Counters are rate-limited when they change; this writes the last ones.
        while True:
            await asyncio.sleep(1.0)
            self.metrics.publish()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def address_text(self) -> str:
        return f"{self.settings.smtp_host}:{self.port}"

    async def drain(self, grace: float) -> None:
        """Stop taking mail: new connections and idle sessions get 421 (the
        MTA retries later); a message being received gets up to ``grace``
        seconds to reach its 250, after which it is dropped unacknowledged
        (the MTA still has it)."""
        self.gate.closing = True
        deadline = asyncio.get_running_loop().time() + grace
        while True:
            for session in list(self.gate.sessions):
                if not session.in_data:
                    session.hang_up()
            if not any(session.in_data for session in self.gate.sessions):
                break
            if asyncio.get_running_loop().time() > deadline:
                log.warning("%d message(s) still arriving at shutdown; not acknowledged", len(self.gate.sessions))
                for session in list(self.gate.sessions):
                    session.hang_up(reply=None)
                break
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._publisher is not None:
            self._publisher.cancel()
            self._publisher = None
        self.metrics.publish(force=True)
        self.spool.close()
