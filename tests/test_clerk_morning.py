"""A clerk's morning without surprises: a mail that another clerk (or
another tab) registered meanwhile is skipped by name while the rest are
registered; the screens speak plain Japanese."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from mailintake.errors import Conflict
from mailintake.people.accounts import UserInfo
from mailintake.records.inbox import InboxFilter
from mailintake.records.registry import RegistrationRequest
from mailintake.services import Services, build_services

from .conftest import ServiceThread, free_port, wait_for
from .factories import designate, make_user, stored_message
from .mails import make_message, send
from .web import ADMIN_PAGES, add_user

SOUMU = "soumu@city.example.jp"


def request_for(message_id: int) -> RegistrationRequest:
    return RegistrationRequest(
        message_id=message_id, subject="件名", sender="山田", received_on=dt.date(2026, 11, 20), retention="5年"
    )


@pytest.fixture
def clerks(services: Services, designated: str) -> dict[str, UserInfo]:
    return {
        "sato": make_user(services, "sato", password=None, sections=["総務課"]),
        "suzuki": make_user(services, "suzuki", password=None, sections=["総務課"]),
    }


def test_a_mail_registered_meanwhile_is_skipped_by_its_subject_and_the_rest_are_numbered(
    services: Services, clerks: dict[str, UserInfo]
) -> None:
    ids = [stored_message(services, SOUMU, subject=f"照会（その{i}）") for i in range(1, 5)]
    services.registry.register(clerks["suzuki"], [request_for(ids[1])])
    services.registry.dismiss(clerks["suzuki"], ids[3], "重複")

    created, taken = services.registry.register_available(clerks["sato"], [request_for(i) for i in ids])

    assert [r.message_id for r in created] == [ids[0], ids[2]]
    assert [r.receipt_number for r in created] == ["総務第2号", "総務第3号"]
    assert [(t.message_id, t.subject, t.status) for t in taken] == [
        (ids[1], "照会（その2）", "registered"),
        (ids[3], "照会（その4）", "dismissed"),
    ]


def test_the_strict_form_still_registers_all_or_none(services: Services, clerks: dict[str, UserInfo]) -> None:
    ids = [stored_message(services, SOUMU, subject=f"照会{i}") for i in range(2)]
    services.registry.register(clerks["suzuki"], [request_for(ids[1])])
    with pytest.raises(Conflict, match="照会1"):
        services.registry.register(clerks["sato"], [request_for(i) for i in ids])
    assert services.registry.for_message(clerks["sato"], ids[0]) == []


def test_the_second_tab_names_the_mail_it_skipped_and_registers_the_rest(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "tanaka", ["総務課"])
    ids = [stored_message(services, SOUMU, subject=f"回覧（{n}）") for n in ("一", "二")]
    browser = browsers(service.base_url)
    browser.login("tanaka")
    form: list[tuple[str, Any]] = []
    for message_id in ids:
        form += [
            ("message_id", message_id),
            (f"subject_{message_id}", "回覧"),
            (f"sender_{message_id}", "山田"),
            (f"received_on_{message_id}", "2026-11-20"),
            (f"retention_{message_id}", "5年"),
        ]
    # The other tab registered the second mail a moment ago.
    services.registry.register(services.accounts.by_username("tanaka"), [request_for(ids[1])])
    response = browser.post("/register", form)
    assert response.status_code == 303
    page = browser.get(response.headers["location"]).text
    assert "収受登録しました（1件）" in page
    assert "回覧（二）" in page and "登録しませんでした" in page
    assert "総務第2号" in page


class _VisibleText(HTMLParser):
    """The text a person reads: text nodes, not attributes (a title tooltip
    may carry the MIME type), not scripts or styles."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _VisibleText()
    parser.feed(html)
    return " ".join(parser.parts)


MIME_TYPE = re.compile(r"\b(?:application|text|image|audio|video|message|multipart)/[a-z0-9.+-]+", re.I)
PROGRAM_WORDS = re.compile(r"\b[A-Z]\w*(?:Error|Exception|Defect)\b|Errno|Traceback")


