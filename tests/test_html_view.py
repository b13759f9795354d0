"""HTML mail is shown sanitised, in its own document under a strict CSP,
with remote images held back and cid: images served from the attachments."""

from __future__ import annotations

from mailintake import html_view
from mailintake.models import Attachment

HOSTILE = """
<html><head><script>document.title='pwned'</script><link rel=stylesheet href="http://evil.example/x.css"></head>
<body onload="alert(1)">
<p style="color:red" onclick="alert(2)">請求書を送付します</p>
<a href="javascript:alert(3)">ここをクリック</a>
<a href="https://city.example.jp/">市のサイト</a>
<img src="http://tracker.example/pixel.gif?id=42">
<img src="cid:logo@example.jp" alt="ロゴ">
<img src="cid:unknown@example.jp">
<iframe src="https://evil.example/"></iframe>
<form action="https://evil.example/"><input name=pw></form>
<svg><script>alert(4)</script></svg>
<object data="x.swf"></object>
</body></html>
"""


def logo() -> Attachment:
    return Attachment(
        id=7,
        position=0,
        filename="logo.png",
        content_type="image/png",
        size=10,
        sha256="0" * 64,
        content_id="<logo@example.jp>",
    )


class TestSanitize:
    def test_script_handlers_forms_and_frames_are_removed(self) -> None:
        safe = html_view.sanitize(HOSTILE, 5, [logo()])
        lowered = safe.body.lower()
        for banned in (
            "<script",
            "onload",
            "onclick",
            "javascript:",
            "<iframe",
            "<form",
            "<input",
            "<object",
            "<svg",
            "<link",
        ):
            assert banned not in lowered, banned
        assert "請求書を送付します" in safe.body
        assert 'style="color:red"' in safe.body

    def test_cid_images_point_at_the_stored_attachment(self) -> None:
        safe = html_view.sanitize(HOSTILE, 5, [logo()])
        assert 'src="/messages/5/attachments/7/preview"' in safe.body
        assert "cid:unknown" not in safe.body

    def test_remote_images_are_counted_and_links_get_noreferrer(self) -> None:
        safe = html_view.sanitize(HOSTILE, 5, [logo()])
        assert safe.remote_images == 1
        assert 'href="https://city.example.jp/"' in safe.body
        assert "noreferrer" in safe.body


class TestPolicy:
    def test_the_document_policy_forbids_script_and_remote_images_by_default(self) -> None:
        policy = html_view.content_security_policy(allow_remote=False)
        assert "script-src 'none'" in policy
        assert "img-src 'self' data:;" in policy
        assert "sandbox" in policy and "allow-scripts" not in policy

    def test_remote_images_load_only_when_asked(self) -> None:
        assert "https:" in html_view.content_security_policy(allow_remote=True)
        assert "script-src 'none'" in html_view.content_security_policy(allow_remote=True)
