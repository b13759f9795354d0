"""The SMTP relay: who may deliver, for which addresses, how much, and what
happens to the bytes."""

from __future__ import annotations

import smtplib
import socket
import time

import httpx
import pytest

from mailintake.services import Services
from tests.factories import designate

from .conftest import ServiceThread, wait_for
from .mails import make_message, send


def _items(api: httpx.Client, **params: str) -> list[dict]:
    response = api.get("/api/v1/messages", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def _raw_session(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return sock


def _read_reply(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n") or data.split(b"\r\n")[-2][3:4] == b"-":
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


class TestDelivery:
    def test_mail_for_a_designated_address_appears_in_the_api_within_two_seconds(
        self, service: ServiceThread, api: httpx.Client
    ) -> None:
        """GIVEN a designated address WHEN the MTA delivers a mail for it
        THEN the messages API lists it, decoded, within 2 s."""
        raw = make_message(subject="予算要求について", sender="山田 太郎 <yamada@example.co.jp>")
        started = time.monotonic()
        assert send(service.smtp_port, raw) == {}
        items = wait_for(lambda: _items(api), timeout=2)
        assert time.monotonic() - started < 2
        assert items[0]["subject"] == "予算要求について"
        assert items[0]["from"] == {"name": "山田 太郎", "address": "yamada@example.co.jp"}
        assert items[0]["address"] == "soumu@city.example.jp"
        assert items[0]["status"] == "new"

    def test_envelope_and_headers_are_recorded(self, service: ServiceThread, api: httpx.Client) -> None:
        raw = make_message(message_id="<abc-123@example.co.jp>")
        send(service.smtp_port, raw, mail_from="bounce@example.co.jp")
        item = wait_for(lambda: _items(api), timeout=2)[0]
        detail = api.get(f"/api/v1/messages/{item['id']}").json()
        assert detail["envelope"] == {
            "mail_from": "bounce@example.co.jp",
            "rcpt_to": "soumu@city.example.jp",
            "client_address": "127.0.0.1",
        }
        assert detail["message_id"] == "<abc-123@example.co.jp>"
        assert detail["to"] == [{"name": "", "address": "soumu@city.example.jp"}]
        assert "来週の会議資料を送付します。" in detail["text"]
        assert detail["date"] is not None

    def test_the_original_bytes_are_kept(self, service: ServiceThread, api: httpx.Client) -> None:
        raw = make_message(attachments=[("資料.pdf", b"%PDF-1.4 test", "application/pdf")])
        send(service.smtp_port, raw)
        item = wait_for(lambda: _items(api), timeout=2)[0]
        assert api.get(f"/api/v1/messages/{item['id']}/raw").content == raw


class TestRecipients:
    def test_other_addresses_are_refused_at_rcpt_with_550(self, service: ServiceThread) -> None:
        with smtplib.SMTP("127.0.0.1", service.smtp_port) as client:
            client.ehlo()
            client.mail("mta@city.example.jp")
            code, text = client.rcpt("jinji@city.example.jp")
        assert code == 550
        assert text.startswith(b"5.1.1")

    def test_domain_case_does_not_matter(self, service: ServiceThread, api: httpx.Client) -> None:
        assert send(service.smtp_port, make_message(), rcpt="soumu@CITY.Example.JP") == {}
        assert wait_for(lambda: _items(api), timeout=2)[0]["address"] == "soumu@city.example.jp"

    def test_disabling_an_address_takes_effect_without_restart(
        self, service: ServiceThread, services: Services, api: httpx.Client
    ) -> None:
        services.addresses.set_enabled("soumu@city.example.jp", False)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            send(service.smtp_port, make_message())
        assert refused.value.recipients["soumu@city.example.jp"][0] == 550
        services.addresses.set_enabled("soumu@city.example.jp", True)
        assert send(service.smtp_port, make_message()) == {}

    def test_an_address_added_while_running_is_accepted(self, service: ServiceThread, services: Services) -> None:
        designate(services, "jinji@city.example.jp", "人事課")
        assert send(service.smtp_port, make_message(), rcpt="jinji@city.example.jp") == {}

    def test_only_the_designated_recipients_of_a_mixed_envelope_get_the_mail(
        self, service: ServiceThread, api: httpx.Client
    ) -> None:
        refused = send(service.smtp_port, make_message(), rcpt=["soumu@city.example.jp", "mayor@city.example.jp"])
        assert refused["mayor@city.example.jp"][0] == 550
        items = wait_for(lambda: _items(api), timeout=2)
        assert [i["address"] for i in items] == ["soumu@city.example.jp"]


class TestRelayControl:
    def test_a_client_outside_the_relay_networks_is_refused(self, service: ServiceThread) -> None:
        """The default relay list is exactly 127.0.0.1 and ::1."""
        sock = _raw_session(service.smtp_port, source="127.0.0.2")
        with sock:
            greeting = _read_reply(sock)
        assert greeting.startswith(b"554 5.7.1")
        assert b"Relay access denied" in greeting

    def test_smtplib_from_outside_the_relay_networks_cannot_send(self, service: ServiceThread) -> None:
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            smtplib.SMTP("127.0.0.1", service.smtp_port, source_address=("127.0.0.2", 0), timeout=10)
        assert refused.value.smtp_code == 554

    def test_configured_relay_networks_are_honoured(
        self, make_settings, database_url: str, start_service, tmp_path
    ) -> None:
        settings = make_settings(database_url=database_url, relay_networks=["127.0.0.2/32"])
        svc = start_service(settings)
        with pytest.raises(smtplib.SMTPConnectError):
            smtplib.SMTP("127.0.0.1", svc.smtp_port, timeout=10)
        with smtplib.SMTP("127.0.0.1", svc.smtp_port, source_address=("127.0.0.2", 0), timeout=10) as client:
            assert client.noop()[0] == 250

    def test_connections_over_the_cap_are_told_to_retry(self, make_settings, database_url: str, start_service) -> None:
        svc = start_service(make_settings(database_url=database_url, max_connections=2))
        first = smtplib.SMTP("127.0.0.1", svc.smtp_port, timeout=10)
        second = smtplib.SMTP("127.0.0.1", svc.smtp_port, timeout=10)
        try:
            with pytest.raises(smtplib.SMTPConnectError) as refused:
                smtplib.SMTP("127.0.0.1", svc.smtp_port, timeout=10)
            assert refused.value.smtp_code == 421
        finally:
            first.quit()
            second.quit()
        # A slot frees up once a connection ends.
        wait_for(lambda: _try_connect(svc.smtp_port), timeout=5)

    def test_a_silent_client_is_disconnected_after_the_timeout(
        self, make_settings, database_url: str, start_service
    ) -> None:
        svc = start_service(make_settings(database_url=database_url, smtp_timeout=1))
        sock = _raw_session(svc.smtp_port)
        with sock:
            assert _read_reply(sock).startswith(b"220")
            sock.settimeout(5)
            started = time.monotonic()
            assert sock.recv(1024) == b""  # closed by the server
            assert time.monotonic() - started < 4


def _try_connect(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            return client.noop()[0] == 250
    except smtplib.SMTPConnectError:
        return False


class TestSize:
    def test_size_is_advertised(self, service: ServiceThread) -> None:
        with smtplib.SMTP("127.0.0.1", service.smtp_port) as client:
            client.ehlo()
            assert client.has_extn("size")
            assert int(client.esmtp_features["size"]) == service.settings.max_message_size

    def test_a_declared_size_over_the_limit_is_refused_at_mail(
        self, make_settings, database_url: str, services: Services, start_service
    ) -> None:
        svc = start_service(make_settings(database_url=database_url, max_message_size=100_000))
        with smtplib.SMTP("127.0.0.1", svc.smtp_port) as client:
            client.ehlo()
            code, text = client.mail("mta@city.example.jp", ["SIZE=200000"])
        assert (code, text[:5]) == (552, b"5.3.4")

    def test_data_over_the_limit_gets_552_and_nothing_is_stored(
        self, make_settings, database_url: str, services: Services, designated: str, start_service
    ) -> None:
        settings = make_settings(database_url=database_url, max_message_size=100_000)
        svc = start_service(settings)
        big = make_message(attachments=[("big.bin", b"x" * 200_000, "application/octet-stream")])
        with smtplib.SMTP("127.0.0.1", svc.smtp_port) as client:
            client.ehlo()
            # Lie about nothing: an MTA may omit SIZE, so send without it.
            client.esmtp_features.pop("size", None)
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("mta@city.example.jp", ["soumu@city.example.jp"], big)
            assert refused.value.smtp_code == 552
            assert refused.value.smtp_error.startswith(b"5.3.4")
            # The session goes on: the next mail is accepted.
            assert client.sendmail("mta@city.example.jp", ["soumu@city.example.jp"], make_message()) == {}
        wait_for(lambda: services.messages.count() == 1, timeout=3)
        assert list((settings.spool_dir / "tmp").iterdir()) == []


class TestDataTransparency:
    def test_a_bare_lf_dot_lf_does_not_end_data(self, service: ServiceThread, api: httpx.Client) -> None:
        """SMTP smuggling: only CRLF . CRLF ends DATA."""
        sock = _raw_session(service.smtp_port)
        with sock:
            _read_reply(sock)
            for command in (
                b"EHLO mta\r\n",
                b"MAIL FROM:<a@example.jp>\r\n",
                b"RCPT TO:<soumu@city.example.jp>\r\n",
                b"DATA\r\n",
            ):
                sock.sendall(command)
                _read_reply(sock)
            sock.sendall(
                b"Subject: smuggle test\r\n\r\nfirst\n.\nMAIL FROM:<evil@example.jp>\r\nafter the bare dot\r\n.\r\n"
            )
            assert _read_reply(sock).startswith(b"250")
            sock.sendall(b"QUIT\r\n")
        item = wait_for(lambda: _items(api), timeout=2)[0]
        assert len(_items(api)) == 1
        text = api.get(f"/api/v1/messages/{item['id']}").json()["text"]
        assert "after the bare dot" in text
        assert "MAIL FROM:<evil@example.jp>" in text

    def test_dot_stuffed_lines_are_unstuffed(self, service: ServiceThread, api: httpx.Client) -> None:
        raw = b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n"
        send(service.smtp_port, raw)  # smtplib stuffs the dots
        item = wait_for(lambda: _items(api), timeout=2)[0]
        assert api.get(f"/api/v1/messages/{item['id']}/raw").content == raw

    def test_lines_longer_than_the_rfc_limit_are_kept_whole(self, service: ServiceThread, api: httpx.Client) -> None:
        long_line = "長" * 2000
        raw = (
            "Subject: long\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            + long_line
            + "\r\n"
        ).encode()
        send(service.smtp_port, raw)
        item = wait_for(lambda: _items(api), timeout=2)[0]
        assert api.get(f"/api/v1/messages/{item['id']}/raw").content == raw


class TestDuplicates:
    def test_the_same_bytes_resent_are_stored_once(
        self, service: ServiceThread, api: httpx.Client, services: Services
    ) -> None:
        """RFC 1047: the MTA re-sends after a lost 250."""
        raw = make_message()
        send(service.smtp_port, raw)
        send(service.smtp_port, raw)
        wait_for(lambda: services.spool.backlog() == 0 and _items(api), timeout=3)
        time.sleep(0.3)
        assert len(_items(api)) == 1

    def test_the_same_bytes_for_two_addresses_are_stored_for_each(
        self, service: ServiceThread, api: httpx.Client, services: Services
    ) -> None:
        designate(services, "jinji@city.example.jp", "人事課")
        raw = make_message()
        send(service.smtp_port, raw, rcpt=["soumu@city.example.jp", "jinji@city.example.jp"])
        items = wait_for(lambda: len(_items(api)) == 2 and _items(api), timeout=3)
        assert sorted(i["address"] for i in items) == ["jinji@city.example.jp", "soumu@city.example.jp"]
