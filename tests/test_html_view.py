"""HTML mail is shown sanitised, in its own document under a strict CSP,
with remote images held back and cid: images served from the attachments."""

from __future__ import annotations

from mailintake.mail import html as html_view
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


ORIGIN = "https://mailintake.city.example.jp"


class TestStyles:
    def test_styles_keep_their_looks_and_lose_everything_that_loads(self) -> None:
        hostile = (
            "<p style=\"color:red; background-image:url('/messages/2/original.eml'); font-weight:bold\">a</p>"
            '<p style="background: url(/book.csv)">b</p>'
            '<p style="color: red; border-image: url(x) 30">c</p>'
            "<p style=\"font-family: 'a\\29 url'\">d</p>"
            '<p style="width: expression(alert(1)); list-style-image: url(/x)">e</p>'
            "<p style=\"content: image-set('/book.csv' 1x)\">f</p>"
        )
        body = html_view.sanitize(hostile, 5, []).body.lower()
        for banned in ("url(", "image-set", "expression", "background:", "border-image", "list-style-image", "\\"):
            assert banned not in body, banned
        assert 'style="color:red;font-weight:bold"' in body
        assert body.count("color:red") == 2


class TestPolicy:
    def test_the_document_may_load_only_its_own_inline_images(self) -> None:
        safe = html_view.sanitize(HOSTILE, 5, [logo()])
        policy = html_view.content_security_policy(allow_remote=False, origin=ORIGIN, safe=safe)
        assert "script-src 'none'" in policy
        assert f"img-src data: {ORIGIN}/messages/5/attachments/7/preview;" in policy
        assert "'self'" not in policy.split("img-src", 1)[1].split(";", 1)[0]
        assert "sandbox" in policy and "allow-scripts" not in policy

    def test_remote_images_load_only_when_asked(self) -> None:
        safe = html_view.sanitize(HOSTILE, 5, [])
        assert "https:" in html_view.content_security_policy(allow_remote=True, origin=ORIGIN, safe=safe)
        policy = html_view.content_security_policy(allow_remote=False, origin=ORIGIN, safe=safe)
        assert "https:" not in policy and "img-src data:;" in policy
