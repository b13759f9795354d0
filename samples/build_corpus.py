"""Builds the Japanese mail corpus in ``samples/corpus/`` and its
expectations in ``samples/corpus.json``.

Every message is written byte by byte the way the mailer it imitates
writes it (Windows clients' ISO-2022-JP with CP932 extensions, Shift_JIS
under its many labels, split encoded words, RFC 2231, raw 8-bit names,
winmail.dat, …), with encoders that live here and share no code with
mailintake's decoder. The expectations come from the source strings, never
from decoding the result. Re-run after changing a sample:

    .venv/bin/python samples/build_corpus.py
"""

from __future__ import annotations

import base64
import hashlib
import json
import quopri
import re
import struct
from pathlib import Path
from urllib.parse import quote_from_bytes

HERE = Path(__file__).resolve().parent
OUT = HERE / "corpus"
TO = "soumu@city.example.jp"
DATE = "Date: Fri, 20 Nov 2026 09:30:00 +0900"

# The characters that map differently by route are stored in their CP932
# (Windows) forms: ～ (U+FF5E), － (U+FF0D), ∥ (U+2225).
SAMPLES: list[dict] = []


# -- encoders (independent of mailintake) ------------------------------------------------


def jis(text: str) -> bytes:
    """ISO-2022-JP as Windows writes it (CP50221): CP932 → JIS row/cell,
    half-width katakana in ESC ( I."""
    out = bytearray()
    mode = "ascii"
    data = text.encode("cp932")
    i = 0
    while i < len(data):
        b = data[i]
        if b < 0x80:
            if mode != "ascii":
                out += b"\x1b(B"
                mode = "ascii"
            out.append(b)
            i += 1
        elif 0xA1 <= b <= 0xDF:
            if mode != "kana":
                out += b"\x1b(I"
                mode = "kana"
            out.append(b - 0x80)
            i += 1
        else:
            if mode != "kanji":
                out += b"\x1b$B"
                mode = "kanji"
            s1, s2 = b, data[i + 1]
            if s1 >= 0xFA:  # IBM extensions → NEC-selected rows, as CP50221 does
                s1, s2 = _ibm_to_nec_selected(data, i)
            if s1 >= 0xE0:
                s1 -= 0x40
            j1 = (s1 - 0x81) * 2 + 0x21
            if s2 >= 0x9F:
                j1 += 1
                j2 = s2 - 0x7E
            else:
                j2 = s2 - 0x1F if s2 < 0x80 else s2 - 0x20
            out += bytes((j1, j2))
            i += 2
    if mode != "ascii":
        out += b"\x1b(B"
    return bytes(out)


def _ibm_to_nec_selected(data: bytes, i: int) -> tuple[int, int]:
    char = data[i : i + 2].decode("cp932")
    for lead in (0xED, 0xEE):
        for trail in range(0x40, 0xFD):
            try:
                if bytes((lead, trail)).decode("cp932") == char:
                    return lead, trail
            except UnicodeDecodeError:
                continue
    raise ValueError(f"no NEC-selected form for {char}")


def b_word(data: bytes, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(data).decode()}?="


def q_word(data: bytes, charset: str) -> str:
    encoded = "".join(
        chr(b) if (0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A) else f"={b:02X}" for b in data
    )
    return f"=?{charset}?Q?{encoded}?="


def split_b_words(data: bytes, charset: str, cut: int) -> str:
    """Two adjacent encoded words with the bytes split at ``cut`` — in the
    middle of a character, as older Japanese mailers do."""
    return b_word(data[:cut], charset) + "\r\n " + b_word(data[cut:], charset)


