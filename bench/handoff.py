"""Hand-off: feed, acknowledgement and package throughput, and the memory
of packaging a 30 MB mail.

- Feed: every event read through ``feed.read`` in pages of 100 (each with
  its full record: section, user, message, attachments, classification),
  against reading the same events joined to their registrations with one
  plain query in the same run.
- Ack: one acknowledgement per registration, each its own transaction,
  against a plain UPDATE of the same columns per row.
- Package: every registration's zip built and streamed (original, body,
  one 100 KB attachment), against reading the same bytes plainly.
- Memory: peak RSS of a process packaging a registration whose mail and
  attachment are 30 MB each, against the same process reading those bytes.

    python -m bench.handoff [--registrations 2000] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailintake.config import load_settings
from mailintake.handoff import feed, package
from mailintake.models import Address, Attachment, Message, Registration, RegistrationEvent, utcnow
from mailintake.records.registry import RegistrationRequest
from mailintake.services import Services, build_services

SOUMU = "soumu@city.example.jp"


def seed(services: Services, count: int, attachment_size: int) -> list[int]:
    services.accounts.add_section("総務課")
    services.addresses.add(SOUMU, "総務課")
    clerk = services.accounts.add_user("sato", password=None, sections=["総務課"])
    attachment = os.urandom(attachment_size)
    sha = services.blobs.put_bytes(attachment)
    ids = []
    with Session(services.engine) as session, session.begin():
        address_id = session.scalar(select(Address.id).where(Address.address == SOUMU))
        for i in range(count):
            raw = f"Subject: 件名 {i}\r\n\r\n本文 {i}\r\n".encode()
            raw_sha = hashlib.sha256(raw).hexdigest()
            source = services.settings.data_dir / "seed.eml"
            source.write_bytes(raw)
            services.originals.keep(source, len(raw), raw_sha)
            message = Message(
                address_id=address_id,
                rcpt_to=SOUMU,
                received_at=utcnow(),
                raw_sha256=raw_sha,
                raw_size=len(raw),
                subject=f"件名 {i}",
                text_body=f"本文 {i}",
                attachment_count=1,
                attachment_bytes=len(attachment),
            )
            session.add(message)
            session.flush()
            session.add(
                Attachment(
                    message_id=message.id,
                    position=0,
                    filename="資料.pdf",
                    content_type="application/pdf",
                    size=len(attachment),
                    sha256=sha,
                )
            )
            ids.append(message.id)
    with Session(services.engine) as session:
        attachment_ids = dict(session.execute(select(Attachment.message_id, Attachment.id)).all())
    registered = []
    for start in range(0, count, 50):
        batch = ids[start : start + 50]
        done = services.registry.register(
            clerk,
            [
                RegistrationRequest(
                    message_id=i,
                    subject=f"件名 {i}",
                    sender="山田",
                    received_on=dt.date(2026, 11, 20),
                    retention="5年",
                    attachment_ids=[attachment_ids[i]],
                )
                for i in batch
            ],
        )
        registered += [r.id for r in done]
    return registered


def timed(action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - started


def feed_rates(services: Services) -> tuple[float, float, int]:
    def through_feed() -> None:
        cursor = None
        while True:
            page = feed.read(services.engine, cursor, 100)
            cursor = page.next_cursor
            if not page.has_more:
                return

    def plain() -> None:
        with Session(services.engine) as session:
            rows = session.execute(
                select(RegistrationEvent, Registration)
                .join(Registration, Registration.id == RegistrationEvent.registration_id)
                .order_by(RegistrationEvent.seq)
            ).all()
            assert rows

    with Session(services.engine) as session:
        events = len(session.scalars(select(RegistrationEvent.seq)).all())
    return events / timed(through_feed), events / timed(plain), events


def ack_rates(services: Services, registrations: list[int]) -> tuple[float, float]:
    half = len(registrations) // 2

    def through_ack() -> None:
        for registration_id in registrations[:half]:
            feed.ack(services.engine, registration_id, "bench")

    def plain() -> None:
        for registration_id in registrations[half : half * 2]:
            with Session(services.engine) as session, session.begin():
                session.execute(
                    update(Registration)
                    .where(Registration.id == registration_id)
                    .values(acked_seq=Registration.last_event_seq, acked_at=utcnow(), acked_by="bench")
                )

    return half / timed(through_ack), half / timed(plain)


def package_rates(services: Services, registrations: list[int]) -> tuple[float, float, int]:
    sample = registrations[:200]
    sizes = []

    def through_package() -> None:
        for registration_id in sample:
            built = package.build(services.engine, services.blobs, services.originals, registration_id)
            sizes.append(sum(len(chunk) for chunk in built.chunks()))

    def plain() -> None:
        with Session(services.engine) as session:
            for registration_id in sample:
                registration = session.get(Registration, registration_id)
                assert registration is not None
                message = session.get(Message, registration.message_id)
                assert message is not None
                for _chunk in services.originals.chunks(message.raw_sha256, message.raw_size):
                    pass
                for attachment_id in registration.attachment_ids:
                    attachment = session.get(Attachment, attachment_id)
                    assert attachment is not None
                    with services.blobs.open(attachment.sha256) as fh:
                        while fh.read(1 << 16):
                            pass

    return len(sample) / timed(through_package), len(sample) / timed(plain), sum(sizes) // max(len(sizes), 1)


PEAK = """
import resource, sys
from mailintake.config import load_settings
from mailintake.services import build_services
from mailintake.handoff import package
from mailintake.models import Message, Registration, Attachment
from sqlalchemy.orm import Session
services = build_services(load_settings(overrides={"data_dir": sys.argv[1], "database_url": sys.argv[2]}, environ={}))
registration_id = int(sys.argv[3])
if sys.argv[4] == "package":
    built = package.build(services.engine, services.blobs, services.originals, registration_id)
    total = sum(len(c) for c in built.chunks())
