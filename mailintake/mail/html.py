"""HTML mail, made safe to look at.

Three layers, each enough on its own against script: the body is
sanitised with nh3 (no script, no event handlers, no forms, no frames);
it is served as its own document under a CSP with ``script-src 'none'``
and ``sandbox``; and the page shows it in an ``<iframe sandbox>`` without
``allow-scripts``. Remote images and CSS backgrounds are left out by the
CSP until the clerk asks for them (a web bug tells the sender the mail was
read); ``cid:`` images come from the stored attachments.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import nh3

from ..models import Attachment

INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
PREVIEW_TYPES = INLINE_IMAGE_TYPES | {"application/pdf"}

_TAGS = set(nh3.ALLOWED_TAGS) | {"font", "center"}
_ATTRIBUTES = copy.deepcopy(nh3.ALLOWED_ATTRIBUTES)
_ATTRIBUTES.setdefault("*", set()).update({"style", "align", "valign", "width", "height", "bgcolor", "dir", "title"})
_ATTRIBUTES.setdefault("font", set()).update({"color", "size", "face"})
for _table_tag in ("table", "td", "th", "tr"):
    _ATTRIBUTES.setdefault(_table_tag, set()).update({"border", "cellpadding", "cellspacing", "colspan", "rowspan"})
_ATTRIBUTES["img"] = {"src", "alt", "width", "height", "border"}


# CSS a mail may keep: how text and boxes look. Nothing that loads anything
# (background-image, list-style-image, border-image, content, cursor…).
STYLE_PROPERTIES = frozenset(
    {
        "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
        "font-variant", "line-height", "letter-spacing", "word-spacing", "text-align", "text-decoration",
        "text-indent", "text-transform", "vertical-align", "white-space", "word-break", "overflow-wrap",
        "direction", "width", "height", "max-width", "min-width", "max-height", "min-height", "margin",
        "margin-top", "margin-right", "margin-bottom", "margin-left", "padding", "padding-top",
        "padding-right", "padding-bottom", "padding-left", "border", "border-top", "border-right",
        "border-bottom", "border-left", "border-color", "border-style", "border-width", "border-radius",
        "border-collapse", "border-spacing", "table-layout", "display", "float", "clear", "list-style-type",
    }
)  # fmt: skip
# Anything that can fetch, or hide a fetch behind an escape or a comment.
_STYLE_FORBIDDEN = ("url(", "image(", "image-set(", "cross-fade(", "element(", "@import", "expression(", "\\", "/*")


def filter_style(value: str) -> str | None:
    """The declarations of a ``style`` attribute that only change looks."""
    kept = []
    for declaration in value.split(";"):
        name, sep, css = declaration.partition(":")
        name = name.strip().lower()
        if not sep or name not in STYLE_PROPERTIES:
            continue
        lowered = css.lower()
        if any(marker in lowered for marker in _STYLE_FORBIDDEN):
            continue
        kept.append(f"{name}:{css.strip()}")
    return ";".join(kept) or None


@dataclass(frozen=True)
class SafeHtml:
    body: str
    remote_images: int  # remote references in img src (not loaded unless allowed)
    # The only same-origin URLs the body may load: its inline images' previews.
    inline_paths: tuple[str, ...] = ()


def sanitize(html: str, message_id: int, attachments: Sequence[Attachment]) -> SafeHtml:
    by_cid = {
        a.content_id.strip("<> ").lower(): a
        for a in attachments
        if a.content_id and a.content_type.lower() in INLINE_IMAGE_TYPES
    }
    remote = 0
    inline: list[str] = []

    def rewrite(tag: str, attribute: str, value: str) -> str | None:
        nonlocal remote
        if attribute == "style":
            return filter_style(value)
        if tag != "img" or attribute != "src":
            return value
        lowered = value.strip().lower()
        if lowered.startswith("cid:"):
            attachment = by_cid.get(lowered[4:].strip("<> "))
            if attachment is None:
                return None
            inline.append(f"/messages/{message_id}/attachments/{attachment.id}/preview")
            return inline[-1]
        if lowered.startswith(("http:", "https:", "//")):
            remote += 1
            return value
        return None  # relative: would point into this application

    body = nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        attribute_filter=rewrite,
        url_schemes={"http", "https", "mailto", "cid"},
        strip_comments=True,
        link_rel="noopener noreferrer",
    )
    return SafeHtml(body, remote, tuple(dict.fromkeys(inline)))


def document(safe: SafeHtml) -> str:
    """The iframe's document."""
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer">'
        "<style>body{font-family:sans-serif;margin:8px;overflow-wrap:anywhere}img{max-width:100%}</style>"
        f"</head><body>{safe.body}</body></html>"
    )


def content_security_policy(allow_remote: bool, origin: str, safe: SafeHtml) -> str:
    # Not 'self': that would let the body load any page of this application
    # (downloads, the 収受簿 CSV) with the clerk's cookie. Only its own
    # inline images, each by its full URL.
    own = " ".join(origin + path for path in safe.inline_paths)
    images = "data:" + (f" {own}" if own else "") + (" https: http:" if allow_remote else "")
    return (
        f"default-src 'none'; script-src 'none'; style-src 'unsafe-inline'; img-src {images}; "
        "font-src 'none'; form-action 'none'; base-uri 'none'; frame-ancestors 'self'; "
        # Same origin only so that cid: images are fetched with the session
        # cookie; without allow-scripts that grants the document nothing.
        "sandbox allow-same-origin"
    )
