"""The HTTP edge, shipped as ``mailintake.web``: the ASGI application
(``app``), the clerks' pages (``ui``), the administrators' pages
(``admin_ui``), the JSON API (``api``) and its OpenAPI document
(``openapi``), with their templates and static files beside them."""

from pathlib import Path

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