def b64_lines(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def headers(subject: str, sender: str, extra: str = "") -> bytes:
    lines = [f"From: {sender}", f"To: {TO}", f"Subject: {subject}", DATE, "MIME-Version: 1.0"]
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def tnef(files: list[tuple[str, bytes]], codepage: int = 932) -> bytes:
    """A minimal winmail.dat: TNEF version, OEM code page, and per file
    AttachRendData, AttachTitle (in the code page) and AttachData."""

    def attribute(level: int, kind: int, name: int, data: bytes) -> bytes:
        return struct.pack("<BHHI", level, name, kind, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)

    out = struct.pack("<IH", 0x223E9F78, 0x0001)
    out += attribute(1, 0x0008, 0x9006, struct.pack("<I", 0x00010000))
    out += attribute(1, 0x0006, 0x9007, struct.pack("<II", codepage, 0))
    out += attribute(1, 0x0007, 0x8008, b"IPM.Microsoft Mail.Note\0")
    for name, data in files:
        out += attribute(2, 0x0006, 0x9002, b"\x01\x00" + b"\xff" * 12)
        out += attribute(2, 0x0001, 0x8010, name.encode(f"cp{codepage}") + b"\0")
        out += attribute(2, 0x0006, 0x800F, data)
    return out


def attachment_part(
    boundary: str,
    disposition_params: str,
    content: bytes,
    ctype: str = "application/octet-stream",
    type_params: str = "",
) -> bytes:
    return (
        f"--{boundary}\r\nContent-Type: {ctype}{type_params}\r\n"
        f"Content-Disposition: attachment;{disposition_params}\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    ).encode("latin-1") + b64_lines(content)


def expect_attachment(name: str, data: bytes, part_of: str | None = None) -> dict:
    entry = {"filename": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if part_of is not None:
        entry["part_of"] = part_of
    return entry


def sample(
    file: str,
    covers: str,
    raw: bytes,
    subject: str,
    from_name: str,
    from_address: str,
    body: str,
    attachments: list[dict] | None = None,
    problem: str | None = None,
) -> None:
    SAMPLES.append(
        {
            "file": file,
            "covers": covers,
            "raw": raw,
            "subject": subject,
            "from_name": from_name,
            "from_address": from_address,
            "body_contains": body,
            "attachments": attachments or [],
            **({"problem_contains": problem} if problem else {}),
        }
    )


PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
XLSX = b"PK\x03\x04" + bytes(range(256)) * 4


# -- the samples ------------------------------------------------------------------------------


def build() -> None:
    # 1. ISO-2022-JP with CP932 extensions, in headers, body and filename; katakana.
    subject = "①㈱髙﨑商店からの請求書（ｾｲｷｭｳｼｮ）"
    body = "総務課 御中\r\n\r\n㈱髙﨑商店の髙橋です。①請求書、②納品書を送付します。\r\nﾊﾝｶｸｶﾀｶﾅも含みます。\r\n"
    name = "①請求書_髙﨑.pdf"
    raw = headers(
        b_word(jis(subject), "ISO-2022-JP"),
        f"{b_word(jis('髙橋 一郎'), 'ISO-2022-JP')} <takahashi@takasaki.example.co.jp>",
        'Content-Type: multipart/mixed; boundary="b1"',
    )
    raw += (
        b"\r\n--b1\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        + jis(body)
    )
    raw += (
        attachment_part("b1", f' filename="{b_word(jis(name), "ISO-2022-JP")}"', PDF, "application/pdf") + b"--b1--\r\n"
    )
    sample(
        "01-iso2022jp-cp932-extensions.eml",
        "1 ISO-2022-JP with NEC/IBM extensions and half-width katakana",
        raw,
        subject,
        "髙橋 一郎",
        "takahashi@takasaki.example.co.jp",
        "①請求書、②納品書",
        [expect_attachment(name, PDF)],
    )

    # 1b. ISO-2022-JP with no charset label at all.
    body = "ラベルのない ISO-2022-JP 本文です。会議は３階です。\r\n"
    raw = headers("unlabelled JIS", "sato@example.co.jp", "Content-Type: text/plain") + b"\r\n" + jis(body)
    sample(
        "02-iso2022jp-unlabelled.eml",
        "1 ISO-2022-JP detected from its escape sequences",
        raw,
        "unlabelled JIS",
        "",
        "sato@example.co.jp",
        "会議は３階です",
    )

    # 2. Shift_JIS under every label.
    for i, label in enumerate(["Shift_JIS", "SJIS", "x-sjis", "MS_Kanji", "Windows-31J", "CP932"]):
        subject = f"{label} の件名 ㈱①髙"
        body = f"{label} で書かれた本文です。～ ㈱ ① 髙\r\n"
        raw = headers(
            b_word(subject.encode("cp932"), label),
            f"{b_word('鈴木 花子'.encode('cp932'), label)} <suzuki@example.jp>",
            f"Content-Type: text/plain; charset={label}\r\nContent-Transfer-Encoding: 8bit",
        )
        sample(
            f"03-sjis-label-{i}-{label.lower()}.eml",
            f"2 Shift_JIS labelled {label}",
            raw + b"\r\n" + body.encode("cp932"),
            subject,
            "鈴木 花子",
            "suzuki@example.jp",
            "で書かれた本文です。～ ㈱ ① 髙",
        )

    body = "EUC-JP の本文です。予算要求について。\r\n"
    raw = headers(
        b_word("EUC-JP の件名".encode("euc_jp"), "EUC-JP"),
        "tanaka@example.jp",
        "Content-Type: text/plain; charset=EUC-JP\r\nContent-Transfer-Encoding: 8bit",
    )
    sample(
        "04-euc-jp.eml",
        "2 EUC-JP",
        raw + b"\r\n" + body.encode("euc_jp"),
        "EUC-JP の件名",
        "",
        "tanaka@example.jp",
        "予算要求について",
    )

    body = "ISO-2022-JP-2 の本文: café と 會議\r\n"
    raw = headers("ISO-2022-JP-2", "intl@example.jp", "Content-Type: text/plain; charset=ISO-2022-JP-2")
    sample(
        "05-iso2022jp-2.eml",
        "2 ISO-2022-JP-2",
        raw + b"\r\n" + body.encode("iso2022_jp_2"),
        "ISO-2022-JP-2",
        "",
        "intl@example.jp",
        "café と 會議",
    )

    body = "UTF-8 なのに ISO-2022-JP と名乗る本文です。\r\n"
    raw = headers(
        b_word("UTF-8 の件名".encode(), "UTF-8"),
        "mislabel@example.jp",
        "Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 8bit",
    )
    sample(
        "06-utf8-labelled-iso2022jp.eml",
        "2 UTF-8 mislabelled as ISO-2022-JP",
        raw + b"\r\n" + body.encode("utf-8"),
        "UTF-8 の件名",
        "",
        "mislabel@example.jp",
        "と名乗る本文です",
    )

    body = "文字コードの指定がない Shift_JIS の本文です。議事録を添付します。\r\n"
    raw = headers("no charset", "nolabel@example.jp", "Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit")
    sample(
        "07-cp932-unlabelled.eml",
        "2 missing label guessed",
        raw + b"\r\n" + body.encode("cp932"),
        "no charset",
        "",
        "nolabel@example.jp",
        "議事録を添付します",
    )
    raw = headers(
        "unknown charset",
        "unknown@example.jp",
        "Content-Type: text/plain; charset=x-mac-japanese-unknown\r\nContent-Transfer-Encoding: 8bit",
    )
    sample(
        "07b-unknown-label.eml",
        "2 unknown label guessed",
        raw + b"\r\n" + body.encode("cp932"),
        "unknown charset",
        "",
        "unknown@example.jp",
        "議事録を添付します",
    )

    # 3. Encoded words split mid-character, Q encoding, folding, raw 8-bit headers.
    subject = "令和８年度予算要求資料の提出について"
    data = subject.encode("utf-8")
    raw = headers(split_b_words(data, "UTF-8", 10), "split@example.jp", "Content-Type: text/plain; charset=UTF-8")
    sample(
        "08-split-encoded-words-utf8.eml",
        "3 adjacent encoded words splitting a UTF-8 character",
        raw + b"\r\n" + "本文\r\n".encode(),
        subject,
        "",
        "split@example.jp",
        "本文",
    )
    data = subject.encode("cp932")
    raw = headers(
        split_b_words(data, "Shift_JIS", 7), "split-sjis@example.jp", "Content-Type: text/plain; charset=UTF-8"
    )
    sample(
        "08b-split-encoded-words-sjis.eml",
        "3 adjacent encoded words splitting a Shift_JIS character",
        raw + b"\r\n" + "本文\r\n".encode(),
        subject,
        "",
        "split-sjis@example.jp",
        "本文",
    )
    subject = "Q 符号化された 件名"
    raw = headers(q_word(jis(subject), "ISO-2022-JP"), "q@example.jp", "Content-Type: text/plain; charset=UTF-8")
    sample(
        "08c-q-encoded-iso2022jp.eml",
        "3 Q encoding of ISO-2022-JP",
        raw + b"\r\n" + b"body\r\n",
        subject,
        "",
        "q@example.jp",
        "body",
    )
    subject = "生の 8 ビット CP932 件名です"
    raw = (
        (f"From: raw@example.jp\r\nTo: {TO}\r\n").encode()
        + b"Subject: "
        + subject.encode("cp932")
        + b"\r\n"
        + DATE.encode()
        + b"\r\n\r\nbody\r\n"
    )
    sample("09-raw-8bit-cp932-subject.eml", "3 raw 8-bit CP932 header", raw, subject, "", "raw@example.jp", "body")
    subject = "生の 8 ビット UTF-8 件名です"
    raw = (
        (f"From: raw8@example.jp\r\nTo: {TO}\r\n").encode()
        + b"Subject: "
        + subject.encode("utf-8")
        + b"\r\n"
        + DATE.encode()
        + b"\r\n\r\nbody\r\n"
    )
    sample("09b-raw-8bit-utf8-subject.eml", "3 raw 8-bit UTF-8 header", raw, subject, "", "raw8@example.jp", "body")

    # 4. Attachment filenames.
    names = {
        "rfc2231-utf8": (
            "会議資料（第１回）.docx",
            lambda n: f" filename*=UTF-8''{quote_from_bytes(n.encode('utf-8'))}",
        ),
        "rfc2231-continued-sjis": (
            "令和８年度予算要求書_総務課.xlsx",
            lambda n: _continued(n.encode("cp932"), "Shift_JIS"),
        ),
        "rfc2231-iso2022jp": ("議事録①.pdf", lambda n: f" filename*=ISO-2022-JP''{quote_from_bytes(jis(n))}"),
        "encoded-word-sjis": ("見積書.pdf", lambda n: f' filename="{b_word(n.encode("cp932"), "Shift_JIS")}"'),
    }
    # Raw 8-bit names: the bytes go into the header as they are (latin-1
    # round-trips every byte through attachment_part's str).
    raw_name = "生の名前の添付ファイル.pdf"
    for key, codec in (("raw-8bit-sjis", "cp932"), ("raw-8bit-utf8", "utf-8")):
        names[key] = (raw_name, lambda n, c=codec: f' filename="{n.encode(c).decode("latin-1")}"')
    for key, (name, render) in names.items():
        raw = headers(f"filename {key}", "files@example.jp", 'Content-Type: multipart/mixed; boundary="f"')
        raw += b"\r\n--f\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nsee attachment\r\n"
        raw += attachment_part("f", render(name), XLSX) + b"--f--\r\n"
        sample(
            f"10-filename-{key}.eml",
            f"4 filename {key}",
            raw,
            f"filename {key}",
            "",
            "files@example.jp",
            "see attachment",
            [expect_attachment(name, XLSX)],
        )

    # 5. Display names with commas, quotes, encoded words; the real address wins.
    raw = (
        f'From: "山田, 太郎 (総務課)" <yamada@city.example.jp>\r\nTo: {TO}\r\nSubject: comma\r\n{DATE}\r\n'
        "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nbody\r\n"
    ).encode()
    sample(
        "11-display-name-comma.eml",
        "5 display name with comma and quotes",
        raw,
        "comma",
        "山田, 太郎 (総務課)",
        "yamada@city.example.jp",
        "body",
    )
    raw = (
        headers(
            "encoded comma",
            f"{b_word('佐藤, 次郎'.encode(), 'UTF-8')} <sato.jiro@example.jp>",
            "Content-Type: text/plain; charset=UTF-8",
        )
        + b"\r\nbody\r\n"
    )
    sample(
        "11b-display-name-encoded-comma.eml",
        "5 encoded word with a comma",
        raw,
        "encoded comma",
        "佐藤, 次郎",
        "sato.jiro@example.jp",
        "body",
    )
    raw = (
        headers("spoof", '"alice@city.example.jp" <x@evil.example>', "Content-Type: text/plain; charset=UTF-8")
        + b"\r\nbody\r\n"
    )
    sample(
        "11c-display-name-spoof.eml",
        "5 CVE-2023-27043 shape: the real address is shown",
        raw,
        "spoof",
        "alice@city.example.jp",
        "x@evil.example",
        "body",
    )

    # 6. QP and base64 over ISO-2022-JP; HTML-only; format=flowed.
    body = "引用符付き印字可能で符号化された JIS の本文です。\r\n"
    raw = headers(
        "qp jis",
        "qp@example.jp",
        "Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: quoted-printable",
    )
    sample(
        "12-qp-iso2022jp.eml",
        "6 quoted-printable over ISO-2022-JP",
        raw + b"\r\n" + quopri.encodestring(jis(body)),
        "qp jis",
        "",
        "qp@example.jp",
        "符号化された JIS の本文",
    )
    body = "BASE64 で符号化された JIS の本文です。\r\n"
    raw = headers(
        "b64 jis",
        "b64@example.jp",
        "Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: base64",
    )
    sample(
        "12b-base64-iso2022jp.eml",
        "6 base64 over ISO-2022-JP",
        raw + b"\r\n" + b64_lines(jis(body)),
        "b64 jis",
        "",
        "b64@example.jp",
        "符号化された JIS の本文",
    )
    html = "<html><head><style>p{color:red}</style></head><body><p>HTML だけのメールです。</p><p>説明会の&nbsp;ご案内</p><script>alert(1)</script></body></html>"
    raw = headers("html only", "html@example.jp", "Content-Type: text/html; charset=ISO-2022-JP")
    sample(
        "13-html-only.eml",
        "6 text/html only: a text rendition is derived",
        raw + b"\r\n" + jis(html),
        "html only",
        "",
        "html@example.jp",
        "HTML だけのメールです。",
    )
    flowed = "これは長い段落で、 \r\nformat=flowed により \r\n折り返されています。\r\n"
    raw = headers(
        "flowed",
        "flowed@example.jp",
        "Content-Type: text/plain; charset=UTF-8; format=flowed\r\nContent-Transfer-Encoding: 8bit",
    )
    sample(
        "13b-format-flowed.eml",
        "6 format=flowed",
        raw + b"\r\n" + flowed.encode(),
        "flowed",
        "",
        "flowed@example.jp",
        "これは長い段落で、 format=flowed により 折り返されています。",
    )

    # 7. winmail.dat
    inner = [("会議資料.docx", XLSX), ("予算①.xlsx", PDF)]
    raw = headers("winmail", "outlook@example.jp", 'Content-Type: multipart/mixed; boundary="w"')
    raw += b"\r\n--w\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\r\n" + jis("Outlook からの送信です。\r\n")
    raw += attachment_part("w", ' filename="winmail.dat"', tnef(inner), "application/ms-tnef") + b"--w--\r\n"
    winmail = tnef(inner)
    sample(
        "14-winmail-dat.eml",
        "7 winmail.dat with CP932 names",
        raw,
        "winmail",
        "",
        "outlook@example.jp",
        "Outlook からの送信です。",
        [expect_attachment("winmail.dat", winmail)]
        + [expect_attachment(n, d, part_of="winmail.dat") for n, d in inner],
    )

    # 8. Forwarded message with its own attachment.
    fwd_subject = "元のメール（転送）"
    fwd = headers(
        b_word(fwd_subject.encode("utf-8"), "UTF-8"), "orig@example.jp", 'Content-Type: multipart/mixed; boundary="in"'
    )
    fwd += b"\r\n--in\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n" + "元の本文\r\n".encode()
    fwd += (
        attachment_part("in", f" filename*=UTF-8''{quote_from_bytes('元の添付.pdf'.encode())}", PDF, "application/pdf")
        + b"--in--\r\n"
    )
    raw = headers("Fwd: forwarded", "fwd@example.jp", 'Content-Type: multipart/mixed; boundary="out"')
    raw += b"\r\n--out\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n" + "転送します。\r\n".encode()
    raw += b"--out\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n" + fwd + b"--out--\r\n"
    sample(
        "15-forwarded-message.eml",
        "8 message/rfc822 kept as .eml, its attachments listed",
        raw,
        "Fwd: forwarded",
        "",
        "fwd@example.jp",
        "転送します。",
        # Kept byte for byte: the wire bytes of the embedded message (the
        # line break before the next delimiter belongs to the delimiter).
        [
            expect_attachment(f"{fwd_subject}.eml", fwd[: -len(b"\r\n")]),
            expect_attachment("元の添付.pdf", PDF, part_of=f"{fwd_subject}.eml"),
        ],
    )

    # 9. S/MIME signed and encrypted.
    signature = b"0\x82\x01\x00" + bytes(range(200))
    raw = headers(
        "signed",
        "signed@example.jp",
        'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="s"',
    )
    raw += b"\r\n--s\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\r\n" + jis("署名付きのメールです。\r\n")
    raw += (
        attachment_part("s", ' filename="smime.p7s"', signature, "application/pkcs7-signature", '; name="smime.p7s"')
        + b"--s--\r\n"
    )
    sample(
        "16-smime-signed.eml",
        "9 S/MIME signed: decoded, signature kept",
        raw,
        "signed",
        "",
        "signed@example.jp",
        "署名付きのメールです。",
        [expect_attachment("smime.p7s", signature)],
    )
    envelope = bytes(range(256)) * 3
    raw = headers(
        "encrypted",
        "enc@example.jp",
        'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\r\n'
        'Content-Disposition: attachment; filename="smime.p7m"\r\nContent-Transfer-Encoding: base64',
    )
    sample(
        "16b-smime-encrypted.eml",
        "9 S/MIME encrypted: stored with a clear note",
        raw + b"\r\n" + b64_lines(envelope),
        "encrypted",
        "",
        "enc@example.jp",
        "",
        [expect_attachment("smime.p7m", envelope)],
        problem="暗号化",
    )

    # 10. Route-dependent characters: JIS 〜 (0x2141) arrives as U+301C via
    # the ISO-2022-JP route; stored as the CP932 form ～.
    raw = headers(
        b_word(b"\x1b$B!A\x1b(B10:00", "ISO-2022-JP"),
        "wave@example.jp",
        "Content-Type: text/plain; charset=ISO-2022-JP",
    )
    sample(
        "17-wave-dash.eml",
        "10 〜/～ and −/－ normalised",
        raw + b"\r\n" + b"\x1b$B#9;~!A#1#0;~!!!]#5\x1b(B\r\n",
        "～10:00",
        "",
        "wave@example.jp",
        "９時～１０時　－５",
    )
    raw = headers(
        b_word("受付 9:00〜17:00".encode(), "UTF-8"),
        "mac@example.jp",
        "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit",
    )
    sample(
        "17b-wave-dash-utf8.eml",
        "10 U+301C and U+2212 from a Mac are stored as ～ and －",
        raw + b"\r\n" + "気温は −5 度、期間は 1日〜3日。\r\n".encode(),
        "受付 9:00～17:00",
        "",
        "mac@example.jp",
        "気温は －5 度、期間は 1日～3日。",
    )

    # 11. Hostile names and broken parts.
    hostile = [
        "../../etc/passwd",
        "..\\..\\windows\\system32\\evil.dll",
        "C:\\Users\\Public\\x.exe",
        "/etc/shadow",
        "CON",
        "report.pdf...   ",
        "a\"b'c.txt",
        "同じ名前.txt",
        "同じ名前.txt",
        "長" * 100 + ".txt",
    ]
    raw = headers("hostile names", "hostile@example.jp", 'Content-Type: multipart/mixed; boundary="h"')
    raw += b"\r\n--h\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nhostile\r\n"
    expected = []
    for i, name in enumerate(hostile):
        content = f"file {i}".encode()
        raw += attachment_part("h", f" filename*=UTF-8''{quote_from_bytes(name.encode('utf-8'))}", content)
        expected.append(expect_attachment(name, content))
    crlf_name = "evil\r\nContent-Type: text/html.txt"
    raw += attachment_part("h", f" filename*=UTF-8''{quote_from_bytes(crlf_name.encode())}", b"crlf")
    expected.append(expect_attachment("evil  Content-Type: text/html.txt", b"crlf"))
    raw += attachment_part("h", ' filename="nul\\u0000.txt"'.replace("\\u0000", "%00"), b"nul")
    expected.append(expect_attachment("nul%00.txt", b"nul"))
    raw += (
        b"--h\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + b64_lines(b"no name")
    )
    expected.append(expect_attachment("", b"no name"))
    raw += b"--h--\r\n"
    sample(
        "18-hostile-filenames.eml",
        "11 hostile filenames: kept for display, never used as paths",
        raw,
        "hostile names",
        "",
        "hostile@example.jp",
        "hostile",
        expected,
    )
    raw = headers("broken", "broken@example.jp", 'Content-Type: multipart/mixed; boundary="x"')
    raw += b"\r\n--x\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n" + "壊れた添付があります。\r\n".encode()
    raw += b'--x\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="broken.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK!!!not*base64\r\nJVBER\r\n'
    sample(
        "19-broken-base64-truncated.eml",
        "11 broken base64 and a truncated multipart",
        raw,
        "broken",
        "",
        "broken@example.jp",
        "壊れた添付があります。",
        [{"filename": "broken.pdf"}],
        problem="一部を復元できませんでした",
    )


def build_round_two() -> None:
    """What senders write that parsers tend to change or lose (the classes
    of decoding's second round), and other breakage met in real mail."""
    # r1. U+3000 in a subject and a display name is the sender's: kept.
    subject = "令和８年度　防災訓練の実施について"
    raw = headers(
        b_word(jis(subject), "ISO-2022-JP"),
        f"{b_word(jis('髙橋　花子'), 'ISO-2022-JP')} <takahashi@example.lg.jp>",
        "Content-Type: text/plain; charset=ISO-2022-JP",
    )
    body = "防災訓練を　１１月２５日に行います。\r\n"
    sample(
        "20-u3000-kept.eml",
        "r1 U+3000 in subject, name and body kept",
        raw + b"\r\n" + jis(body),
        subject,
        "髙橋　花子",
        "takahashi@example.lg.jp",
        "防災訓練を　１１月２５日に行います。",
    )

    # r2. Raw 8-bit bytes inside an encoded word, in the word's own charset.
    raw = headers(
        "=?iso-8859-1?Q?Fr@F6@sche_und_Kr@F6@ten?=", "frog@example.de", "Content-Type: text/plain; charset=UTF-8"
    )
    sample(
        "21-raw-8bit-in-encoded-word-latin1.eml",
        "r2 raw 8-bit Latin-1 inside a Q word",
        raw.replace(b"@F6@", b"\xf6") + b"\r\nGruss\r\n",
        "Frösche und Kröten",
        "",
        "frog@example.de",
        "Gruss",
    )
    raw = (
        b"From: kaigi@example.jp\r\nTo: "
        + TO.encode()
        + b"\r\nSubject: =?shift_jis?Q?"
        + "会議資料の送付".encode("cp932")
    )
    raw += b"?=\r\n" + DATE.encode() + b"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=Shift_JIS\r\n\r\n"
    sample(
        "21b-raw-8bit-in-encoded-word-sjis.eml",
        "r2 raw CP932 bytes inside a shift_jis Q word",
        raw + "資料を送付します。\r\n".encode("cp932"),
        "会議資料の送付",
        "",
        "kaigi@example.jp",
        "資料を送付します。",
    )

    # r4. Lenient header and parameter parsing.
    raw = (
        f"From: lenient@example.jp\r\nSubject : {b_word('会議'.encode(), 'UTF-8')}\r\nTo: {TO}\r\n{DATE}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + "本文です。\r\n".encode()
    sample(
        "22-space-before-colon.eml",
        "r4 'Subject :' (RFC 5322 4.5 obsolete syntax) is a header",
        raw,
        "会議",
        "",
        "lenient@example.jp",
        "本文です。",
    )
    raw = headers("folded", "fold@example.jp", 'Content-Type: multipart/mixed; boundary="foo\r\n bar"')
    raw += b"\r\n--foo bar\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n" + "折り返された区切り\r\n".encode()
    raw += attachment_part("foo bar", ' filename="a.pdf"', PDF, "application/pdf") + b"--foo bar--\r\n"
    sample(
        "22b-folded-quoted-boundary.eml",
        "r4 a quoted boundary folded across lines",
        raw,
        "folded",
        "",
        "fold@example.jp",
        "折り返された区切り",
        [expect_attachment("a.pdf", PDF)],
    )
    raw = headers("no semicolon", "semi@example.jp", 'Content-Type: multipart/mixed\r\n\tboundary="b"')
    raw += b"\r\n--b\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n" + "区切りの前にセミコロンがない\r\n".encode()
    raw += attachment_part("b", ' filename="b.pdf"', PDF, "application/pdf") + b"--b--\r\n"
    sample(
        "22c-missing-semicolon.eml",
        "r4 no ';' between the media type and its boundary",
        raw,
        "no semicolon",
        "",
        "semi@example.jp",
        "区切りの前にセミコロンがない",
        [expect_attachment("b.pdf", PDF)],
    )

    # r5. A multipart whose boundary never appears holds text, not a part.
    raw = headers("phantom", "phantom@example.jp", 'Content-Type: multipart/mixed; boundary="never"')
    sample(
        "23-boundary-never-appears.eml",
        "r5 a multipart without its boundary is read as text",
        raw + b"\r\n" + "区切り行のないメールです。\r\n".encode(),
        "phantom",
        "",
        "phantom@example.jp",
        "区切り行のないメールです。",
    )

    # rw. Other real-world mail.
    raw = headers(
        "(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=) (=?ISO-8859-1?Q?a_b?=) =?US-ASCII*EN?Q?Keith_Moore?=",
        "=?ISO-8859-1?Q?Olle_J=E4rnefors?= <ojarnef@admin.kth.se>",
        "Content-Type: text/plain",
    )
    sample(
        "24-rfc2047-examples.eml",
        "rw RFC 2047 section 8: adjacent words join, _ is a space, a language tag",
        raw + b"\r\nRFC 2047\r\n",
        "(ab) (a b) Keith Moore",
        "Olle Järnefors",
        "ojarnef@admin.kth.se",
        "RFC 2047",
    )
    raw = headers("rfc2231", "rfc2231@example.jp", 'Content-Type: multipart/mixed; boundary="c"')
    raw += b"\r\n--c\r\nContent-Type: text/plain\r\n\r\nRFC 2231\r\n"
    raw += (
        attachment_part(
            "c",
            "\r\n filename*0*=us-ascii'en'This%20is%20even%20more%20;\r\n filename*1*=%2A%2A%2Afun%2A%2A%2A%20;"
            '\r\n filename*2="isn\'t it!.txt"',
            b"fun",
            "text/plain",
        )
        + b"--c--\r\n"
    )
    sample(
        "24b-rfc2231-language-and-continuations.eml",
        "rw RFC 2231 section 4: language, encoded and plain pieces",
        raw,
        "rfc2231",
        "",
        "rfc2231@example.jp",
        "RFC 2231",
        [expect_attachment("This is even more ***fun*** isn't it!.txt", b"fun")],
    )
    raw = headers("Apple Mail", "mac@example.jp", 'Content-Type: multipart/mixed;\r\n\tboundary="Apple-Mail=_1"')
    raw += b"\r\n--Apple-Mail=_1\r\nContent-Transfer-Encoding: 7bit\r\nContent-Type: text/plain;\r\n\tcharset=us-ascii\r\n\r\n"
    raw += b"Before the file.\r\n\r\n--Apple-Mail=_1\r\nContent-Disposition: inline;\r\n\tfilename*=utf-8''"
    raw += quote_from_bytes("資料.pdf".encode()).encode() + b"\r\nContent-Type: application/pdf;\r\n\tx-unix-mode=0644;"
    raw += (
        b'\r\n\tname="'
        + b_word("資料.pdf".encode(), "utf-8").encode()
        + b'"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    )
    raw += b64_lines(PDF) + b"\r\n--Apple-Mail=_1\r\nContent-Transfer-Encoding: 7bit\r\nContent-Type: text/plain;\r\n"
    raw += b"\tcharset=us-ascii\r\n\r\nAfter the file.\r\n--Apple-Mail=_1--\r\n"
    sample(
        "25-apple-mail-inline-between-text.eml",
        "rw Apple Mail: a PDF inline between two text parts",
        raw,
        "Apple Mail",
        "",
        "mac@example.jp",
        "After the file.",
        [expect_attachment("資料.pdf", PDF)],
    )
    png = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")
    raw = headers(
        b_word(jis("報告書"), "iso-2022-jp"),
        "outlook@example.jp",
        'Content-Type: multipart/related;\r\n\ttype="multipart/alternative";\r\n\tboundary="R1"',
    )
    raw += b'\r\n--R1\r\nContent-Type: multipart/alternative;\r\n\tboundary="A1"\r\n\r\n--A1\r\n'
    raw += b'Content-Type: text/plain;\r\n\tcharset="iso-2022-jp"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
    raw += jis("報告書を送ります。\r\n") + b'--A1\r\nContent-Type: text/html;\r\n\tcharset="iso-2022-jp"\r\n'
    raw += b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    raw += quopri.encodestring(
        b"<html><body><p>" + jis("報告書") + b'</p><img src="cid:image001.png@01DB"></body></html>'
    )
    raw += b'\r\n--A1--\r\n\r\n--R1\r\nContent-Type: image/png;\r\n\tname="image001.png"\r\n'
    raw += b'Content-Disposition: inline;\r\n\tfilename="image001.png"\r\nContent-ID: <image001.png@01DB>\r\n'
    raw += b"Content-Transfer-Encoding: base64\r\n\r\n" + b64_lines(png) + b"\r\n--R1--\r\n"
    sample(
        "26-outlook-related-inline-image.eml",
        "rw Outlook: related > alternative with an inline image",
        raw,
        "報告書",
        "",
        "outlook@example.jp",
        "報告書を送ります。",
        [expect_attachment("image001.png", png)],
    )
    raw = headers(
        f"[soumu-ml:123] {b_word(jis('会議のお知らせ'), 'ISO-2022-JP')}",
        "ml@lists.example.jp",
        'Content-Type: multipart/mixed; boundary="L"',
    )
    raw += b"\r\n--L\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\r\n" + jis("会議のお知らせです。\r\n")
    raw += b"--L\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Disposition: inline\r\n\r\n"
    raw += b"_______________________________________________\r\nsoumu-ml mailing list\r\n--L--\r\n"
    sample(
        "27-mailing-list-footer.eml",
        "rw a mailing list's footer as a second inline text part",
        raw,
        "[soumu-ml:123] 会議のお知らせ",
        "",
        "ml@lists.example.jp",
        "soumu-ml mailing list",
    )
    returned = f"From: {TO}\r\nTo: nobody@example.jp\r\nSubject: {b_word('会議'.encode(), 'UTF-8')}\r\n\r\nhello\r\n"
    raw = headers(
        "Undelivered Mail Returned to Sender",
        "MAILER-DAEMON@mx.city.example.jp (Mail Delivery System)",
        'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="R"',
    )
    raw += b"\r\n--R\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThis is the mail system.\r\n\r\n"
    raw += b"<nobody@example.jp>: host example.jp said: 550 5.1.1 User unknown\r\n"
    raw += b"\r\n--R\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.city.example.jp\r\n\r\n"
    raw += b"Final-Recipient: rfc822; nobody@example.jp\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
    raw += b"--R\r\nContent-Type: message/rfc822\r\n\r\n" + returned.encode() + b"\r\n--R--\r\n"
    sample(
        "28-bounce-delivery-status.eml",
        "rw a bounce: the status is read, the returned mail kept",
        raw,
        "Undelivered Mail Returned to Sender",
        "Mail Delivery System",
        "MAILER-DAEMON@mx.city.example.jp",
        "Status: 5.1.1",
        [expect_attachment("会議.eml", returned.encode())],
    )
    ics = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nSUMMARY:定例会議\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n".encode()
    raw = headers(
        b_word("招待: 定例会議".encode(), "UTF-8"), "cal@example.jp", 'Content-Type: multipart/mixed; boundary="M"'
    )
    raw += b'\r\n--M\r\nContent-Type: multipart/alternative; boundary="A"\r\n\r\n--A\r\n'
    raw += b"Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    raw += (
        "定例会議への招待です。\r\n".encode() + b"--A\r\nContent-Type: text/calendar; charset=UTF-8; method=REQUEST\r\n"
    )
    # The line end before a boundary belongs to the boundary (RFC 2046 5.1.1).
    raw += b"Content-Transfer-Encoding: 8bit\r\n\r\n" + ics + b"\r\n--A--\r\n"
    raw += attachment_part("M", ' filename="invite.ics"', ics, "application/ics") + b"--M--\r\n"
    sample(
        "29-calendar-invite.eml",
        "rw a calendar invitation: text, the event, invite.ics",
        raw,
        "招待: 定例会議",
        "",
        "cal@example.jp",
        "定例会議への招待です。",
        [expect_attachment("予定.ics", ics), expect_attachment("invite.ics", ics)],
    )
    raw = headers(
        b_word("スキャン文書".encode(), "UTF-8"),
        "scanner@example.jp",
        'Content-Type: application/pdf; name="scan0001.pdf"\r\nContent-Disposition: attachment; '
        'filename="scan0001.pdf"\r\nContent-Transfer-Encoding: base64',
    )
    sample(
        "30-only-an-attachment.eml",
        "rw a mail that is only an attachment (a scanner's)",
        raw + b"\r\n" + b64_lines(PDF),
        "スキャン文書",
        "",
        "scanner@example.jp",
        "",
        [expect_attachment("scan0001.pdf", PDF)],
    )
    raw = headers(
        "7bit", "old@example.jp", "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit"
    )
    sample(
        "31-7bit-declared-utf8-bytes.eml",
        "rw declared 7-bit US-ASCII, sent as UTF-8",
        raw + b"\r\n" + "本文は UTF-8 です。\r\n".encode(),
        "7bit",
        "",
        "old@example.jp",
        "本文は UTF-8 です。",
    )
    raw = headers(
        "7bit", "old@example.jp", "Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit"
    )
    sample(
        "31b-7bit-declared-jis-cp932-bytes.eml",
        "rw declared ISO-2022-JP, sent as raw CP932 bytes",
        raw + b"\r\n" + "本文は シフトJIS です。\r\n".encode("cp932"),
        "7bit",
        "",
        "old@example.jp",
        "本文は シフトJIS です。",
    )


def _continued(data: bytes, charset: str) -> str:
    # Split every 10 bytes: whole %XX escapes, but through the middle of
    # two-byte characters, as RFC 2231 allows.
    chunks = [quote_from_bytes(data[i : i + 10]) for i in range(0, len(data), 10)]
    return ";".join(
        f"\r\n filename*{i}*={charset if i == 0 else ''}{chr(39) * 2 if i == 0 else ''}{c}"
        for i, c in enumerate(chunks)
    )


def main() -> None:
    build()
    build_round_two()
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.eml"):
        old.unlink()
    expectations = []
    for entry in SAMPLES:
        # As carried by SMTP: CRLF line ends, ending with a line end.
        raw = re.sub(rb"(?<!\r)\n", b"\r\n", entry.pop("raw"))
        if not raw.endswith(b"\r\n"):
            raw += b"\r\n"
        (OUT / entry["file"]).write_bytes(raw)
        expectations.append(entry)
    (HERE / "corpus.json").write_text(json.dumps(expectations, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(expectations)} samples written to {OUT}")


if __name__ == "__main__":
    main()
