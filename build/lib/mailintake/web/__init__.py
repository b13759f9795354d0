"""Templates and static assets of the web UI, shipped inside the package as
``mailintake.web``."""

from pathlib import Path

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
