"""The page's files: index.html and status.json (and the public page's), each written atomically."""

from __future__ import annotations

import html
import json
import os
import tempfile
from pathlib import Path

from mov_host.status_page.page import Page
from mov_host.status_page.sections import LEVELS

CSS = """
body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2125; }
main { max-width: 960px; margin: 0 auto; padding: 0 16px 32px; }
.banner { padding: 28px 24px; color: #fff; font-size: 28px; font-weight: 700; }
.banner.ok { background: #1f883d; }
.banner.degraded { background: #d4a72c; color: #1d2125; }
.banner.down { background: #cf222e; }
.meta { color: #57606a; margin: 12px 0 20px; }
section { background: #fff; border-radius: 6px; padding: 12px 16px; margin-bottom: 14px;
          box-shadow: 0 1px 2px rgba(0,0,0,.1); }
h2 { font-size: 18px; margin: 4px 0 8px; }
table { border-collapse: collapse; width: 100%; }
td { padding: 4px 8px; border-top: 1px solid #eaecef; }
td.label { width: 40%; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 8px; }
.dot.ok { background: #1f883d; } .dot.warn { background: #d4a72c; }
.dot.bad { background: #cf222e; } .dot.unknown { background: #8c959f; }
.note { color: #57606a; font-style: italic; margin: 6px 0; }
"""


BANNER_TEXT = {
    "ok": "All systems operational",
    "degraded": "Degraded: something needs attention",
    "down": "Down: the platform is not working",
}


def render_html(page: Page) -> str:
    esc = html.escape
    title = page.title + (f" ({page.env})" if page.env else "")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta http-equiv="refresh" content="60">',
        f"<title>{esc(title)}: {esc(page.state)}</title>",
        f"<style>{CSS}</style></head><body>",
        f'<div class="banner {esc(page.state)}" id="state" data-state="{esc(page.state)}">'
        f"{esc(BANNER_TEXT[page.state])}</div>",
        "<main>",
        f'<p class="meta">{esc(title)} &middot; generated at '
        f'<time datetime="{esc(page.generated_at.isoformat(timespec="seconds"))}">'
        f"{esc(page.generated_at.strftime('%Y-%m-%d %H:%M:%S'))} UTC</time>, every minute</p>",
    ]
    for section in page.sections:
        parts.append(f"<section><h2>{esc(section.title)}</h2>")
        if section.note:
            parts.append(f'<p class="note">{esc(section.note)}</p>')
        if section.full_page_link:
            parts.append(
                '<p class="note">Details for operators: <a href="index.html">the full page</a> (sign-in required).</p>'
            )
        if section.rows:
            parts.append("<table>")
            for row in section.rows:
                level = row.level if row.level in LEVELS else "unknown"
                parts.append(
                    f'<tr class="{level}"><td class="label"><span class="dot {level}"></span>'
                    f"{esc(row.label)}</td><td>{esc(row.value)}</td></tr>"
                )
            parts.append("</table>")
        parts.append("</section>")
    parts += ["</main></body></html>", ""]
    return "\n".join(parts)


def render_json(page: Page) -> str:
    doc = {
        "state": page.state,
        "env": page.env,
        "generated_at": page.generated_at.isoformat(timespec="seconds"),
        "sections": [
            {
                "title": s.title,
                "note": s.note,
                "rows": [{"label": r.label, "value": r.value, "level": r.level} for r in s.rows],
            }
            for s in page.sections
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def render_public_json(page: Page) -> str:
    doc = {"state": page.state, "generated_at": page.generated_at.isoformat(timespec="seconds"), **page.counts}
    return json.dumps(doc, indent=2) + "\n"


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
