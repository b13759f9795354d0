"""What the sender wrote is what the clerk copies into the 収受簿: header
unfolding and nothing more, U+3000 kept, and raw 8-bit bytes inside an
encoded word read in that word's charset."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from mailintake.mail.decoding import parse_bytes
from mailintake.mail.headers import decode_header_value
from mailintake.mail.text import html_to_text

from .conftest import wait_for
from .mails import make_message, send


def headers(*lines: bytes) -> bytes:
    return b"\r\n".join(lines) + b"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nbody\r\n"


def test_an_ideographic_space_in_the_subject_and_the_name_is_kept(tmp_path: Path) -> None:
    raw = headers(
        b"Subject: =?UTF-8?B?5Luk5ZKM77yY5bm05bqm44CA6Ziy54G96KiT57e0?=",
        b"From: =?UTF-8?B?6auZ5qmL44CA6Iqx5a2Q?= <takahashi@example.jp>",
    )
    parsed = parse_bytes(raw, tmp_path)
    assert parsed.subject == "令和８年度\u3000防災訓練"
    assert parsed.from_name == "髙橋\u3000花子"


def test_only_folding_is_removed_and_other_spaces_stay(tmp_path: Path) -> None:
    raw = headers("Subject: 会議資料の\r\n 送付について  （再送）".encode(), b"From: a@example.jp")
    assert parse_bytes(raw, tmp_path).subject == "会議資料の 送付について  （再送）"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"=?iso-8859-1?Q?Fr\xf6sche?=", "Frösche"),
        (b"=?utf-8?Q?caf\xc3\xa9?=", "café"),
        (b"=?shift_jis?Q?" + "会議".encode("cp932") + b"?=", "会議"),
        (b"=?iso-2022-jp?B?GyRCMnE1RDtxTkEbKEI=?= \xe3\x81\xae\xe4\xbb\xb6", "会議資料 の件"),
    ],
)
def test_raw_bytes_inside_an_encoded_word_decode_in_its_charset(raw: bytes, expected: str) -> None:
    assert decode_header_value(raw.decode("ascii", "surrogateescape")) == expected


def test_the_text_of_an_html_body_keeps_ideographic_spaces() -> None:
    assert html_to_text("<p>総務課\u3000御中</p><p>a   b</p>") == "総務課\u3000御中\n\na b"


HOSTILE_NAMES = [  # as written, as a file name, as displayed
    ("../../../../etc/passwd", "passwd", "../../../../etc/passwd"),
    ("C:\\Windows\\system32\\evil.bat", "evil.bat", "C:\\Windows\\system32\\evil.bat"),
    ("invoice\u202egpj.exe", "invoice gpj.exe", "invoice gpj.exe"),
    ("CON.txt", "_CON.txt", "CON.txt"),
    ("資料\x00.pdf", "資料.pdf", "資料 .pdf"),
]


@pytest.mark.parametrize(("written", "safe", "displayed"), HOSTILE_NAMES)
def test_the_api_names_attachments_safely_and_keeps_the_written_name_apart(
    service: Any, api: Any, written: str, safe: str, displayed: str
) -> None:
    raw = make_message(subject="添付", attachments=[("x", b"data", "application/octet-stream")])
    raw = raw.replace(b'filename="x"', b"filename*=UTF-8''" + quote(written).encode())
    send(service.smtp_port, raw)
    item = wait_for(lambda: api.get("/api/v1/messages").json()["items"], 15)[0]
    [attachment] = api.get(f"/api/v1/messages/{item['id']}").json()["attachments"]
    assert attachment["filename"] == safe
    assert "/" not in attachment["filename"] and "\\\\" not in attachment["filename"]
    assert attachment["original_filename"] == displayed


LENIENT = {
    "space before the colon": (
        "From: a@example.jp\r\nSubject : =?UTF-8?B?5Lya6K2w?=\r\nTo: soumu@city.example.jp\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=UTF-8\r\n\r\n本文です\r\n".encode(),
        "会議", "本文です", [],
    ),
    "folded quoted boundary": (
        b'From: a@example.jp\r\nSubject: b\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="foo\r\n'
        b' bar"\r\n\r\n--foo bar\r\nContent-Type: text/plain\r\n\r\nhello\r\n--foo bar\r\nContent-Type: application/pdf;'
        b" name=a.pdf\r\n\r\n%PDF\r\n--foo bar--\r\n",
        "b", "hello", ["a.pdf"],
    ),
    "no semicolon before the parameters": (
        b"From: a@example.jp\r\nSubject: c\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\tboundary=\"b\"\r\n"
        b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\nContent-Type: application/pdf; name=a.pdf\r\n\r\n"
        b"%PDF\r\n--b--\r\n",
        "c", "hello", ["a.pdf"],
    ),
    "a boundary that never appears": (
        b'From: a@example.jp\r\nSubject: d\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="zzz"\r\n'
        b"\r\njust text, no parts\r\n",
        "d", "just text, no parts", [],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(LENIENT))
def test_broken_headers_and_containers_are_read_as_mature_parsers_read_them(tmp_path: Path, case: str) -> None:
    raw, subject, body, names = LENIENT[case]
    parsed = parse_bytes(raw, tmp_path)
    assert parsed.subject == subject
    assert parsed.text_body.strip() == body
    assert [a.filename for a in parsed.attachments] == names  # no phantom multipart/* attachment
    assert all(not set(a.content_type) & set("\r\n\t ") for a in parsed.attachments)


def test_through_smtp_and_the_api(service: Any, api: Any) -> None:
    for raw, *_ in LENIENT.values():
        send(service.smtp_port, raw)
    items = wait_for(lambda: (i := api.get("/api/v1/messages").json()["items"]) and len(i) == len(LENIENT) and i, 20)
    by_subject = {item["subject"]: api.get(f"/api/v1/messages/{item['id']}").json() for item in items}
    assert by_subject["会議"]["text"].strip() == "本文です"
    assert [a["filename"] for a in by_subject["b"]["attachments"]] == ["a.pdf"]
    assert by_subject["d"]["attachments"] == [] and "just text" in by_subject["d"]["text"]


def test_a_forwarded_message_is_kept_byte_for_byte(tmp_path: Path) -> None:
    inner = (
        b"From: orig@example.jp\r\nSubject:  two  spaces\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/signed; boundary="s"; protocol="application/pkcs7-signature"\r\n\r\n'
        b"--s\r\nContent-Type: text/plain\r\n\r\nsigned text \r\n--s\r\nContent-Type: application/pkcs7-signature\r\n\r\n"
        b"MIIB\r\n--s--"
    )
    raw = (
        b'From: fwd@example.jp\r\nSubject: Fwd\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="o"\r\n\r\n'
        b"--o\r\nContent-Type: text/plain\r\n\r\nsee below\r\n--o\r\nContent-Type: message/rfc822\r\n\r\n"
        + inner
        + b"\r\n--o--\r\n"
    )
    parsed = parse_bytes(raw, tmp_path)
    forwarded = next(a for a in parsed.attachments if a.content_type == "message/rfc822")
    assert (tmp_path / forwarded.sha256[:2] / forwarded.sha256).read_bytes() == inner


def test_a_fragment_of_a_split_mail_is_listed_as_what_it_is(tmp_path: Path) -> None:
    fragment = b"From: orig@example.jp\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\npart one"
    raw = (
        b"From: a@example.jp\r\nSubject: big (1/2)\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: message/partial; id="abc@example.jp"; number=1; total=2\r\n\r\n' + fragment
    )
    parsed = parse_bytes(raw, tmp_path)
    [attachment] = parsed.attachments
    assert (attachment.filename, attachment.content_type) == ("分割メール（1／2）.eml", "message/partial")
    assert (tmp_path / attachment.sha256[:2] / attachment.sha256).read_bytes() == fragment
    assert any("分割" in p for p in parsed.problems)
