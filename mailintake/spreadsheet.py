"""CSV for people who open it in Excel: one writer for every export.

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is a formula to a spreadsheet (``=HYPERLINK(…)`` in a mail's subject
or a typed user name would run on the administrator's machine), so such a
cell is written as text, with a leading apostrophe (OWASP's advice).
Full-width ＝＋－＠ count too: Excel's Japanese input converts them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


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
