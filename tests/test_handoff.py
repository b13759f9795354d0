"""The hand-off to the document system: the registration feed (exactly once,
in commit order, across restarts and a slow transaction), acknowledgements,
token scopes, document packages and the 目録 export. On SQLite and
PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import random
import threading
import time
import zipfile
from typing import Any

import httpx
import jsonschema
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailintake.config import Settings
from mailintake.errors import BadRequest
from mailintake.handoff import catalogue, feed, package
from mailintake.models import RegistrationEvent
from mailintake.people.accounts import UserInfo
from mailintake.people.tokens import SCOPES
from mailintake.records import events
from mailintake.records.registry import Amendment, RegistrationRequest
from mailintake.services import Services

from .conftest import ServiceThread, wait_for
from .factories import designate, make_user, stored_message

SOUMU = "soumu@city.example.jp"
ZAISEI = "zaisei@city.example.jp"
TODAY = dt.date(2026, 11, 20)


@pytest.fixture
def people(services: Services) -> dict[str, UserInfo]:
    for address, section in ((SOUMU, "総務課"), (ZAISEI, "財政課")):
        if address not in {a.address for a in services.addresses.list()}:  # the service fixture adds 総務課's
            designate(services, address, section)
    return {
        "clerk": make_user(services, "sato", password=None, sections=["総務課"]),
        "chief": make_user(services, "suzuki", password=None, role="section_admin", sections=["総務課"]),
        "other": make_user(services, "tanaka", password=None, sections=["財政課"]),
    }


def request_for(message_id: int, **extra: Any) -> RegistrationRequest:
    values: dict[str, Any] = {
        "message_id": message_id,
        "subject": "会議資料の送付について",
        "sender": "山田　太郎",
        "received_on": TODAY,
        "retention": "5年",
        "sender_reference": "8総総第123号",
        "reply_due": dt.date(2026, 12, 4),
    }
    values.update(extra)
    return RegistrationRequest(**values)


def registration_schema() -> dict[str, Any]:
    schema = package.schema()
    return {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": "#/$defs/registration"}


def read_all(services: Services, limit: int = 3, section_ids: Any = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = feed.read(services.engine, cursor, limit, section_ids)
        items += page.items
        cursor = page.next_cursor
        if not page.has_more:
            return items


class TestFeed:
    def test_registering_amending_and_cancelling_are_events_with_the_full_record(
        self, services: Services, people: dict[str, UserInfo]
    ) -> None:
        ids = [stored_message(services, SOUMU) for _ in range(3)]
        done = services.registry.register(people["clerk"], [request_for(i) for i in ids])
        services.registry.amend(
            people["chief"],
            done[1].id,
            Amendment(subject="訂正後の件名", sender="山田　太郎", retention="10年", sender_reference="8総総第124号"),
        )
        services.registry.cancel(people["chief"], done[2].id, "重複")

        items = read_all(services)
        assert [(i["registration"]["id"], i["event"]) for i in items] == [
            (done[0].id, "registered"),
            (done[1].id, "registered"),
            (done[2].id, "registered"),
            (done[1].id, "amended"),
            (done[2].id, "cancelled"),
        ]
        assert [i["event_id"] for i in items] == sorted(i["event_id"] for i in items)
        for item in items:
            jsonschema.validate(item["registration"], registration_schema())
        first = items[0]["registration"]
        assert first["receipt_number"] == {"formatted": "総務第1号", "symbol": "総務", "fiscal_year": 2026, "number": 1}
        assert first["sender"] == {
            "name": "山田　太郎",
            "organisation": "",
            "address": "yamada@example.co.jp",
        }  # U+3000 kept
        assert first["sender_reference"] == "8総総第123号"
        assert first["reply_due"] == "2026-12-04"
        assert first["reply_required"] is True  # a 回答期限 asks for an answer
        assert (first["receipt_method"], first["document_date"]) == ("電子メール", None)
        assert first["section"]["name"] == "総務課"
        assert first["source"]["message_id"] == ids[0]
        # Each item carries the record as it is now.
        assert items[1]["registration"]["subject"] == "訂正後の件名"
        assert items[2]["registration"]["status"] == "cancelled"

    def test_small_pages_read_every_event_once_and_an_empty_page_keeps_the_position(
        self, services: Services, people: dict[str, UserInfo]
    ) -> None:
        ids = [stored_message(services, SOUMU) for _ in range(7)]
        services.registry.register(people["clerk"], [request_for(i) for i in ids])
        items = read_all(services, limit=2)
        assert [i["registration"]["source"]["message_id"] for i in items] == ids
        end = feed.read(services.engine, items[-1]["cursor"], 5)
        assert end.items == [] and not end.has_more
        assert end.next_cursor == items[-1]["cursor"]

    def test_a_cursor_that_is_not_ours_is_refused(self, services: Services) -> None:
        for cursor in ("nonsense", "ZTE6LTE", "=="):
            with pytest.raises(BadRequest):
                feed.read(services.engine, cursor, 10)

    def test_a_token_limited_to_a_section_reads_only_its_events(
        self, services: Services, people: dict[str, UserInfo]
    ) -> None:
        services.registry.register(people["clerk"], [request_for(stored_message(services, SOUMU))])
        services.registry.register(people["other"], [request_for(stored_message(services, ZAISEI))])
        zaisei = services.accounts.section_id("財政課")
        items = read_all(services, section_ids=[zaisei])
        assert [i["registration"]["section"]["name"] for i in items] == ["財政課"]


def test_the_book_finds_a_senders_number_and_keeps_to_registrations_with_a_reply_due(
    services: Services, people: dict[str, UserInfo]
) -> None:
    ids = [stored_message(services, SOUMU) for _ in range(3)]
    services.registry.register(
        people["clerk"],
        [
            request_for(ids[0], sender_reference="8総総第123号"),
            request_for(ids[1], sender_reference="環境第45_6号", reply_due=None),
            request_for(ids[2], sender_reference="", reply_due=None, remarks="100%回答"),
        ],
    )
    section = services.accounts.section_id("総務課")

    def found(q: str = "", due: bool = False) -> list[str]:
        return [r.receipt_number for r in services.registry.book(people["clerk"], section, 2026, q, due)]

    assert found("総総第123") == ["総務第1号"]
    assert found("45_6") == ["総務第2号"]  # _ and % are not wildcards
    assert found("%") == ["総務第3号"]
    assert found(due=True) == ["総務第1号"]
    assert found() == ["総務第1号", "総務第2号", "総務第3号"]


class TestAcknowledgement:
    def test_an_ack_is_idempotent_and_a_later_cancellation_needs_a_new_one(
        self, services: Services, people: dict[str, UserInfo]
    ) -> None:
        [done] = services.registry.register(people["clerk"], [request_for(stored_message(services, SOUMU))])
        first = feed.ack(services.engine, done.id, "文書管理システム")
        again = feed.ack(
            services.engine, done.id, "文書管理システム", now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        )
        assert first == again and not first["pending"]
        assert services.registry.get(people["clerk"], done.id).handed_off_at is not None

        services.registry.cancel(people["chief"], done.id, "誤登録")
        info = services.registry.get(people["clerk"], done.id)
        assert info.handoff_pending
        cancelled = read_all(services)[-1]
        assert cancelled["event"] == "cancelled"
        # Acknowledging the older event does not acknowledge the cancellation.
        assert feed.ack(services.engine, done.id, "x", event_id=first["acknowledged_event_id"])["pending"]
        assert not feed.ack(services.engine, done.id, "x", event_id=cancelled["event_id"])["pending"]

    def test_an_event_of_another_registration_is_refused(self, services: Services, people: dict[str, UserInfo]) -> None:
        done = services.registry.register(
            people["clerk"], [request_for(stored_message(services, SOUMU)) for _ in range(2)]
        )
        other_event = read_all(services)[1]["event_id"]
        with pytest.raises(BadRequest):
            feed.ack(services.engine, done[0].id, "x", event_id=other_event)

    def test_unacknowledged_registrations_are_listed_for_section_admins_after_the_set_age(
        self, services: Services, people: dict[str, UserInfo]
    ) -> None:
        done = services.registry.register(
            people["clerk"], [request_for(stored_message(services, SOUMU)) for _ in range(2)]
        )
        feed.ack(services.engine, done[0].id, "x")
        section = services.accounts.section_id("総務課")
        assert services.registry.awaiting_handoff(people["chief"], section, dt.timedelta(hours=1)) == []
        late = services.registry.awaiting_handoff(people["chief"], section, dt.timedelta(seconds=-1))
        assert [r.id for r in late] == [done[1].id]


class Clerks:
    """Clerks of two sections registering and a chief cancelling, in
    threads, while a consumer reads."""

    def __init__(self, services: Services, people: dict[str, UserInfo], queues: dict[str, list[int]]) -> None:
        self.services = services
        self.people = people
        self.queues = queues  # person -> message ids
        self.lock = threading.Lock()
        self.registered: dict[str, list[int]] = {person: [] for person in queues}
        self.errors: list[BaseException] = []

    def take(self, person: str, n: int) -> list[int]:
        with self.lock:
            taken, self.queues[person] = self.queues[person][:n], self.queues[person][n:]
            return taken

    def register_all(self, person: str = "clerk") -> None:
        try:
            while batch := self.take(person, random.choice((1, 1, 2))):
                done = self.services.registry.register(self.people[person], [request_for(i) for i in batch])
                with self.lock:
                    self.registered[person] += [r.id for r in done]
                time.sleep(0.1)  # a clerk's pace: the consumer keeps up
        except BaseException as exc:
            self.errors.append(exc)

    def cancel(self, count: int) -> None:
        try:
            for registration_id in random.sample(self.registered["clerk"], count):
                self.services.registry.cancel(self.people["chief"], registration_id, "重複のため")
        except BaseException as exc:
            self.errors.append(exc)


class Consumer:
    """The document system: polls the feed in small pages over HTTP and
    acknowledges each registration; survives the server going away."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.base_url = ""
        self.cursor: str | None = None
        self.seen: list[tuple[int, int, str]] = []
        self.done = threading.Event()
        self.errors: list[BaseException] = []
        self.http = httpx.Client(timeout=30)  # keep-alive, as a real consumer

    def run(self) -> None:
        try:
            quiet = 0
            while quiet < 3:
                page = self._poll()
                if page is None:
                    time.sleep(0.1)
                    continue
                for item in page["items"]:
                    self.seen.append((item["event_id"], item["registration"]["id"], item["event"]))
                    self._ack(item["registration"]["id"], item["event_id"])
                self.cursor = page["next_cursor"]
                quiet = quiet + 1 if self.done.is_set() and not page["items"] else 0
                if not page["items"]:
                    time.sleep(0.05)
        except BaseException as exc:
            self.errors.append(exc)
        finally:
            self.http.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _poll(self) -> dict[str, Any] | None:
        params = {"limit": random.choice((1, 3, 5))}
        if self.cursor:
            params["after"] = self.cursor  # type: ignore[assignment]
        try:
            response = self.http.get(f"{self.base_url}/api/v1/registrations", params=params, headers=self._headers())
        except httpx.TransportError:
            return None  # the server is restarting
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def _ack(self, registration_id: int, event_id: int) -> None:
        while True:
            try:
                response = self.http.post(
                    f"{self.base_url}/api/v1/registrations/{registration_id}/ack",
                    json={"event_id": event_id},
                    headers=self._headers(),
                )
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            assert response.status_code == 200, response.text
            return


