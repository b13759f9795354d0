"""What the screens call things: one place for the words a clerk reads
instead of a MIME type (which stays in a tooltip)."""

from __future__ import annotations

from typing import Any

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
