"""STARTTLS on the relay, for an MTA on another host (smtp_tls_cert and
smtp_tls_key): offered when configured, and mail sent over it is stored."""

from __future__ import annotations

import smtplib
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mailintake.config import Settings
from mailintake.services import Services

from .conftest import ServiceThread, apt_install, require, wait_for
from .mails import make_message


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    require(apt_install("openssl", "/usr/bin/openssl"), "Debian's openssl package is not installable here")
    cert, key = tmp_path / "relay.pem", tmp_path / "relay.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


class TestWithACertificate:
    @pytest.fixture
    def settings(self, make_settings: Any, certificate: tuple[Path, Path]) -> Settings:
        cert, key = certificate
        return make_settings(smtp_tls_cert=str(cert), smtp_tls_key=str(key))

    def test_starttls_is_offered_and_mail_over_it_is_stored(
        self, services: Services, service: ServiceThread, certificate: tuple[Path, Path]
    ) -> None:
        context = ssl.create_default_context(cafile=str(certificate[0]))
        context.check_hostname = False
        with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=30) as client:
            client.ehlo()
            assert client.has_extn("starttls")
            client.starttls(context=context)
            client.ehlo()
            assert isinstance(client.sock, ssl.SSLSocket)
            client.sendmail("mta@city.example.jp", "soumu@city.example.jp", make_message(subject="暗号化経路"))
        wait_for(lambda: services.messages.count() == 1, 15)


def test_without_a_certificate_starttls_is_not_offered(service: ServiceThread) -> None:
    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=30) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
