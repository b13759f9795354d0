"""CSV for people who open it in Excel: one writer for every export.

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is a formula to a spreadsheet (``=HYPERLINK(…)`` in a mail's subject
or a typed user name would run on the administrator's machine), so such a
cell is written as text, with a leading apostrophe (OWASP's advice).
Full-width ＝＋－＠ count too: Excel's Japanese input converts them.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import BadRequest
from ..mail import charsets

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")
ENCODINGS = ("utf-8", "cp932")


def text_cell(value: Any) -> Any:
    """``value`` as a cell no spreadsheet evaluates; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([text_cell(value) for value in row])
    return buffer.getvalue()


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]], encoding: str) -> bytes:
    """UTF-8 with BOM (Excel then opens it as UTF-8) or CP932 for older
    Excel; a character CP932 lacks becomes 〓, as in 外字 practice."""
    if encoding not in ENCODINGS:
        raise BadRequest("文字コードは utf-8 か cp932 を指定してください")
    text = csv_text(header, rows)
    if encoding == "cp932":
        return charsets.normalize(text).encode("cp932", errors=_GETA)
    return text.encode("utf-8-sig")


def _replace_with_geta(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeEncodeError)
    return "〓" * (error.end - error.start), error.end


_GETA = "mailintake.replace_with_geta"
codecs.register_error(_GETA, _replace_with_geta)
