"""A clerk's day in a real browser (Debian's Chromium driven by Playwright):
sign in, find a mail by a two-character word, open an HTML mail safely,
register two mails at once, dismiss and undo, export the 収受簿.

Screenshots of the list, detail and registration pages are written to
``test-artifacts/browser/`` (or ``$MAILINTAKE_TEST_ARTIFACTS``)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import smtplib
import threading
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.policy import SMTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailintake.config import Settings
from mailintake.jpdates import JST
from mailintake.services import Services, build_services
from tests.factories import designate, make_user, stored_message

from .conftest import ServiceThread, wait_for
from .mails import make_message, send
from .web import ADMIN_PAGES, PASSWORD, add_user

SOUMU = "soumu@city.example.jp"
ARTIFACTS = Path(os.environ.get("MAILINTAKE_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))


class Tracker:
    """A web server on loopback standing in for a sender's tracking pixel."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        tracker = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                tracker.hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.end_headers()
                self.wfile.write(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    server = Tracker()
    yield server
    server.close()


@pytest.fixture
def ui(make_settings: Callable[..., Settings], start_service: Any) -> Iterator[tuple[Services, ServiceThread]]:
    """The whole service on SQLite with one section, one clerk and a section admin."""
    settings = make_settings()
    services = build_services(settings)
    designate(services, "soumu@city.example.jp", "総務課")
    add_user(services, "sato", ["総務課"])
    yield services, start_service(settings)
    services.close()


def html_mail(tracker_port: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "広報 <koho@example.co.jp>"
    msg["To"] = "soumu@city.example.jp"
    msg["Subject"] = "イベントのお知らせ（HTML）"
    msg.set_content("イベントのお知らせです。")
    msg.add_alternative(
        "<html><body>"
        "<script>document.title='PWNED'; fetch('/register');</script>"
        "<p onclick=\"document.title='PWNED'\">イベントのお知らせです。</p>"
        f'<img src="http://127.0.0.1:{tracker_port}/pixel.gif">'
        "<img src=x onerror=\"document.title='PWNED'\">"
        "</body></html>",
        subtype="html",
    )
    return msg.as_bytes(policy=SMTP)


def test_a_clerk_finds_reads_registers_dismisses_and_exports(
    ui: tuple[Services, ServiceThread], chromium: Any, tracker: Tracker
) -> None:
    services, service = ui
    shots = ARTIFACTS / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    send(service.smtp_port, make_message(subject="定例の開催について", body="来週の定例会議の資料を送ります。\n"))
    send(service.smtp_port, html_mail(tracker.port))
    send(service.smtp_port, make_message(subject="照会文書（その1）", body="ご回答をお願いします。\n"))
    send(service.smtp_port, make_message(subject="照会文書（その2）", body="ご回答をお願いします。\n"))
    wait_for(lambda: services.messages.count() == 4, 20)

    page = chromium.new_page(viewport={"width": 1366, "height": 768}, locale="ja-JP", accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Sign in with the keyboard.
    page.goto(service.base_url + "/")
    page.get_by_label("ユーザーID").fill("sato")
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_label("パスワード").press("Enter")
    page.wait_for_url("**/messages")
    assert page.locator("table.list tbody tr[data-id]").count() == 4
    page.screenshot(path=str(shots / "list.png"), full_page=True)

    # A two-character word that only the body of one mail contains.
    page.get_by_label("キーワード").fill("会議")
    page.get_by_label("キーワード").press("Enter")
    page.wait_for_url("**q=**")
    rows = page.locator("table.list tbody tr[data-id]")
    assert rows.count() == 1
    assert "定例の開催について" in rows.first.inner_text()

    # The HTML mail: shown, but its script never runs and the pixel is not fetched.
    page.goto(service.base_url + "/messages?status=all")
    page.get_by_role("link", name="イベントのお知らせ（HTML）").click()
    frame = page.frame_locator("iframe.html-body")
    greeting = frame.get_by_text("イベントのお知らせです。")
    greeting.click()
    page.wait_for_timeout(300)
    assert "PWNED" not in page.title()
    assert page.frame_locator("iframe.html-body").locator("body").evaluate("b => document.title") != "PWNED"
    assert tracker.hits == []
    assert page.get_by_text("外部の画像 1 件を読み込んでいません").is_visible()
    page.screenshot(path=str(shots / "detail.png"), full_page=True)
    # Asking for remote images loads them: the check above would see a fetch.
    page.get_by_role("link", name="外部画像を表示").click()
    wait_for(lambda: tracker.hits == ["/pixel.gif"], 10)
    assert "PWNED" not in page.title()

    # Register two mails at once: consecutive numbers.
    page.goto(service.base_url + "/messages")
    for subject in ("照会文書（その1）", "照会文書（その2）"):
        page.get_by_label(f"選択: {subject}").check()
    page.get_by_role("button", name="選んだメールを収受登録").click()
    page.wait_for_url("**/register?**")
    fieldsets = page.locator("form.register fieldset")
    assert fieldsets.count() == 2
    for index in range(2):
        fieldsets.nth(index).get_by_label("保存期間").select_option("5年")
    page.screenshot(path=str(shots / "register.png"), full_page=True)
    page.get_by_role("button", name="収受登録する").click()
    page.wait_for_url("**/registered?**")
    numbers = page.locator("td.number").all_inner_texts()
    assert numbers == ["総務第1号", "総務第2号"]

    # Dismiss one, then undo.
    page.goto(service.base_url + "/messages")
    page.get_by_role("link", name="定例の開催について").click()
    page.get_by_label("対象外の理由").fill("重複して届いたため")
    page.get_by_role("button", name="対象外にする").click()
    assert page.get_by_role("status").inner_text() == "対象外にしました。"
    assert "対象外" in page.locator(".badge").first.inner_text()
    page.get_by_role("button", name="対象外を取り消す").click()
    assert "未処理" in page.locator(".badge").first.inner_text()

    # The 収受簿 and its CSV.
    page.get_by_role("link", name="収受簿").click()
    with page.expect_download() as download_info:
        page.get_by_role("link", name="CSV（UTF-8）").click()
    data = Path(download_info.value.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    table = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert [row[0] for row in table[1:]] == ["総務第1号", "総務第2号"]
    assert [row[2] for row in table[1:]] == ["照会文書（その1）", "照会文書（その2）"]
    assert all(row[5] == "5年" and row[6] == "総務課" for row in table[1:])

    assert errors == []
    for name in ("list.png", "detail.png", "register.png"):
        assert (shots / name).stat().st_size > 10_000


def test_an_admin_adds_an_address_sees_the_postfix_lines_probes_and_disables_it(
    ui: tuple[Services, ServiceThread], chromium: Any
) -> None:
    services, service = ui
    add_user(services, "kanri", [], role="system_admin")
    address = "jinji@city.example.jp"
    page = chromium.new_page(viewport={"width": 1366, "height": 768}, locale="ja-JP")
    page.goto(service.base_url + "/login")
    page.get_by_label("ユーザーID").fill("kanri")
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_role("button", name="ログイン").click()
    # A new section first, on purpose; then the address is given to it from the list.
    page.get_by_role("link", name="課・文書記号").click()
    page.get_by_label("課の名前").fill("人事課")
    page.get_by_role("button", name="追加").click()
    assert page.get_by_role("status").inner_text().startswith("課を追加しました。")
    assert page.get_by_label("人事課 の文書記号").input_value() == "人事"
    page.get_by_role("link", name="収受用アドレス").click()

    page.get_by_label("アドレス", exact=True).fill(address)
    page.get_by_label("担当課", exact=True).select_option(label="人事課")
    page.get_by_role("button", name="追加").click()
    assert page.get_by_role("status").inner_text().startswith("収受用アドレスを追加しました。")
    assert page.get_by_role("cell", name=address, exact=True).is_visible()
    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=10) as client:
        client.ehlo()
        client.mail("mta@city.example.jp")
        assert client.rcpt(address)[0] == 250

    # By default a probe goes through the organisation's MTA (probe_via);
    # this test has none, so it is sent to the relay itself.
    via = page.get_by_label(f"{address} の疎通確認で経由する MTA（ホスト:ポート）")
    assert via.input_value() == "127.0.0.1:25"
    via.fill(f"127.0.0.1:{service.smtp_port}")
    page.get_by_role("button", name=f"{address} の疎通確認").click()
    page.wait_for_url("**/admin/probes/**")
    assert page.get_by_role("note").inner_text().startswith("診断：中継サーバーへ直接送りました")
    page.get_by_text("秒で到着しました").wait_for()  # the page follows the probe by itself
    page.get_by_role("link", name="« 収受用アドレス").click()

    page.get_by_role("link", name="MTA 設定の生成").click()
    main_lines = page.locator("#main-lines").inner_text()
    assert "transport_maps" in main_lines
    assert f"{address}\tsmtp:[127.0.0.1]:{service.smtp_port}" in page.locator("pre").first.inner_text()
    page.screenshot(path=str(ARTIFACTS / "browser" / "mta-config.png"), full_page=True)

    page.get_by_role("link", name="収受用アドレス").click()
    page.get_by_role("button", name=f"{address} を無効にする").click()
    row = page.locator("table.addresses tr", has=page.get_by_role("cell", name=address, exact=True))
    assert row.get_by_text("無効", exact=True).is_visible()
    # Refused at once, without a restart.
    with smtplib.SMTP("127.0.0.1", service.smtp_port, timeout=10) as client:
        client.ehlo()
        client.mail("mta@city.example.jp")
        code, reply = client.rcpt(address)
    assert code == 550, reply

    # Deleting asks first, naming the address; declining keeps it.
    spare = "spare@city.example.jp"
    designate(services, spare, "人事課")
    page.reload()
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name=f"{spare} を削除").click()
    assert asked and spare in asked[0] and "削除" in asked[0]
    assert page.get_by_role("cell", name=spare, exact=True).is_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"{spare} を削除").click()
    page.wait_for_url("**notice=address_deleted")
    assert page.get_by_role("status").inner_text().startswith("収受用アドレスを削除しました。")
    assert page.get_by_role("cell", name=spare, exact=True).count() == 0


def hostile_css_mail(message_id_guess: int) -> bytes:
    """Everything a mail's HTML can try to make the clerk's browser fetch
    from this application: CSS url() in every spelling, images, links."""
    targets = [f"/messages/{message_id_guess}/original.eml", f"/messages/{message_id_guess}/source", "/book.csv",
               f"/messages/{message_id_guess}", "/admin/audit.csv"]  # fmt: skip
    styles = "".join(
        f"<div style=\"background-image:url('{t}')\">a</div>"
        f'<p style="background: url({t}) no-repeat">b</p>'
        f"<p style=\"list-style-image:url('{t}'); border-image: url({t}) 30\">c</p>"
        f"<p style=\"background-image: image-set('{t}' 1x)\">d</p>"
        f'<img src="{t}"><img srcset="{t} 1x">'
        for t in targets
    )
    msg = EmailMessage()
    msg["From"] = "攻撃者 <evil@example.net>"
    msg["To"] = "soumu@city.example.jp"
    msg["Subject"] = "スタイルで読み込ませるメール"
    msg.set_content("本文")
    msg.add_alternative(
        "<html><head><style>body{background:url('/book.csv')}</style>"
        "<link rel=stylesheet href='/book.csv'></head><body>" + styles + "</body></html>",
        subtype="html",
    )
    return msg.as_bytes(policy=SMTP)


def test_a_hostile_html_mail_makes_the_browser_request_nothing_of_this_application(
    ui: tuple[Services, ServiceThread], chromium: Any
) -> None:
    """GIVEN a mail whose HTML points CSS url(), images and links at the
    downloads, the source, the 収受簿 CSV and the audit CSV WHEN a clerk opens
    it in Chromium THEN the browser requests only the page, its static files
    and the body document: no download, no audit entry, no read mark."""
    services, service = ui
    send(service.smtp_port, hostile_css_mail(1))
    wait_for(lambda: services.messages.count() == 1, 15)
    admin = make_user(services, "auditor", password=None, role="system_admin")
    page = chromium.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{service.base_url}/login")
    page.fill("input[name=username]", "sato")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/messages")
    audited_before = len(services.audit.entries(admin))
    requests.clear()
    page.goto(f"{service.base_url}/messages/1")
    page.wait_for_load_state("networkidle")
    frame = page.frame_locator("iframe")
    frame.locator("body").wait_for()
    page.wait_for_timeout(500)
    same_origin = [u.removeprefix(service.base_url) for u in requests if u.startswith(service.base_url)]
    unexpected = [u for u in same_origin if u not in ("/messages/1", "/messages/1/body.html")
                  and not u.startswith("/static/")]  # fmt: skip
    assert unexpected == [], same_origin
    assert "/messages/1/body.html" in same_origin
    assert len(services.audit.entries(admin)) == audited_before
    page.close()


def test_a_clerk_registers_with_the_senders_number_and_a_due_date_and_sees_the_document_system_take_it(
    ui: tuple[Services, ServiceThread], chromium: Any
) -> None:
    services, service = ui
    send(service.smtp_port, make_message(subject="照会（回答をお願いします）", body="12月中にご回答ください。\n"))
    wait_for(lambda: services.messages.count() == 1, 20)
    due = dt.datetime.now(JST).date() + dt.timedelta(days=7)

    page = chromium.new_page(viewport={"width": 1366, "height": 768}, locale="ja-JP")
    page.goto(service.base_url + "/login")
    page.get_by_label("ユーザーID").fill("sato")
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_label("パスワード").press("Enter")
    page.wait_for_url("**/messages")
    page.get_by_label("選択: 照会（回答をお願いします）").check()
    page.get_by_role("button", name="選んだメールを収受登録").click()
    page.wait_for_url("**/register?**")
    page.get_by_label("先方文書番号").fill("8総総第123号")
    page.get_by_label("回答期限").fill(due.isoformat())
    page.get_by_label("保存期間").select_option("5年")
    page.get_by_role("button", name="収受登録する").click()
    page.wait_for_url("**/registered?**")
    row = page.locator("table.registered tbody tr").first
    assert "8総総第123号" in row.inner_text()
    assert "回答期限" in row.locator(".badge.due").inner_text()
    assert row.locator(".badge.handoff-pending").inner_text() == "連携待ち"
    page.goto(service.base_url + "/messages?status=registered")
    assert page.locator("table.list .badge.due").count() == 1

    # The document system reads the feed and acknowledges.
    token = services.tokens.create("文書管理システム", ["registrations:read", "registrations:ack"])
    headers = {"Authorization": f"Bearer {token}"}
    [item] = httpx.get(f"{service.base_url}/api/v1/registrations", headers=headers).json()["items"]
    assert item["registration"]["sender_reference"] == "8総総第123号"
    assert item["registration"]["reply_due"] == due.isoformat()
    acked = httpx.post(f"{service.base_url}/api/v1/registrations/{item['registration']['id']}/ack", headers=headers)
    assert acked.status_code == 200

    page.goto(service.base_url + "/book")
    book_row = page.locator("table.book tbody tr").first
    assert book_row.locator(".badge.handed-off").inner_text().startswith("連携済 ")
    assert "8総総第123号" in book_row.inner_text()
    (ARTIFACTS / "browser").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser" / "book-handed-off.png"), full_page=True)


def signed_in_page(chromium: Any, service: ServiceThread, username: str = "sato") -> Any:
    page = chromium.new_page(viewport={"width": 1366, "height": 768}, locale="ja-JP")
    page.goto(service.base_url + "/login")
    page.get_by_label("ユーザーID").fill(username)
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_label("パスワード").press("Enter")
    page.wait_for_url("**/messages")
    return page


def test_a_clerk_triages_from_the_keyboard_alone(ui: tuple[Services, ServiceThread], chromium: Any) -> None:
    """? shows the keys, j shows a mail in the reading pane, e asks the
    対象外 reason once, x selects, r registers the selection, / searches."""
    services, service = ui
    for i in range(4):
        send(service.smtp_port, make_message(subject=f"朝のメール{i}", body="本文\n"))
    wait_for(lambda: services.messages.count() == 4, 20)
    page = signed_in_page(chromium, service)
    page.keyboard.press("?")
    assert page.locator("#keys").is_visible()
    page.keyboard.press("?")
    page.keyboard.press("j")
    expect_pane(page, "朝のメール3")
    assert page.url.endswith("open=" + page.locator("tr.current").get_attribute("data-id"))
    page.keyboard.press("e")  # no reason given yet in this tab: the pane asks for one
    page.wait_for_function("document.activeElement && document.activeElement.id === 'dismiss-reason'")
    page.keyboard.type("広告")
    page.keyboard.press("Enter")
    expect_pane(page, "朝のメール2")  # the next mail, the dismissed one gone from 未処理
    assert "対象外にしました（理由：広告）：朝のメール3" in page.locator("#live").inner_text()
    page.keyboard.press("x")
    expect_pane(page, "朝のメール1")
    page.keyboard.press("x")
    page.keyboard.press("r")
    page.wait_for_url("**/register?**")
    assert page.locator("form.register fieldset").count() == 2
    page.goto(service.base_url + "/messages")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.name") == "q"
    page.keyboard.type("朝のメール")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=**")
    assert "検索結果 3件" in page.locator(".search-result").inner_text()


def expect_pane(page: Any, subject: str) -> None:
    page.wait_for_function(
        "s => { const t = document.getElementById('pane-title'); return t && t.textContent === s; }", arg=subject
    )


def test_a_clerks_morning_of_fifty_mails_takes_at_most_eighty_actions(
    ui: tuple[Services, ServiceThread], chromium: Any
) -> None:
    """50 mails waiting: the clerk opens one in full and comes back, reads
    every mail in the reading pane, selects 30, dismisses 10 (the reason
    typed once), registers the 30 with one 一括設定 (文書分類 found by typing
    「委託」, its 保存期間 filled in) and three edits of single rows, and
    looks at the 収受簿. Every key press, click and value entered into a
    field counts as one action; signing in does not."""
    services, service = ui
    ensure_classifications(services)
    now = dt.datetime.now(dt.UTC)
    kinds = ["register", "register", "register", "dismiss", "leave"] * 10
    subjects = {
        "register": "委託契約の照会（{}）",
        "dismiss": "セミナーのご案内（{}）",
        "leave": "参考送付（{}）",
    }
    mails: list[tuple[str, str, int]] = []  # newest first, as the list shows them
    for n, kind in enumerate(kinds):
        subject = subjects[kind].format(n + 1)
        received = now - dt.timedelta(minutes=n)
        mails.append((kind, subject, stored_message(services, SOUMU, subject=subject, received_at=received)))
    page = signed_in_page(chromium, service)
    actions: list[str] = []

    def act(what: str) -> None:
        actions.append(what)

    def press(key: str) -> None:
        page.keyboard.press(key)
        act(key)

    # Open the first mail in full, then back to the list as it was.
    press("j")
    expect_pane(page, mails[0][1])
    press("o")
    page.wait_for_url(f"**/messages/{mails[0][2]}?back=**")
    page.get_by_role("link", name="« 受信一覧に戻る").click()
    act("click 受信一覧に戻る")
    page.wait_for_url("**/messages?**")

    # Every mail read in the pane, each decided with one key.
    press("j")
    remaining = list(mails)
    position = 0
    reason_typed = False
    for kind, subject, _ in mails:
        expect_pane(page, subject)
        assert subject in page.locator("#pane").inner_text()
        if position == 5:
            page.screenshot(path=str(artefact("morning-list-with-reading-pane.png")))
        if kind == "register":
            press("x")
            position += 1
        elif kind == "dismiss":
            press("e")
            if not reason_typed:
                page.wait_for_function("document.activeElement && document.activeElement.id === 'dismiss-reason'")
                page.keyboard.type("広告")
                act("type 広告")
                press("Enter")
                reason_typed = True
            remaining.remove((kind, subject, _))
            page.wait_for_function("s => document.getElementById('live').textContent.endsWith(s)", arg=subject)
        else:
            press("j")
            position += 1
    assert page.locator("#selected-count").inner_text() == "選択中 30件"

    press("r")
    page.wait_for_url("**/register?**")
    chosen = [m for m in mails if m[0] == "register"]
    legends = page.locator("form.register fieldset legend").all_inner_texts()
    assert legends == [f"{n}. {subject}" for n, (_, subject, _) in enumerate(chosen, 1)]  # the list's order
    picker = page.get_by_label("文書分類を名前かコードで絞り込む").first
    picker.click()
    act("click 文書分類の絞り込み")
    picker.fill("委託")
    act("type 委託")
    press("Enter")
    assert (
        page.locator("#batch_classification option:checked").inner_text()
        == "K-0102　総務 > 契約 > 委託契約（保存期間 5年）"
    )
    assert page.locator("#batch_retention").input_value() == "5年"  # from the 分類

    def edit(field: str, message_id: int, value: str) -> None:
        box = page.locator(f"#{field}_{message_id}")
        box.click()
        act(f"click {field}")
        box.fill(value)
        act(f"type {field}")

    edit("sender_reference", chosen[0][2], "8委第12号")
    edit("reply_due", chosen[4][2], "2026-12-25")
    edit("remarks", chosen[29][2], "原本は郵送で届く予定")
    page.screenshot(path=str(artefact("morning-batch-form.png")), full_page=True)
    page.locator(".batch").scroll_into_view_if_needed()
    page.screenshot(path=str(artefact("morning-batch-settings.png")))
    page.get_by_role("button", name="収受登録する").click()
    act("click 収受登録する")
    page.wait_for_url("**/registered?**")

    page.get_by_role("link", name="収受簿を見る").click()
    act("click 収受簿を見る")
    page.wait_for_url("**/book**")
    assert page.locator("table.book tbody tr").count() == 30
    page.screenshot(path=str(artefact("morning-book.png")), full_page=True)

    print(f"\na clerk's morning of 50 mails: {len(actions)} actions")
    assert len(actions) <= 80, actions

    clerk = services.accounts.by_username("sato")
    registered = {m[2]: services.registry.for_message(clerk, m[2]) for m in chosen}
    assert all(len(r) == 1 for r in registered.values())
    assert {(r[0].classification, r[0].retention) for r in registered.values()} == {("総務 > 契約 > 委託契約", "5年")}
    assert registered[chosen[0][2]][0].sender_reference == "8委第12号"
    assert registered[chosen[4][2]][0].reply_due == dt.date(2026, 12, 25)
    assert registered[chosen[29][2]][0].remarks == "原本は郵送で届く予定"
    statuses = {m[2]: services.inbox.message(clerk, m[2], mark_read=False) for m in mails}
    assert {m[2] for m in mails if statuses[m[2]].status == "dismissed"} == {m[2] for m in mails if m[0] == "dismiss"}
    assert all(statuses[m[2]].dismiss_reason == "広告" for m in mails if m[0] == "dismiss")
    assert {m[2] for m in mails if statuses[m[2]].status == "new"} == {m[2] for m in mails if m[0] == "leave"}


def ensure_classifications(services: Services) -> None:
    """A small 文書分類 tree, as an office has one."""
    general = services.registry.add_classification("総務", code="K")
    contract = services.registry.add_classification("契約", general, code="K-01")
    services.registry.add_classification("委託契約", contract, code="K-0102", retention="5年")
    services.registry.add_classification("工事契約", contract, code="K-0103", retention="10年")
    for name in ("文書", "人事", "予算", "会計", "広報", "議会"):
        services.registry.add_classification(name, general, retention="1年")


def artefact(name: str) -> Path:
    (ARTIFACTS / "browser").mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / "browser" / name


def test_every_page_passes_axe_core_without_a_serious_or_critical_violation(
    ui: tuple[Services, ServiceThread], chromium: Any
) -> None:
    """axe-core (through axe-playwright-python) over every page a clerk and a
    system administrator open, including a form error and a search."""
    from axe_playwright_python.sync_playwright import Axe

    services, service = ui
    add_user(services, "kanri", ["総務課"], role="system_admin")
    send(service.smtp_port, make_message(subject="照会", attachments=[("回答.pdf", b"%PDF-1.4", "application/pdf")]))
    wait_for(lambda: services.messages.count() == 1, 20)
    page = chromium.new_page(viewport={"width": 1366, "height": 768}, locale="ja-JP")
    axe = Axe()
    found: dict[str, list[str]] = {}

    def check(name: str) -> None:
        result = axe.run(page)
        serious = [v for v in result.response["violations"] if v["impact"] in ("serious", "critical")]
        if serious:
            found[name] = [f"{v['id']}: {v['nodes'][0]['target']}" for v in serious]

    page.goto(service.base_url + "/login")
    check("/login")
    page.get_by_label("ユーザーID").fill("kanri")
    page.get_by_label("パスワード").fill(PASSWORD)
    page.get_by_label("パスワード").press("Enter")
    page.wait_for_url("**/messages")
    message_id = page.locator("table.list tbody tr[data-id]").first.get_attribute("data-id")
    for path in (
        "/messages",
        "/messages?q=照会&from=2026-13-45",
        f"/messages?open={message_id}",  # the reading pane
        f"/messages/{message_id}",
        f"/messages/{message_id}/source",
        f"/register?id={message_id}",
        "/book",
        *ADMIN_PAGES,
    ):
        page.goto(service.base_url + path)
        check(path)
    page.goto(service.base_url + "/admin/addresses")
    page.get_by_label("soumu@city.example.jp の疎通確認で経由する MTA（ホスト:ポート）").fill(
        f"127.0.0.1:{service.smtp_port}"
    )
    page.get_by_role("button", name="soumu@city.example.jp の疎通確認").click()
    page.wait_for_url("**/admin/probes/**")
    check("/admin/probes/…")
    page.get_by_text("秒で到着しました").wait_for()
    check("/admin/probes/… arrived")
    assert found == {}


def test_at_200_percent_zoom_no_page_scrolls_sideways_and_the_keys_still_work(
    ui: tuple[Services, ServiceThread], chromium: Any
) -> None:
    """A 1366×768 screen at 200 % zoom is 683×384 CSS pixels (WCAG 1.4.4 and
    1.4.10): every page reflows into it without a sideways scroll bar, the
    reading pane moves below the list, and the focused control is outlined."""
    services, service = ui
    add_user(services, "kanri", ["総務課"], role="system_admin")
    send(service.smtp_port, make_message(subject="照会", attachments=[("回答.pdf", b"%PDF-1.4", "application/pdf")]))
    wait_for(lambda: services.messages.count() == 1, 20)
    page = signed_in_page(chromium, service, "kanri")
    page.set_viewport_size({"width": 683, "height": 384})
    message_id = page.locator("table.list tbody tr[data-id]").first.get_attribute("data-id")
    wide: dict[str, list[str]] = {}
    for path in (
        "/messages",
        f"/messages?open={message_id}",
        f"/messages/{message_id}",
        f"/register?id={message_id}",
        "/book",
        *ADMIN_PAGES,
    ):
        page.goto(service.base_url + path)
        sticking_out = page.evaluate(
            """() => Array.from(document.querySelectorAll('body *'))
                .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
                .map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : ''))"""
        )
        scrolls = page.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")
        if scrolls or sticking_out:
            wide[path] = sticking_out
    assert wide == {}

    page.goto(service.base_url + "/messages")
    page.keyboard.press("j")
    expect_pane(page, "照会")
    list_bottom = page.locator("table.list").bounding_box()["y"] + page.locator("table.list").bounding_box()["height"]
    assert page.locator("#pane").bounding_box()["y"] >= list_bottom  # below, not squeezed beside
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert page.evaluate("document.activeElement.textContent") == "照会" and outline == "solid"
