"""The 収受 record as clerks keep it: 組織名 beside the sender's name,
文書日付, 受付方法 and 要回答, prefilled from the sender directory the clerks
grow as they register, and carried to the 収受簿 and the document system."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from typing import Any

import jsonschema

from mailintake.handoff import feed, package
from mailintake.records.registry import Amendment, RegistrationRequest
from mailintake.services import Services
from tests.conftest import ServiceThread
from tests.factories import designate, make_user, stored_message
from tests.web import add_user

SOUMU = "soumu@city.example.jp"
TODAY = dt.date(2026, 11, 20)


def row(message_id: int, **fields: str) -> list[tuple[str, Any]]:
    values = {"subject": "照会", "sender": "山田　太郎", "received_on": "2026-11-20", "retention": "5年", **fields}
    return [("message_id", message_id)] + [(f"{name}_{message_id}", value) for name, value in values.items()]


def field_value(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, name
    return match.group(1)


def test_a_clerk_records_organisation_document_date_method_and_answer(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "sato", ["総務課"])
    first = stored_message(services, SOUMU, from_name="自治行政局 山田", from_address="yamada@soumu.go.jp")
    browser = browsers(service.base_url)
    browser.login("sato")
    form = browser.get(f"/register?id={first}").text
    assert field_value(form, f"sender_{first}") == "自治行政局 山田"  # the display name until the directory knows
    assert field_value(form, f"sender_org_{first}") == ""
    # One mail: 電子メール comes first, so it is what an untouched form sends.
    assert re.search(rf'<select id="receipt_method_{first}"[^>]*>\s*<option\s*>電子メール</option>', form)
    fields = row(
        first,
        sender_org="総務省 自治行政局",
        sender="山田　太郎",
        document_date="2026-11-18",
        receipt_method="電子メール",
        reply_required="1",
    )
    assert browser.post("/register", fields).status_code == 303
    clerk = services.accounts.by_username("sato")
    [registered] = services.registry.book(clerk, clerk.sections[0].id, 2026)
    assert (registered.sender_org, registered.sender) == ("総務省 自治行政局", "山田　太郎")
    assert (registered.document_date, registered.receipt_method, registered.reply_required) == (
        dt.date(2026, 11, 18),
        "電子メール",
        True,
    )
    exported = browser.get("/book.csv", params={"section": clerk.sections[0].id, "year": 2026, "encoding": "utf-8"})
    table = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert table[0][-4:] == ["発信者組織名", "文書日付", "受付方法", "要回答"]
    assert table[1][-4:] == ["総務省 自治行政局", "令和8年11月18日", "電子メール", "要"]


def test_the_next_mail_from_the_same_sender_prefills_itself(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "sato", ["総務課"])
    clerk = services.accounts.by_username("sato")
    first = stored_message(services, SOUMU, from_name="yamada", from_address="yamada@soumu.go.jp")
    services.registry.register(
        clerk,
        [
            RegistrationRequest(
                message_id=first,
                subject="照会",
                sender="山田　太郎",
                sender_org="総務省 自治行政局",
                received_on=TODAY,
                retention="5年",
            )
        ],
    )
    same = stored_message(services, SOUMU, from_name="yamada", from_address="Yamada@soumu.go.jp")
    colleague = stored_message(services, SOUMU, from_name="佐藤 一郎", from_address="sato-i@soumu.go.jp")
    citizen = stored_message(services, SOUMU, from_name="鈴木", from_address="suzuki@gmail.com")
    browser = browsers(service.base_url)
    browser.login("sato")
    form = browser.get(f"/register?id={same}&id={colleague}&id={citizen}").text
    assert (field_value(form, f"sender_org_{same}"), field_value(form, f"sender_{same}")) == (
        "総務省 自治行政局",
        "山田　太郎",
    )
    # Same organisation (domain), another person: the organisation, and the mail's own name.
    assert (field_value(form, f"sender_org_{colleague}"), field_value(form, f"sender_{colleague}")) == (
        "総務省 自治行政局",
        "佐藤 一郎",
    )
    assert field_value(form, f"sender_org_{citizen}") == ""  # a shared mail domain is no organisation


def test_paper_routes_come_from_the_batch_and_rows_keep_their_own(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "sato", ["総務課"])
    ids = [stored_message(services, SOUMU, subject=f"文書{n}") for n in range(3)]
    browser = browsers(service.base_url)
    browser.login("sato")
    fields: list[tuple[str, Any]] = [("batch_receipt_method", "郵送")]
    fields += row(ids[0]) + row(ids[1], receipt_method="持参") + row(ids[2], reply_due="2026-12-04")
    assert browser.post("/register", fields).status_code == 303
    clerk = services.accounts.by_username("sato")
    book = {r.message_id: r for r in services.registry.book(clerk, clerk.sections[0].id, 2026)}
    assert [book[i].receipt_method for i in ids] == ["郵送", "持参", "郵送"]
    assert [book[i].reply_required for i in ids] == [False, False, True]  # a due date means 要回答


def test_impossible_values_are_named_and_the_form_keeps_them(
    services: Services, service: ServiceThread, browsers: Any
) -> None:
    add_user(services, "sato", ["総務課"])
    message_id = stored_message(services, SOUMU)
    browser = browsers(service.base_url)
    browser.login("sato")
    late = browser.post("/register", row(message_id, document_date="2026-11-25", sender_org="財務省"))
    assert late.status_code == 400 and "文書日付が収受日より後になっています" in late.text
    assert field_value(late.text, f"sender_org_{message_id}") == "財務省"
    odd = browser.post("/register", row(message_id, receipt_method="伝書鳩"))
    assert odd.status_code == 400 and "受付方法は 電子メール・郵送・持参・FAX から選んでください" in odd.text


def test_an_amendment_reaches_the_document_system_with_the_new_fields(services: Services) -> None:
    schema = package.schema()
    if SOUMU not in {a.address for a in services.addresses.list()}:
        designate(services, SOUMU, "総務課")
    chief = make_user(services, "suzuki", password=None, role="section_admin", sections=["総務課"])
    message_id = stored_message(services, SOUMU)
    [done] = services.registry.register(
        chief,
        [RegistrationRequest(message_id=message_id, subject="照会", sender="山田", received_on=TODAY, retention="5年")],
    )
    services.registry.amend(
        chief,
        done.id,
        Amendment(
            subject="照会",
            sender="山田",
            retention="5年",
            sender_org="総務省",
            document_date=dt.date(2026, 11, 19),
            receipt_method="FAX",
            reply_required=True,
        ),
    )
    items = feed.read(services.engine, None, 10).items
    amended = items[-1]["registration"]
    assert (amended["sender"]["organisation"], amended["document_date"], amended["receipt_method"]) == (
        "総務省",
        "2026-11-19",
        "FAX",
    )
    assert amended["reply_required"] is True and amended["reply_due"] is None
    jsonschema.validate(amended, schema["$defs"]["registration"] | {"$defs": schema["$defs"]})
