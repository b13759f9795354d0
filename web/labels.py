"""What the screens call things: the words a clerk reads instead of a MIME
type (which stays in a tooltip), sizes, dates, and the template filters
that put them on every page."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.templating import Jinja2Templates

from .. import jpdates
from ..mail.filenames import display_name
from ..people.accounts import ROLE_LABELS
from ..records.book import handoff_label
from ..records.inbox import STATUS_LABELS

# By MIME type, then by the file name's extension.
_BY_TYPE = {
    "application/pdf": "PDF",
    "application/msword": "Word",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "Word",
    "application/vnd.ms-excel": "Excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "Excel",
    "application/vnd.ms-powerpoint": "PowerPoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "PowerPoint",
    "application/zip": "ZIP 圧縮ファイル",
    "application/x-zip-compressed": "ZIP 圧縮ファイル",
    "application/ms-tnef": "Outlook の添付（winmail.dat）",
    "application/ics": "予定表",
    "text/calendar": "予定表",
    "text/plain": "テキスト",
    "text/csv": "CSV",
    "text/html": "HTML 文書",
    "message/rfc822": "転送されたメール",
    "message/partial": "分割されたメールの一部",
    "application/pkcs7-mime": "S/MIME（暗号・署名）",
    "application/x-pkcs7-mime": "S/MIME（暗号・署名）",
    "application/pkcs7-signature": "電子署名",
    "application/x-pkcs7-signature": "電子署名",
}
_BY_EXTENSION = {
    "pdf": "PDF",
    "doc": "Word",
    "docx": "Word",
    "xls": "Excel",
    "xlsx": "Excel",
    "ppt": "PowerPoint",
    "pptx": "PowerPoint",
    "jtd": "一太郎",
    "zip": "ZIP 圧縮ファイル",
    "csv": "CSV",
    "txt": "テキスト",
    "ics": "予定表",
    "eml": "転送されたメール",
}


def file_kind(attachment: Any) -> str:
    """「PDF」「Word」「Excel」「画像」…: what a clerk calls the file."""
    content_type = (getattr(attachment, "content_type", "") or "").lower()
    if content_type in _BY_TYPE:
        return _BY_TYPE[content_type]
    if content_type.startswith("image/"):
        return "画像"
    if content_type.startswith(("audio/", "video/")):
        return "音声・動画"
    extension = (getattr(attachment, "filename", "") or "").rpartition(".")[2].lower()
    return _BY_EXTENSION.get(extension, "ファイル")


def filesize(value: int) -> str:
    size = float(value)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" or size >= 10 else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def install_filters(templates: Jinja2Templates) -> None:
    env = templates.env
    env.filters["wareki"] = jpdates.wareki
    env.filters["wareki_datetime"] = jpdates.wareki_datetime
    env.filters["list_datetime"] = jpdates.list_datetime
    env.filters["jst_date"] = jpdates.jst_date
    env.filters["jst_seconds"] = lambda moment: jpdates.to_jst(moment).strftime("%Y-%m-%d %H:%M:%S")
    env.filters["filesize"] = filesize
    env.filters["iso_wareki"] = lambda value: (
        jpdates.wareki_datetime(dt.datetime.fromisoformat(value)) if value else "-"
    )
    env.filters["display_name"] = display_name
    env.filters["file_kind"] = file_kind
    env.globals["STATUS_LABELS"] = STATUS_LABELS
    env.globals["ROLE_LABELS"] = ROLE_LABELS
    # Defaults for pages rendered without a session (sign-in, errors).
    env.globals.update(user=None, csrf_token="", notice=None)
    env.globals["wareki_fiscal_year"] = jpdates.wareki_fiscal_year
    env.globals["today_jst"] = lambda: dt.datetime.now(jpdates.JST).date()
    env.filters["handoff_label"] = handoff_label
