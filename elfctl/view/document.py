"""The shell every viewer page shares: one self-contained HTML file (inline CSS and script, system fonts, no
network), and safe embedding of text and JSON data in it."""

from __future__ import annotations

import html
import json
from typing import Any

# System font stacks only: a page must render the same offline, with nothing fetched.
BASE_CSS = """
:root { --fg: #1b1b1b; --muted: #5a5a5a; --line: #d0d0d0; --bg: #ffffff; --panel: #fafafa;
        --chg-bg: #ffd9a0; --chg-line: #b35900; --pin-bg: #d4e8f7; --pin-line: #0b5c99; --mask-bg: #ececec; }
* { box-sizing: border-box; }
body { margin: 0; padding: 16px 20px 32px; color: var(--fg); background: var(--bg);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", "Liberation Sans", sans-serif; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 24px 0 8px; } h3 { font-size: 15px; margin: 16px 0 6px; }
.sub { color: var(--muted); margin: 0 0 12px; }
pre, code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace;
                   font-size: 13px; }
pre { background: var(--panel); border: 1px solid var(--line); padding: 8px 10px; overflow-x: auto;
      white-space: pre-wrap; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--panel); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.note { color: var(--muted); font-style: italic; }
img.plot { max-width: 100%; border: 1px solid var(--line); margin: 4px 8px 8px 0; }
details > summary { cursor: pointer; color: var(--muted); }
"""


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def json_script(element_id: str, data: Any) -> str:
    """Data for the page's script as a JSON ``<script>`` block; ``<`` is escaped so no text can close it."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return f'<script type="application/json" id="{esc(element_id)}">{body}</script>'


def page(title: str, body: str, *, css: str = "", script: str = "") -> str:
    """A whole HTML document: inline style and script, nothing loaded from anywhere."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>{BASE_CSS}{css}</style>\n</head>\n<body>\n{body}\n"
            + (f"<script>\n{script}\n</script>\n" if script else "") + "</body>\n</html>\n")
