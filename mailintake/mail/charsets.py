"""Bytes to text for Japanese mail as it really arrives.

- ISO-2022-JP is decoded the way Microsoft's CP50220/CP50221 do: JIS X 0208
  pairs are converted to Shift_JIS and decoded as CP932, so the NEC special
  characters (①, ㈱) and NEC-selected IBM extensions (髙, 﨑) that Windows
  clients put in "ISO-2022-JP" mail come out right; JIS X 0201 katakana
  (``ESC ( I`` and SO/SI) become half-width katakana. Python's iso2022_jp
  codecs reject all of these.
- Every Shift_JIS label seen in the wild means CP932.
- A wrong or missing label is not trusted blindly: the bytes decide
  (escape sequences, valid UTF-8, then CP932 or EUC-JP, scored).
- One normalisation maps characters that differ only by conversion route
  (〜/～, −/－, ‖/∥, ¢/￠, £/￡, ¬/￢, —/―) to the CP932 forms that Windows
  clients show, so the same text always looks and searches the same.
"""

from __future__ import annotations

import codecs

# Labels whose bytes are CP932 in practice.
_CP932_LABELS = {
    "shift_jis",
    "shift-jis",
    "sjis",
    "s-jis",
    "x-sjis",
    "ms_kanji",
    "ms-kanji",
    "csshiftjis",
    "windows-31j",
    "cp932",
    "ms932",
    "x-ms-cp932",
    "ibm-943",
    "shift_jisx0213",
}
_ISO2022JP_LABELS = {
    "iso-2022-jp",
    "iso2022jp",
    "csiso2022jp",
    "iso-2022-jp-ms",
    "cp50220",
    "cp50221",
    "cp50222",
    "jis",
    "x-jis",
}
_EUCJP_LABELS = {"euc-jp", "eucjp", "x-euc-jp", "cseucpkdfmtjapanese", "ujis", "euc-jp-ms", "eucjp-ms", "eucjpms"}

_ROUTE_FORMS = str.maketrans(
    {
        "\u301c": "\uff5e",  # WAVE DASH → FULLWIDTH TILDE
        "\u2212": "\uff0d",  # MINUS SIGN → FULLWIDTH HYPHEN-MINUS
        "\u2016": "\u2225",  # DOUBLE VERTICAL LINE → PARALLEL TO
        "\u00a2": "\uffe0",  # CENT SIGN → FULLWIDTH CENT SIGN
        "\u00a3": "\uffe1",  # POUND SIGN → FULLWIDTH POUND SIGN
        "\u00ac": "\uffe2",  # NOT SIGN → FULLWIDTH NOT SIGN
        "\u2014": "\u2015",  # EM DASH → HORIZONTAL BAR
    }
)

ESC = 0x1B


class Undecodable(ValueError):
    pass


def normalize(text: str) -> str:
    """The one form stored and searched (see module docstring)."""
    return text.translate(_ROUTE_FORMS)


def decode(data: bytes, label: str | None, problems: list[str] | None = None) -> str:
    """Decode ``data`` labelled ``label`` (may be None or wrong); never
    raises; records a problem only when bytes could not be decoded."""
    if not data:
        return ""
    kind = _kind(label)
    for codec in _candidates(data, kind):
        try:
            return normalize(_decode_with(data, codec))
        except (UnicodeDecodeError, Undecodable, LookupError):
            continue
    guess = guess_decode(data)
    if guess is not None:
        return normalize(guess)
    if problems is not None:
        note = f"文字コード {label or '不明'} として解読できないバイトがありました"
        if note not in problems:
            problems.append(note)
    return normalize(data.decode("cp932" if kind != "utf-8" else "utf-8", errors="replace"))


def _kind(label: str | None) -> str | None:
    if not label:
        return None
    name = label.strip().strip('"').lower()
    if name in _CP932_LABELS:
        return "cp932"
    if name in _ISO2022JP_LABELS or name.startswith("iso-2022-jp"):
        return "iso-2022-jp" if name in _ISO2022JP_LABELS else name
    if name in _EUCJP_LABELS:
        return "euc-jp"
    if name in ("us-ascii", "ascii", "ansi_x3.4-1968"):
        return "us-ascii"
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None  # unknown label: let the bytes decide


def _candidates(data: bytes, kind: str | None) -> list[str]:
    has_escape = b"\x1b$" in data or b"\x1b(" in data
    eight_bit = any(b >= 0x80 for b in data)
    order: list[str] = []
    if kind in ("iso-2022-jp", "us-ascii", None) and has_escape:
        order.append("iso-2022-jp")
    if kind == "us-ascii" or (kind == "iso-2022-jp" and eight_bit):
        # 8-bit bytes under a 7-bit label: usually UTF-8 or CP932 mislabelled.
        order += ["utf-8", "cp932"]
    elif kind is not None:
        order.append(kind)
    if not eight_bit and not has_escape:
        order.append("ascii")
    return order


def _decode_with(data: bytes, codec: str) -> str:
    if codec == "iso-2022-jp":
        return decode_iso2022jp(data)
    if codec.startswith("iso-2022-jp") or codec.startswith("iso2022_jp"):
        try:
            return decode_iso2022jp(data)
        except Undecodable:
            return data.decode("iso2022_jp_2")
    if codec in ("utf-8", "utf_8"):
        return _plausible_utf8(data)
    if codec in ("euc-jp", "euc_jp"):
        try:
            return data.decode("euc_jp")
        except UnicodeDecodeError:
            return data.decode("euc_jis_2004")
    return data.decode(codec)