else:
    with Session(services.engine) as session:
        r = session.get(Registration, registration_id)
        m = session.get(Message, r.message_id)
        total = sum(len(c) for c in services.originals.chunks(m.raw_sha256, m.raw_size))
        for a in r.attachment_ids:
            with services.blobs.open(session.get(Attachment, a).sha256) as fh:
                while chunk := fh.read(1 << 16):
                    total += len(chunk)
print(total, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def big_mail_peak(services: Services, data_dir: Path, database_url: str) -> tuple[int, int]:
    """(peak KB packaging, peak KB reading plainly) for a 30 MB + 30 MB mail."""
    big = os.urandom(30 << 20)
    sha = services.blobs.put_bytes(big)
    source = data_dir / "big.eml"
    source.write_bytes(big)
    services.originals.keep(source, len(big), sha)
    with Session(services.engine) as session, session.begin():
        registration = session.scalars(select(Registration).order_by(Registration.id)).first()
        assert registration is not None
        message = session.get(Message, registration.message_id)
        assert message is not None
        message.raw_sha256, message.raw_size = sha, len(big)
        attachment = session.get(Attachment, registration.attachment_ids[0])
        assert attachment is not None
        attachment.sha256, attachment.size = sha, len(big)
        registration_id = registration.id
    peaks = []
    for mode in ("package", "plain"):
        out = subprocess.run(
            [sys.executable, "-c", PEAK, str(data_dir), database_url, str(registration_id), mode],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks.append(int(out.stdout.split()[1]))
    return peaks[0], peaks[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--registrations", type=int, default=2000)
    parser.add_argument("--database", default="sqlite", help="sqlite, or a PostgreSQL URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        url = "" if args.database == "sqlite" else args.database
        services = build_services(load_settings(overrides={"data_dir": data_dir, "database_url": url}, environ={}))
        try:
            registrations = seed(services, args.registrations, 100 * 1024)
            feed_rate, plain_feed, events = feed_rates(services)
            ack_rate, plain_ack = ack_rates(services, registrations)
            package_rate, plain_package, package_size = package_rates(services, registrations)
            peak_package, peak_plain = big_mail_peak(services, data_dir, services.settings.database_url)
        finally:
            services.close()
    print(f"database: {args.database}; {events} events, {len(registrations)} registrations")
    print(f"feed:    {feed_rate:,.0f} events/s  plain query {plain_feed:,.0f}/s  ratio {feed_rate / plain_feed:.3f}")
    print(f"ack:     {ack_rate:,.0f} acks/s    plain UPDATE {plain_ack:,.0f}/s  ratio {ack_rate / plain_ack:.3f}")
    print(
        f"package: {package_rate:,.0f} packages/s ({package_size / 1024:.0f} KB each)  plain read "
        f"{plain_package:,.0f}/s  ratio {package_rate / plain_package:.3f}"
    )
    print(
        f"30 MB mail + 30 MB attachment: peak RSS packaging {peak_package / 1024:.0f} MB, reading plainly "
        f"{peak_plain / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
