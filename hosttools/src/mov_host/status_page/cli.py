"""mov-status-page: the platform's public status page, a static index.html and status.json.

Reads what the health checks already know: movctl's status (services, certificate, disk; run in-process), the
backup tool's status file and restore drill result, and, where InfluxDB runs, the last reading per site and, where
the infrastructure metrics are collected, how many readings the broker dropped in the last hours (a read-only token).
Writes both files atomically into the page directory nginx serves. Nothing secret goes on the page:
only service names, states, times, ages and results; never error texts, paths, tokens or internal addresses.
nginx keeps that page private (roles/nginx). With `public_page` set it also writes public.html and public.json:
counts only (the state, services up, sites reporting or silent, readings dropped, checks needing attention), never a
site's name, for nginx's public mode.

    mov-status-page [--config /etc/mov/status-page.json] [--out DIR]
    mov-status-page --from-json inputs.json --out DIR      # fixed inputs (tests): no host needed

The configuration is written by the Ansible role `status_page`. Exit 0 when the page was written (whatever the
platform's state), 1 when it could not be.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mov_host.status_page.collect import gather
from mov_host.status_page.config import DEFAULT_CONFIG, load_config
from mov_host.status_page.page import build_page, public_page
from mov_host.status_page.render import render_html, render_json, render_public_json, write_atomically

# The page's files, under the page directory (roles/nginx serves them; the public ones only in public mode).
STATUS_JSON = "status.json"
INDEX_HTML = "index.html"
PUBLIC_JSON = "public.json"
PUBLIC_HTML = "public.html"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mov-status-page", description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--config", help=f"configuration file (default {DEFAULT_CONFIG} when it exists)")
    parser.add_argument("--out", help="the page directory (default: the configuration's out_dir)")
    parser.add_argument(
        "--from-json",
        metavar="FILE",
        help="read the inputs (now, movctl, backup, drill, backup_last_ok, readings, dropped) from FILE, not the host",
    )
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        config_path = args.config or (DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else None)
        cfg = load_config(config_path)
        inputs: Mapping[str, Any]
        if args.from_json:
            inputs = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
            if not isinstance(inputs, dict):
                raise ValueError(f"{args.from_json}: not a JSON object")
        else:
            inputs = gather(cfg)
        page = build_page(cfg, inputs)
        out = Path(args.out or cfg.out_dir)
        write_atomically(out / STATUS_JSON, render_json(page))
        write_atomically(out / INDEX_HTML, render_html(page))
        if cfg.public_page:
            public = public_page(page)
            write_atomically(out / PUBLIC_JSON, render_public_json(public))
            write_atomically(out / PUBLIC_HTML, render_html(public))
    except (OSError, ValueError, TypeError) as exc:
        print(f"mov-status-page: {exc}", file=sys.stderr)
        return 1
    print(f"mov-status-page: {page.state}, written to {out}")
    return 0