def test_a_polling_consumer_sees_every_event_exactly_once_through_concurrency_a_slow_commit_and_a_restart(
    settings: Settings, services: Services, people: dict[str, UserInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN 200 registrations by concurrent clerks of two sections and 20
    cancellations, one 財政課 registration held open around its event while
    総務課's commit (a section's registrations already queue on its number
    counter; two sections do not)
    WHEN a consumer polls with small pages and acknowledges, and the server
    restarts in the middle
    THEN it sees every event once, each registration before its
    cancellation, and everything ends acknowledged."""
    queues = {
        "clerk": [stored_message(services, SOUMU) for _ in range(190)],
        "other": [stored_message(services, ZAISEI) for _ in range(10)],
    }
    clerks = Clerks(services, people, queues)
    consumer = Consumer(services.tokens.create("文書管理システム", SCOPES))

    record = events.record
    slow_thread: list[int] = []
    held, release = threading.Event(), threading.Event()

    def record_slowly(session: Session, changed: Any, at: dt.datetime) -> None:
        record(session, changed, at)
        if threading.get_ident() in slow_thread:
            slow_thread.clear()
            held.set()
            release.wait(30)  # the event is numbered; its commit waits

    monkeypatch.setattr(events, "record", record_slowly)

    def slow_registration() -> None:
        slow_thread.append(threading.get_ident())
        clerks.register_all("other")

    service = ServiceThread(settings).start()
    consumer.base_url = service.base_url
    reader = threading.Thread(target=consumer.run)
    reader.start()
    workers = [threading.Thread(target=clerks.register_all) for _ in range(3)]
    for worker in workers:
        worker.start()
    wait_for(lambda: len(consumer.seen) >= 20, 120)
    workers.append(threading.Thread(target=slow_registration))
    workers[-1].start()
    held.wait(30)
    time.sleep(1.5)  # 総務課 goes on registering meanwhile, and the consumer on reading
    release.set()
    wait_for(lambda: len(consumer.seen) >= 100, 120)
    service.stop()  # the restart, mid-stream
    service = ServiceThread(settings).start()
    consumer.base_url = service.base_url
    for worker in workers:
        worker.join(240)
    clerks.cancel(20)
    consumer.done.set()
    reader.join(240)
    service.stop()

    assert clerks.errors == [] and consumer.errors == []
    with Session(services.engine) as session:
        committed = [(e.seq, e.registration_id, e.event) for e in session.scalars(select(RegistrationEvent))]
    assert sorted(consumer.seen) == sorted(committed)  # none skipped, none twice
    assert consumer.seen == sorted(consumer.seen)  # read in commit order
    assert len([e for e in consumer.seen if e[2] == "registered"]) == 200
    assert len([e for e in consumer.seen if e[2] == "cancelled"]) == 20
    position = {(registration, event): i for i, (_, registration, event) in enumerate(consumer.seen)}
    for (registration, event), index in position.items():
        if event == "cancelled":
            assert position[(registration, "registered")] < index
    with Session(services.engine) as session:
        assert events.awaiting_ack(session, dt.datetime.now(dt.UTC) + dt.timedelta(days=1)) == []


class TestOverHttp:
    @pytest.fixture
    def registered(self, services: Services, people: dict[str, UserInfo]) -> int:
        message_id = stored_message(
            services,
            SOUMU,
            body="来週の会議資料を送付します。\n よろしくお願いします。",
            attachments=(
                ("会議資料.pdf", b"%PDF-1.4 1", "application/pdf"),
                ("会議資料.PDF", b"%PDF-1.4 2", "application/pdf"),
                ("../../etc/passwd", b"root:x", "text/plain"),
                ("CON.txt", b"con", "text/plain"),
                ("見積書\u202egpj.exe", b"MZ", "application/octet-stream"),
                ("本文に埋め込み.png", b"\x89PNG", "image/png"),
            ),
        )
        with Session(services.engine) as session:
            from mailintake.models import Attachment

            chosen = list(
                session.scalars(
                    select(Attachment.id).where(Attachment.message_id == message_id).order_by(Attachment.position)
                )
            )[:5]
        [done] = services.registry.register(people["clerk"], [request_for(message_id, attachment_ids=chosen)])
        return done.id

    def test_the_package_holds_the_record_the_original_the_body_and_safe_unique_attachment_names(
        self, service: ServiceThread, api: httpx.Client, services: Services, registered: int
    ) -> None:
        first = api.get(f"/api/v1/registrations/{registered}/package")
        second = api.get(f"/api/v1/registrations/{registered}/package")
        assert first.status_code == 200 and first.headers["content-type"] == "application/zip"
        assert first.content == second.content  # the same bytes every time
        archive = zipfile.ZipFile(io.BytesIO(first.content))
        assert archive.testzip() is None
        names = archive.namelist()
        assert names[:3] == ["metadata.json", "original.eml", "本文.txt"]
        metadata = json.loads(archive.read("metadata.json"))
        jsonschema.validate(metadata, api.get("/api/v1/schemas/registration-package.json").json())
        assert metadata["registration"] == api.get(f"/api/v1/registrations/{registered}").json()
        attachments = [n for n in names if n.startswith("attachments/")]
        assert attachments == [
            "attachments/会議資料.pdf",
            "attachments/会議資料 (2).PDF",
            "attachments/passwd",
            "attachments/_CON.txt",
            "attachments/見積書 gpj.exe",
        ]
        assert len({n.casefold() for n in names}) == len(names)
        for name in names:
            assert ".." not in name.split("/") and not name.startswith("/") and "\\" not in name
        for listed in metadata["files"]:
            assert hashlib.sha256(archive.read(listed["path"])).hexdigest() == listed["sha256"]
            assert archive.getinfo(listed["path"]).file_size == listed["size"]
        assert [f["path"] for f in metadata["files"]] == names[1:]
        message_id = metadata["registration"]["source"]["message_id"]
        assert archive.read("original.eml") == api.get(f"/api/v1/messages/{message_id}/raw").content
        assert archive.read("本文.txt").decode("utf-8") == "来週の会議資料を送付します。\r\n よろしくお願いします。"

    def test_scopes_decide_what_a_token_may_do(
        self, service: ServiceThread, services: Services, registered: int
    ) -> None:
        mail_only = services.tokens.create("mail-only")  # as tokens made before scopes existed
        reader = services.tokens.create("reader", ["registrations:read"])
        protected = {
            ("GET", "/api/v1/registrations"): "registrations:read",
            ("GET", "/api/v1/registrations.csv"): "registrations:read",
            ("GET", f"/api/v1/registrations/{registered}"): "registrations:read",
            ("GET", f"/api/v1/registrations/{registered}/package"): "registrations:read",
            ("POST", f"/api/v1/registrations/{registered}/ack"): "registrations:ack",
            ("GET", "/api/v1/messages"): "messages:read",
        }
        for (method, path), scope in protected.items():
            for token, scopes in ((mail_only, {"messages:read"}), (reader, {"registrations:read"})):
                response = httpx.request(method, service.base_url + path, headers={"Authorization": f"Bearer {token}"})
                assert response.status_code == (200 if scope in scopes else 403), (path, scopes, response.text)

    def test_a_section_limited_token_cannot_reach_another_sections_registration(
        self, service: ServiceThread, services: Services, people: dict[str, UserInfo], registered: int
    ) -> None:
        token = services.tokens.create("財政課だけ", SCOPES, sections=["財政課"])
        headers = {"Authorization": f"Bearer {token}"}
        for path in ("", "/package"):
            url = f"{service.base_url}/api/v1/registrations/{registered}{path}"
            assert httpx.get(url, headers=headers).status_code == 404
        assert (
            httpx.post(f"{service.base_url}/api/v1/registrations/{registered}/ack", headers=headers).status_code == 404
        )
        assert httpx.get(f"{service.base_url}/api/v1/registrations", headers=headers).json()["items"] == []
        assert httpx.get(f"{service.base_url}/api/v1/messages", headers=headers).json()["items"] == []

    def test_the_catalogue_lists_active_documents_with_their_expiry_in_either_encoding(
        self,
        service: ServiceThread,
        api: httpx.Client,
        services: Services,
        people: dict[str, UserInfo],
        registered: int,
    ) -> None:
        [other] = services.registry.register(
            people["clerk"], [request_for(stored_message(services, SOUMU), subject="=HYPERLINK(1)", retention="永年")]
        )
        [gone] = services.registry.register(people["clerk"], [request_for(stored_message(services, SOUMU))])
        services.registry.cancel(people["chief"], gone.id, "誤り")
        for encoding, codec in (("utf-8", "utf-8-sig"), ("cp932", "cp932")):
            response = api.get("/api/v1/registrations.csv", params={"fiscal_year": 2026, "encoding": encoding})
            assert response.status_code == 200
            table = list(csv.reader(io.StringIO(response.content.decode(codec))))
            assert table[0] == list(catalogue.COLUMNS)
            assert [row[1] for row in table[1:]] == ["総務第1号", "総務第2号"]
            assert table[1][0] == "2026" and table[1][5] == "8総総第123号"
            assert table[1][7:9] == ["5年", "2032-03-31"]
            assert table[2][3] == "'=HYPERLINK(1)" and table[2][8] == ""

    def test_bad_requests_get_400_with_the_reason(
        self, service: ServiceThread, api: httpx.Client, registered: int
    ) -> None:
        for path, params in (
            ("/api/v1/registrations", {"after": "not-a-cursor"}),
            ("/api/v1/registrations", {"limit": "0"}),
            ("/api/v1/registrations.csv", {"encoding": "latin-1"}),
            ("/api/v1/registrations.csv", {"fiscal_year": "令和8"}),
        ):
            response = api.get(path, params=params)
            assert response.status_code == 400 and response.json()["error"], (path, params)
        bad_body = api.post(f"/api/v1/registrations/{registered}/ack", content=b"{not json")
        assert bad_body.status_code == 400


def test_catalogue_expiry_counts_from_the_april_after_the_fiscal_year() -> None:
    assert catalogue.expiry_date(2026, "1年") == dt.date(2028, 3, 31)
    assert catalogue.expiry_date(2026, "５年") == dt.date(2032, 3, 31)
    assert catalogue.expiry_date(2026, "30年") == dt.date(2057, 3, 31)
    assert catalogue.expiry_date(2026, "永年") is None
    assert catalogue.expiry_date(2026, "1年未満") is None
