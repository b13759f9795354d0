"""Property: Japanese subjects and filenames survive every encoding route
that real mailers use (generated with hypothesis)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from mailintake.mail.decoding import parse_bytes

_BUILDER = Path(__file__).resolve().parents[1] / "samples" / "build_corpus.py"
_spec = importlib.util.spec_from_file_location("build_corpus", _BUILDER)
assert _spec and _spec.loader
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)

KANA = [chr(c) for c in range(0x3041, 0x3094)] + [chr(c) for c in range(0x30A1, 0x30F7)]
KANJI = list("会議資料予算要求総務課人事異動請求書見積納品令和年度提出件名報告髙﨑德")
CP932_EXTENSIONS = list("①②③④⑤⑩⑳㈱㈲℡№ⅠⅡⅢ～∥－")
HALF_WIDTH = [chr(c) for c in range(0xFF71, 0xFF9E)]
ASCII = list("abcXYZ0129 -_()")
japanese_text = st.text(
    alphabet=st.sampled_from(KANA + KANJI + CP932_EXTENSIONS + HALF_WIDTH + ASCII), min_size=1, max_size=40
).filter(lambda t: t.strip() == t and "  " not in t)
# Raw 8-bit bytes carry no label; a string of only half-width katakana is
# genuinely ambiguous between CP932 and EUC-JP, so give the guess something
# to go on, as real headers do.
labelled_enough = japanese_text.filter(lambda t: any(ch in KANA or ch in KANJI for ch in t))

ROUTES = ["iso-2022-jp", "shift_jis", "utf-8-split", "sjis-split", "q-iso-2022-jp"]
NAME_ROUTES = [
    "rfc2231-utf8",
    "rfc2231-sjis-continued",
    "rfc2231-iso2022jp",
    "word-iso2022jp",
    "word-sjis",
    "raw-utf8",
    "raw-cp932",
]


def _subject(text: str, route: str, cut: int) -> str:
    if route == "iso-2022-jp":
        return corpus.b_word(corpus.jis(text), "ISO-2022-JP")
    if route == "shift_jis":
        return corpus.b_word(text.encode("cp932"), "Shift_JIS")
    if route == "utf-8-split":
        return _split(text.encode("utf-8"), "UTF-8", cut)
    if route == "sjis-split":
        return _split(text.encode("cp932"), "Shift_JIS", cut)
    return corpus.q_word(corpus.jis(text), "ISO-2022-JP")


def _split(data: bytes, charset: str, cut: int) -> str:
    """Two encoded words cut at any byte, or one word for a single byte."""
    if len(data) < 2:
        return corpus.b_word(data, charset)
    return corpus.split_b_words(data, charset, max(1, min(cut, len(data) - 1)))


def _disposition(name: str, route: str) -> bytes:
    if route == "rfc2231-utf8":
        return f"attachment; filename*=UTF-8''{quote_from_bytes(name.encode('utf-8'))}".encode()
    if route == "rfc2231-sjis-continued":
        return ("attachment;" + corpus._continued(name.encode("cp932"), "Shift_JIS")).encode()
    if route == "rfc2231-iso2022jp":
        return f"attachment; filename*=ISO-2022-JP''{quote_from_bytes(corpus.jis(name))}".encode()
    if route == "word-iso2022jp":
        return f'attachment; filename="{corpus.b_word(corpus.jis(name), "ISO-2022-JP")}"'.encode()
    if route == "word-sjis":
        return f'attachment; filename="{corpus.b_word(name.encode("cp932"), "Shift_JIS")}"'.encode()
    codec = "utf-8" if route == "raw-utf8" else "cp932"
    return b'attachment; filename="' + name.encode(codec) + b'"'


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=japanese_text, route=st.sampled_from(ROUTES), cut=st.integers(min_value=1, max_value=80))
def test_subjects_round_trip(tmp_path_factory, text: str, route: str, cut: int) -> None:
    raw = f"From: a@example.jp\r\nSubject: {_subject(text, route, cut)}\r\n\r\nbody\r\n".encode()
    parsed = parse_bytes(raw, tmp_path_factory.mktemp("blobs"))
    assert parsed.subject == text
    assert parsed.problems == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=labelled_enough, route=st.sampled_from(NAME_ROUTES))
@example(name="ﾂァ", route="raw-cp932")  # C2 83 40 is also valid UTF-8, as U+0083 + "@"
@example(name="ﾃァ", route="raw-cp932")  # C3 83 40 is also valid UTF-8, as "Ã@"
@example(name="德ァ", route="raw-cp932")  # ED 9E 83 40 is also valid UTF-8, as Hangul "힃@"
def test_filenames_round_trip(tmp_path_factory, name: str, route: str) -> None:
    filename = name + ".pdf"
    raw = (
        b"From: a@example.jp\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: " + _disposition(filename, route) + b"\r\n\r\n%PDF\r\n--b--\r\n"
    )
    parsed = parse_bytes(raw, tmp_path_factory.mktemp("blobs"))
    assert [a.filename for a in parsed.attachments] == [filename]


@pytest.mark.parametrize(
    ("name", "codec"),
    [("ﾂァ.pdf", "cp932"), ("ﾃァ.pdf", "cp932"), ("café.pdf", "utf-8"), ("Müller.txt", "utf-8"), ("会議.pdf", "utf-8")],
)
def test_raw_names_valid_in_both_utf8_and_cp932_decode_as_written(tmp_path, name: str, codec: str) -> None:
    """Half-width katakana before a CP932 lead byte is also valid UTF-8
    (as a Latin or control character); European UTF-8 is also valid CP932."""
    raw = (
        b"From: a@example.jp\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n--b\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="' + name.encode(codec) + b'"\r\n\r\nx\r\n--b--\r\n'
    )
    assert [a.filename for a in parse_bytes(raw, tmp_path).attachments] == [name]


# -- the second round's classes --------------------------------------------------------

# U+3000 anywhere but at the ends: the sender's spacing, never folded.
spaced_text = st.builds(lambda left, right: f"{left}\u3000{right}", japanese_text, japanese_text).filter(
    lambda t: len(t) <= 81
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=spaced_text, route=st.sampled_from(ROUTES), cut=st.integers(min_value=1, max_value=80))
def test_an_ideographic_space_survives_every_route_in_subject_and_name(
    tmp_path_factory, text: str, route: str, cut: int
) -> None:
    raw = (
        f"From: {_subject(text, route, cut)} <a@example.jp>\r\nSubject: {_subject(text, route, cut)}\r\n\r\nx\r\n"
    ).encode()
    parsed = parse_bytes(raw, tmp_path_factory.mktemp("blobs"))
    assert parsed.subject == text
    assert parsed.from_name == text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=labelled_enough, codec=st.sampled_from(["shift_jis", "utf-8"]))
def test_raw_bytes_inside_an_encoded_word_decode_in_its_declared_charset(
    tmp_path_factory, text: str, codec: str
) -> None:
    data = text.encode("cp932" if codec == "shift_jis" else "utf-8")
    # Raw bytes are the sender's mistake; they are readable only where they
    # are not Q's own syntax (CP932's 0x5F trail byte reads as "_", a space).
    assume(not {ord("_"), ord("="), ord("?")} & set(data))
    data = data.replace(b" ", b"_")
    raw = b"From: a@example.jp\r\nSubject: =?" + codec.encode() + b"?Q?" + data + b"?=\r\n\r\nx\r\n"
    parsed = parse_bytes(raw, tmp_path_factory.mktemp("blobs"))
    assert parsed.subject == text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=japanese_text, spaces=st.sampled_from([" ", "\t", "  "]))
def test_a_header_with_white_space_before_its_colon_is_a_header(tmp_path_factory, text: str, spaces: str) -> None:
    raw = (
        f"From: a@example.jp\r\nSubject{spaces}: {corpus.b_word(text.encode(), 'UTF-8')}\r\nX-After: yes\r\n"
        "Content-Type: text/plain; charset=UTF-8\r\n\r\n"
    ).encode() + "本文\r\n".encode()
    parsed = parse_bytes(raw, tmp_path_factory.mktemp("blobs"))
    assert parsed.subject == text
    assert parsed.text_body.strip() == "本文"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=japanese_text)
def test_a_multipart_whose_boundary_never_appears_keeps_its_text_and_lists_no_part(tmp_path_factory, text: str) -> None:
    raw = (
        b'From: a@example.jp\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="gone"\r\n'
        b"\r\n" + text.encode("utf-8") + b"\r\n"
    )
    parsed = parse_bytes(raw, tmp_path_factory.mktemp("blobs"))
    assert text in parsed.text_body
    assert parsed.attachments == []