def test_no_page_shows_a_mime_type_an_exception_name_or_an_errno(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    """GIVEN broken mail, attachments of every common kind and a probe to a
    relay that does not answer
    THEN no page a clerk or an administrator reads shows a MIME type (outside
    a tooltip), a Python exception or defect name, an errno or a traceback."""
    corpus = Path(__file__).resolve().parents[1] / "samples" / "corpus"
    for name in (
        "19-broken-base64-truncated.eml",
        "23-boundary-never-appears.eml",
        "14-winmail-dat.eml",
        "28-bounce-delivery-status.eml",
        "29-calendar-invite.eml",
        "26-outlook-related-inline-image.eml",
    ):
        send(service.smtp_port, (corpus / name).read_bytes())
    send(
        service.smtp_port,
        make_message(
            subject="各種の添付",
            attachments=[
                ("見積書.pdf", b"%PDF-1.4", "application/pdf"),
                ("議事録.docx", b"PK", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
                ("予算.xlsx", b"PK", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
                ("写真.jpg", b"\xff\xd8", "image/jpeg"),
                ("data.bin", b"\x00", "application/octet-stream"),
            ],
        ),
    )
    wait_for(lambda: services.messages.count() == 7, 30)
    add_user(services, "sato", ["総務課"])
    add_user(services, "admin", ["総務課"], role="system_admin")
    clerk, admin = browsers(service.base_url), browsers(service.base_url)
    clerk.login("sato")
    admin.login("admin")
    listed = clerk.get("/messages").text
    message_ids = sorted({int(i) for i in re.findall(r'data-id="(\d+)"', listed)})
    assert len(message_ids) == 7
    pages = {f"/messages/{i}": clerk.get(f"/messages/{i}").text for i in message_ids}
    pages["/messages"] = listed
    pages["/register"] = clerk.get("/register", params=[("id", i) for i in message_ids]).text
    pages["/book"] = clerk.get("/book").text
    for path in ADMIN_PAGES:
        pages[path] = admin.get(path).text
    closed = free_port()  # nothing listens: the probe's connection is refused
    probe = admin.post("/admin/addresses/probe", {"address": SOUMU, "via": f"127.0.0.1:{closed}"})
    pages["probe to a stopped relay"] = probe.text
    assert "に接続できませんでした" in visible_text(probe.text)

    found = {}
    for path, html in pages.items():
        text = visible_text(html)
        bad = MIME_TYPE.findall(text) + PROGRAM_WORDS.findall(text)
        if bad:
            found[path] = sorted(set(bad))
    assert found == {}
    kinds = visible_text(pages[f"/messages/{message_ids[-1]}"])
    assert all(kind in kinds for kind in ("PDF", "Word", "Excel", "画像", "ファイル"))


def test_a_bad_date_is_shown_beside_its_field_and_every_other_filter_is_kept(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "sato", ["総務課"])
    stored_message(services, SOUMU, subject="防災訓練の開催について")
    stored_message(services, SOUMU, subject="予算の照会")
    clerk = browsers(service.base_url)
    clerk.login("sato")
    response = clerk.get("/messages", params={"q": "防災", "from": "2026-13-45", "sort": "oldest", "limit": "25"})
    assert response.status_code == 200
    page = response.text
    assert 'id="error-from"' in page and "2026-12-01 のように入力してください" in page
    assert 'value="防災"' in page and '<option value="oldest" selected>' in page
    assert "<option selected>25</option>" in page
    assert "防災訓練の開催について" in page and "予算の照会" not in page  # the search still applies


def test_a_search_says_how_many_it_found_and_where_it_looked(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "sato", ["総務課"])
    for i in range(3):
        stored_message(services, SOUMU, subject=f"防災資料 {i}")
    stored_message(services, SOUMU, subject="予算の照会")
    dismissed = stored_message(services, SOUMU, subject="防災用品の案内（広告）")
    services.registry.dismiss(services.accounts.by_username("sato"), dismissed, "広告")
    clerk = browsers(service.base_url)
    clerk.login("sato")
    page = clerk.get("/messages", params={"q": "防災"}).text
    assert "検索結果 3件" in page and "未処理のメールの中から検索しました" in page
    everything = re.search(r'href="(/messages\?[^"]*status=all[^"]*)">すべての状態で検索', page)
    assert everything is not None
    wider = clerk.get(everything.group(1).replace("&amp;", "&")).text
    assert "検索結果 4件" in wider and "防災用品の案内（広告）" in wider


def test_the_mail_page_leads_back_to_the_list_as_it_was(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "sato", ["総務課"])
    message_id = stored_message(services, SOUMU, subject="会議の開催について")
    clerk = browsers(service.base_url)
    clerk.login("sato")
    listed = clerk.get("/messages", params={"q": "会議", "sort": "oldest"}).text
    link = re.search(rf'href="(/messages/{message_id}\?back=[^"]+)"', listed)
    assert link is not None
    page = clerk.get(link.group(1).replace("&amp;", "&")).text
    back = re.search(r'<a href="([^"]+)">« 受信一覧に戻る</a>', page)
    assert back is not None
    assert "q=%E4%BC%9A%E8%AD%B0" in back.group(1) and "sort=oldest" in back.group(1)
    hostile = clerk.get(f"/messages/{message_id}", params={"back": "https://evil.example/"}).text
    assert '<a href="/messages">« 受信一覧に戻る</a>' in hostile


def test_ten_wrong_passwords_lock_that_account_only_and_an_administrator_can_unlock_it(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    """One clerk mistyping behind the office's proxy does not lock the office."""
    for name in ("sato", "suzuki"):
        add_user(services, name, ["総務課"])
    add_user(services, "admin", [], role="system_admin")
    office = browsers(service.base_url)  # every request from the same address
    statuses = [office.login("sato", "wrong password!").status_code for _ in range(10)]
    assert statuses.count(429) >= 5
    locked = office.login("sato")
    assert locked.status_code == 429 and "分後" in locked.text and "システム管理者" in locked.text
    assert browsers(service.base_url).login("suzuki").status_code == 303

    admin = browsers(service.base_url)
    admin.login("admin")
    users_page = admin.get("/admin/users").text
    assert "停止中" in users_page
    sato_id = services.accounts.by_username("sato").id
    assert admin.post(f"/admin/users/{sato_id}/unlock").status_code == 303
    assert "停止中" not in admin.get("/admin/users").text
    assert browsers(service.base_url).login("sato").status_code == 303
    logged = [e.action for e in services.audit.entries(services.accounts.by_username("admin"))]
    assert "unlock_login" in logged


def test_batch_settings_fill_the_rows_left_empty_and_an_error_keeps_what_was_typed(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "sato", ["総務課"])
    contract = services.registry.add_classification("契約")
    ids = [stored_message(services, SOUMU, subject=f"照会（{n}）") for n in ("一", "二", "三")]
    clerk = browsers(service.base_url)
    clerk.login("sato")

    def row(message_id: int, **fields: str) -> list[tuple[str, Any]]:
        values = {"subject": "照会", "sender": "山田", "received_on": "2026-11-20", **fields}
        return [("message_id", message_id)] + [(f"{k}_{message_id}", v) for k, v in values.items()]

    # No 保存期間 anywhere: refused, and the page keeps what was typed.
    refused = clerk.post("/register", row(ids[0], remarks="急ぎ") + row(ids[1]) + row(ids[2]))
    assert refused.status_code == 400
    assert "保存期間" in refused.text and "入力した内容はそのまま残っています" in refused.text
    assert ">急ぎ</textarea>" in refused.text

    form = (
        [("batch_retention", "10年"), ("batch_classification", str(contract))]
        + row(ids[0])
        + row(ids[1], retention="1年")
        + row(ids[2])
    )
    done = clerk.post("/register", form)
    assert done.status_code == 303
    clerk_user = services.accounts.by_username("sato")
    got = [services.registry.for_message(clerk_user, i)[0] for i in ids]
    assert [r.retention for r in got] == ["10年", "1年", "10年"]
    assert {r.classification for r in got} == {"契約"}


def test_the_list_counts_each_status_and_offers_today_yesterday_and_this_week(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "sato", ["総務課"])
    now = dt.datetime.now(dt.UTC)
    for _ in range(3):
        stored_message(services, SOUMU, subject="今日のメール", received_at=now)
    old = stored_message(services, SOUMU, subject="先月のメール", received_at=now - dt.timedelta(days=40))
    services.registry.dismiss(services.accounts.by_username("sato"), old, "広告")
    clerk = browsers(service.base_url)
    clerk.login("sato")
    page = clerk.get("/messages").text
    assert "未処理（3）" in page and "対象外（1）" in page and "収受済（0）" in page
    everything = clerk.get("/messages", params={"status": "all"}).text
    today = re.search(r'<a href="([^"]+)"[^>]*>今日（3）</a>', everything)
    assert today is not None and "status=all" in today.group(1)  # the link keeps the other filters
    assert ">昨日（0）</a>" in everything and ">今週（3）</a>" in everything  # quick filters counted too
    listed = clerk.get(today.group(1).replace("&amp;", "&")).text
    assert listed.count(">今日のメール</a>") == 3 and "先月のメール" not in listed
    assert "対象外（0）" in listed  # the counts follow the other filters
    assert "日付の指定を外す" in listed


def test_after_dismissing_or_registering_the_next_new_mail_is_one_key_away(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "sato", ["総務課"])
    now = dt.datetime.now(dt.UTC)
    older = stored_message(services, SOUMU, subject="古いほう", received_at=now - dt.timedelta(minutes=5))
    newer = stored_message(services, SOUMU, subject="新しいほう", received_at=now)
    clerk = browsers(service.base_url)
    clerk.login("sato")
    done = clerk.post(f"/messages/{newer}/dismiss", {"reason": "広告"})
    page = clerk.get(done.headers["location"]).text
    assert re.search(
        rf'<a class="next" href="/messages/{older}\?[^"]*" accesskey="n" autofocus>次の未処理のメールへ：古いほう', page
    )
    registered = clerk.post(
        "/register",
        [
            ("message_id", older),
            (f"subject_{older}", "古いほう"),
            (f"sender_{older}", "山田"),
            (f"received_on_{older}", "2026-11-20"),
            (f"retention_{older}", "5年"),
        ],
    )
    assert "次の未処理のメール" not in clerk.get(registered.headers["location"]).text  # none left


def test_counts_stop_at_the_cap_and_say_so(services: Services, clerks: dict[str, UserInfo]) -> None:
    for i in range(3):
        stored_message(services, SOUMU, subject=f"防災訓練 {i}")
    services.registry.dismiss(clerks["sato"], stored_message(services, SOUMU, subject="予算"), "広告")
    plain = services.inbox.counts(clerks["sato"], InboxFilter(), cap=2)
    assert plain.by_status == {"new": 3, "registered": 0, "dismissed": 1} and plain.at_least == {"new"}
    searched = services.inbox.counts(clerks["sato"], InboxFilter(q="防災"), cap=2)
    assert sum(searched.by_status.values()) == 3 and searched.at_least == set(searched.by_status)
    exact = services.inbox.counts(clerks["sato"], InboxFilter(q="防災"), cap=10)
    assert exact.by_status == {"new": 3, "registered": 0, "dismissed": 0} and not exact.at_least


def test_lists_give_dates_as_people_write_them(services: Services, service: ServiceThread, browsers: Any) -> None:
    """受信一覧, the audit log and the address list: 2026年12月1日(火) 9:05 (Japan time)."""
    add_user(services, "kanri", [], role="system_admin")
    received = dt.datetime(2026, 12, 1, 0, 5, tzinfo=dt.UTC)  # 9:05 in Japan
    message_id = stored_message(services, SOUMU, subject="日付の表示", received_at=received)
    browser = browsers(service.base_url)
    browser.login("kanri")
    listing = browser.get("/messages").text
    assert "2026年12月1日(火) 9:05" in listing
    assert browser.get(f"/messages/{message_id}/source").status_code == 200  # an audited view
    today = dt.datetime.now(dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=9)))
    weekday = "月火水木金土日"[today.weekday()]
    assert f"{today.year}年{today.month}月{today.day}日({weekday}) " in browser.get("/admin/audit").text
    assert "2026年12月1日(火) 9:05" in browser.get("/admin/addresses").text


def test_the_form_keeps_the_lists_order_and_numbers_follow_arrival(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "tanaka", ["総務課"])
    older = stored_message(
        services, SOUMU, subject="先に届いた通知", received_at=dt.datetime(2026, 11, 30, 1, 0, tzinfo=dt.UTC)
    )
    newer = stored_message(
        services, SOUMU, subject="後に届いた通知", received_at=dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)
    )
    browser = browsers(service.base_url)
    browser.login("tanaka")
    listing = browser.get("/messages").text  # newest first
    assert listing.index("後に届いた通知") < listing.index("先に届いた通知")
    form = browser.get(f"/register?id={newer}&id={older}").text
    assert form.index("後に届いた通知") < form.index("先に届いた通知")  # as in the list
    rows: list[tuple[str, Any]] = []
    for message_id in (newer, older):
        rows += [
            ("message_id", message_id),
            (f"subject_{message_id}", f"通知{message_id}"),
            (f"sender_{message_id}", "山田"),
            (f"received_on_{message_id}", "2026-12-01"),
            (f"retention_{message_id}", "5年"),
        ]
    assert browser.post("/register", rows).status_code == 303
    tanaka = services.accounts.by_username("tanaka")
    section_id = tanaka.sections[0].id
    numbers = {r.message_id: r.receipt_number for r in services.registry.book(tanaka, section_id, 2026)}
    assert numbers == {older: "総務第1号", newer: "総務第2号"}  # in the order the mails came


def test_the_mail_and_the_form_name_the_section_of_the_address(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "tanaka", ["総務課"])
    message_id = stored_message(services, SOUMU, subject="担当課の表示")
    browser = browsers(service.base_url)
    browser.login("tanaka")
    assert f"{SOUMU}（総務課）" in browser.get(f"/messages/{message_id}").text
    form = browser.get(f"/register?id={message_id}").text
    assert re.search(
        r'<select id="section_\d+" name="section_\d+">\s*<option value="">（宛先の 総務課）</option>', form
    )


def test_the_reading_pane_shows_a_mail_beside_the_list_and_dismissing_there_opens_the_next(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    """Without script: ``open=`` shows the mail in the list's pane (the
    filters kept); 対象外 from the pane returns to the same list with the
    next 未処理 mail open. With script the pane's content comes from
    ``/messages/{id}/pane``, the same partial."""
    add_user(services, "sato", ["総務課"])
    now = dt.datetime.now(dt.UTC)
    older = stored_message(services, SOUMU, subject="古い照会", received_at=now - dt.timedelta(minutes=5))
    newer = stored_message(services, SOUMU, subject="新しい広告", received_at=now)
    clerk = browsers(service.base_url)
    clerk.login("sato")
    listed = clerk.get(f"/messages?q=&sort=newest&open={newer}").text
    assert re.search(
        r'<section id="pane" class="pane" aria-labelledby="pane-title" data-list="/messages\?q=&amp;sort=newest">',
        listed,
    )
    assert '<h2 id="pane-title" tabindex="-1">新しい広告</h2>' in listed
    assert f'class=" status-new current" data-id="{newer}"' in listed  # opened, so read
    fragment = clerk.get(f"/messages/{older}/pane?back=/messages%3Fsort%3Dnewest").text
    assert fragment.lstrip().startswith('<h2 id="pane-title"') and "<html" not in fragment
    assert 'name="back" value="/messages?sort=newest"' in fragment

    done = clerk.post(f"/messages/{newer}/dismiss", {"reason": "広告", "back": "/messages?q=&sort=newest"})
    assert done.headers["location"] == f"/messages?q=&sort=newest&notice=dismissed&open={older}"
    after = clerk.get(done.headers["location"]).text
    assert "対象外にしました。" in after and '<h2 id="pane-title" tabindex="-1">古い照会</h2>' in after
    # A list address from elsewhere is not followed.
    elsewhere = clerk.post(f"/messages/{older}/dismiss", {"reason": "x", "back": "https://evil.example/"})
    assert elsewhere.headers["location"].startswith("/messages?notice=dismissed")


def test_a_classification_gives_its_retention_and_a_clerk_of_two_sections_chooses_the_section(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "kato", ["総務課", "財政課"])
    contract = services.registry.add_classification("契約", code="K-01", retention="10年")
    services.registry.add_classification("広報", retention="1年")
    ids = [stored_message(services, SOUMU, subject=f"契約の照会（{n}）") for n in ("一", "二")]
    clerk = browsers(service.base_url)
    clerk.login("kato")
    form = clerk.get(f"/register?id={ids[0]}&id={ids[1]}").text
    # The picker searches names and codes; each option says its 保存期間.
    assert f'<option value="{contract}" data-retention="10年" >K-01　契約（保存期間 10年）</option>' in form
    assert 'data-filterable="文書分類を名前かコードで絞り込む"' in form
    assert re.search(
        r'<select id="batch_section" name="batch_section">.*?>総務課</option>.*?>財政課</option>', form, re.S
    )

    def row(message_id: int, **fields: str) -> list[tuple[str, Any]]:
        values = {"subject": "契約", "sender": "山田", "received_on": "2026-11-20", **fields}
        return [("message_id", message_id)] + [(f"{k}_{message_id}", v) for k, v in values.items()]

    zaisei = next(s.id for s in services.accounts.sections() if s.name == "財政課")
    done = clerk.post(
        "/register",
        [("batch_classification", str(contract)), ("batch_section", str(zaisei))]
        + row(ids[0])
        + row(ids[1], retention="3年"),
    )
    assert done.status_code == 303, done.text
    kato = services.accounts.by_username("kato")
    got = [services.registry.for_message(kato, i)[0] for i in ids]
    assert [r.retention for r in got] == ["10年", "3年"]  # the 分類's, unless the row chose
    assert [r.receipt_number for r in got] == ["財政第1号", "財政第2号"]

    # A section the clerk does not belong to is refused by name, the form kept.
    other = stored_message(services, SOUMU, subject="他課")
    sato = browsers(service.base_url)
    add_user(services, "sato", ["総務課"])
    sato.login("sato")
    refused = sato.post("/register", [("batch_classification", str(contract))] + row(other, section=str(zaisei)))
    assert refused.status_code == 400 and "担当課は自分の所属する課から選んでください" in refused.text


@pytest.fixture
def admin(services: Services, service: ServiceThread, browsers: Any) -> Any:
    """A system administrator signed in to the running service."""
    add_user(services, "kanri", ["総務課"], role="system_admin")
    browser = browsers(service.base_url)
    browser.login("kanri")
    return browser


def test_an_administrator_gives_a_classification_its_code_and_retention(services: Services, admin: Any) -> None:
    bad = admin.post("/admin/classifications", {"name": "契約", "code": "K-01", "retention": "100年"})
    assert bad.status_code == 400 and "保存期間は" in bad.text
    assert 'value="契約"' in bad.text and 'value="K-01"' in bad.text  # what was typed stays
    assert admin.post("/admin/classifications", {"name": "契約", "code": "K-01", "retention": "5年"}).status_code == 303
    (made,) = services.registry.classification_choices()
    assert (made.code, made.retention) == ("K-01", "5年")
    assert admin.post(f"/admin/classifications/{made.id}", {"code": "K-02", "retention": ""}).status_code == 303
    (changed,) = services.registry.classification_choices()
    assert (changed.code, changed.retention) == ("K-02", "")


class _Swallow:
    """An MTA that accepts mail and forwards none (a wrong transport map)."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        self.received.append(envelope.content)
        return "250 OK"


def test_the_default_probe_goes_through_the_mta_and_says_so_when_the_mta_does_not_forward(
    make_settings: Any, start_service: Any, browsers: Any
) -> None:
    """The admin page's probe goes to ``probe_via`` (the MTA), not to the
    relay; it runs in the background: the page shows it waiting, then
    arrived or not arrived. A stopped relay, an MTA that swallows mail
    and the relay itself as a labelled diagnostic."""
    from aiosmtpd.controller import Controller

    from mailintake.models import Probe

    swallow = _Swallow()
    mta = Controller(swallow, hostname="127.0.0.1", port=free_port())
    mta.start()
    try:
        settings = make_settings(probe_via=f"127.0.0.1:{mta.port}")
        services = build_services(settings)
        designate(services, SOUMU, "総務課")
        add_user(services, "kanri", ["総務課"], role="system_admin")
        service = start_service(settings)
        admin = browsers(service.base_url)
        admin.login("kanri")
        page = admin.get("/admin/addresses").text
        assert f'name="via" value="127.0.0.1:{mta.port}"' in page  # the MTA by default

        sent = admin.post("/admin/addresses/probe", {"address": SOUMU, "via": f"127.0.0.1:{mta.port}"})
        assert sent.status_code == 303
        waiting = admin.get(sent.headers["location"]).text
        assert "到着を待っています" in waiting and f"経由した MTA：127.0.0.1:{mta.port}" in waiting
        wait_for(lambda: len(swallow.received) == 1, 10)  # the MTA took it ...
        probe_id = sent.headers["location"].split("/")[3].split("?")[0]
        with Session(services.engine) as session, session.begin():  # ... and 31 seconds pass
            row = session.get(Probe, probe_id)
            assert row is not None
            row.sent_at -= dt.timedelta(seconds=31)
        failed = admin.get(f"/admin/probes/{probe_id}/progress").text
        assert "30 秒待っても soumu@city.example.jp に届きませんでした" in failed and 'data-done="1"' in failed

        direct = admin.post("/admin/addresses/probe", {"address": SOUMU, "via": f"127.0.0.1:{service.smtp_port}"})
        assert "診断：中継サーバーへ直接送りました" in admin.get(direct.headers["location"]).text
        arrived = lambda: "秒で到着しました" in admin.get(direct.headers["location"]).text  # noqa: E731
        wait_for(arrived, 20)
        services.close()
    finally:
        mta.stop()


def test_the_list_as_it_was_survives_a_registration_and_an_input_error(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "sato", ["総務課"])
    message_id = stored_message(services, SOUMU, subject="会議の照会")
    clerk = browsers(service.base_url)
    clerk.login("sato")
    listed = clerk.get("/messages", params={"q": "会議", "sort": "oldest", "limit": "100"}).text
    list_url = "/messages?q=%E4%BC%9A%E8%AD%B0&amp;sort=oldest&amp;limit=100"
    assert f'<input type="hidden" name="back" value="{list_url}">' in listed  # the pick form carries it
    back = list_url.replace("&amp;", "&")
    form = clerk.get("/register", params={"id": message_id, "back": back}).text
    assert f'<a href="{list_url}">« 受信一覧</a>' in form

    row = {
        "message_id": message_id,
        f"subject_{message_id}": "会議の照会",
        f"sender_{message_id}": "山田",
        f"received_on_{message_id}": "2026-11-20",
        "back": back,
    }
    refused = clerk.post("/register", row)  # no 保存期間
    assert refused.status_code == 400 and f'<a href="{list_url}">« 受信一覧</a>' in refused.text
    done = clerk.post("/register", {**row, f"retention_{message_id}": "5年"})
    registered = clerk.get(done.headers["location"]).text
    assert f'<a href="{list_url}">受信一覧へ戻る</a>' in registered
    # Elsewhere is not a list to go back to.
    form = clerk.get("/register", params={"id": message_id, "back": "https://evil.example/"}).text
    assert '<a href="/messages">« 受信一覧</a>' in form


def test_an_administrators_add_form_with_an_error_keeps_what_was_typed(services: Services, admin: Any) -> None:
    short = admin.post(
        "/admin/users",
        [("username", "yamada"), ("display_name", "山田　花子"), ("password", "short"), ("role", "section_admin"),
         ("sections", "総務課")],
    )  # fmt: skip
    assert short.status_code == 400
    assert 'value="yamada"' in short.text and 'value="山田　花子"' in short.text
    assert '<option value="section_admin" selected>' in short.text and '<option value="総務課" selected>' in short.text
    assert "パスワードは安全のため残していません" in short.text and 'value="short"' not in short.text

    taken = admin.post("/admin/sections", {"name": "総務課", "symbol": "総"})
    assert (
        taken.status_code == 400
        and 'id="new-section-name" name="name" required maxlength="200" value="総務課"' in taken.text
    )

    section_id = next(s.id for s in services.accounts.sections() if s.name == "総務課")
    bad = admin.post("/admin/addresses", {"address": "not an address", "section": str(section_id), "label": "代表"})
    assert bad.status_code == 400
    assert 'value="not an address"' in bad.text and 'value="代表"' in bad.text
    assert f'<option value="{section_id}" selected>総務課</option>' in bad.text