def guess_decode(data: bytes) -> str | None:
    """Charset detection for unlabelled or mislabelled Japanese text: the
    strict decodings that succeed, best-scored first."""
    if b"\x1b$" in data or b"\x1b(" in data:
        try:
            return decode_iso2022jp(data)
        except Undecodable:
            pass
    try:
        utf8 = _plausible_utf8(data)
    except (UnicodeDecodeError, Undecodable):
        pass
    else:
        # CP932 bytes can also be valid UTF-8: as 2-byte Latin characters
        # (half-width katakana before a lead byte), or as Hangul (a CP932
        # lead byte E0-EF before two trail bytes): a UTF-8 reading with other
        # characters beyond U+0800 is certain; otherwise the likelier of the two.
        if any(ord(ch) >= 0x800 for ch in utf8) and not any(_hangul(ch) for ch in utf8):
            return utf8
        try:
            cp932 = data.decode("cp932")
        except UnicodeDecodeError:
            return utf8
        return cp932 if _japanese_score(cp932) > _japanese_score(utf8) else utf8
    results: list[tuple[float, str]] = []
    for codec in ("cp932", "euc_jp", "euc_jis_2004"):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        results.append((_japanese_score(text), text))
    if not results:
        return None
    return max(results, key=lambda r: r[0])[1]


def _plausible_utf8(data: bytes) -> str:
    """UTF-8 that reads as text: CP932 bytes such as ``C2 83`` (ﾂ plus the
    lead byte of ァ) are valid UTF-8 only as C1 control characters, which no
    real text contains."""
    text = data.decode("utf-8")
    if any("\x80" <= ch <= "\x9f" for ch in text):
        raise Undecodable("UTF-8 decoding yields C1 control characters")
    return text


def _hangul(ch: str) -> bool:
    code = ord(ch)
    return 0xAC00 <= code <= 0xD7FF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F or 0xA960 <= code <= 0xA97F


def _japanese_score(text: str) -> float:
    """Share of characters typical of Japanese prose (kana, common kanji,
    Japanese punctuation); half-width katakana counts less, since a wrong
    guess often produces it."""
    if not text:
        return 0.0
    good = 0.0
    for ch in text:
        code = ord(ch)
        if 0x3040 <= code <= 0x30FF or 0x4E00 <= code <= 0x9FFF or 0x3000 <= code <= 0x303F or code < 0x80:
            good += 1
        elif 0xFF61 <= code <= 0xFF9F:
            good += 0.3
    return good / len(text)


# -- ISO-2022-JP the Microsoft way ------------------------------------------------

_ASCII, _JISX0208, _KATAKANA, _UNSUPPORTED = range(4)
_ESCAPES = {
    b"\x1b(B": _ASCII,
    b"\x1b(J": _ASCII,  # JIS X 0201 Roman: ¥ and ‾ differ, kept as ASCII as Windows does
    b"\x1b(I": _KATAKANA,
    b"\x1b$@": _JISX0208,
    b"\x1b$B": _JISX0208,
    b"\x1b&@\x1b$B": _JISX0208,
}


def decode_iso2022jp(data: bytes) -> str:
    """ISO-2022-JP with CP932 extensions (CP50220/CP50221 behaviour)."""
    out: list[str] = []
    state = _ASCII
    shifted = False  # SO/SI katakana (CP50222)
    pending = bytearray()
    i = 0
    n = len(data)

    def flush() -> None:
        if pending:
            out.append(bytes(pending).decode("cp932"))
            pending.clear()

    while i < n:
        byte = data[i]
        if byte == ESC:
            for seq, new_state in _ESCAPES.items():
                if data.startswith(seq, i):
                    flush()
                    state = new_state
                    i += len(seq)
                    break
            else:
                raise Undecodable("escape sequence outside ISO-2022-JP")
            continue
        if byte in (0x0E, 0x0F):  # SO / SI
            flush()
            shifted = byte == 0x0E
            i += 1
            continue
        if byte >= 0x80:
            raise Undecodable("8-bit byte in ISO-2022-JP")
        if byte in (0x0A, 0x0D):
            flush()
            out.append(chr(byte))
            i += 1
            continue
        if shifted or state == _KATAKANA:
            if 0x21 <= byte <= 0x5F:
                pending.append(byte + 0x80)
            else:
                flush()
                out.append(chr(byte))
            i += 1
            continue
        if state == _JISX0208:
            if i + 1 >= n or not (0x21 <= byte <= 0x7E and 0x21 <= data[i + 1] <= 0x7E):
                raise Undecodable("truncated or invalid JIS X 0208 pair")
            pending += _jis_to_sjis(byte, data[i + 1])
            i += 2
            continue
        flush()
        out.append(chr(byte))
        i += 1
    flush()
    return "".join(out)


def _jis_to_sjis(j1: int, j2: int) -> bytes:
    s1 = (j1 + 1) // 2 + (0x70 if j1 <= 0x5E else 0xB0)
    if j1 % 2:
        s2 = j2 + (0x1F if j2 <= 0x5F else 0x20)
    else:
        s2 = j2 + 0x7E
    return bytes((s1, s2))
