#!/usr/bin/env python3
"""The host tools' zipapp, built on the controller: hosttools/src/mov_host in one file the host's python3 runs.

    python3 scripts/host_tools.py build --out DIR/mov-host-tools.pyz
    python3 scripts/host_tools.py min-python

`build` writes the archive only when its bytes change, and prints a JSON line {"path", "sha256", "changed"}. The
archive is reproducible: entries sorted, every timestamp 1980-01-01, fixed permissions, sources only (no
__pycache__), so the same sources give the same bytes on any controller and a second deploy copies nothing.
`python -m zipapp` takes the files' modification times, which a fresh clone sets anew, hence this builder.
`min-python` prints the oldest Python the package supports (hosttools/pyproject.toml's requires-python), which
the host_tools role's preflight checks the host against.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "hosttools" / "src"
PYPROJECT = REPO / "hosttools" / "pyproject.toml"
EPOCH = (1980, 1, 1, 0, 0, 0)
# The archive's entry point: `python3 mov-host-tools.pyz <tool> ARGS`.
MAIN = b"import sys\nfrom mov_host.__main__ import main\nsys.exit(main())\n"


def sources() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".typed")
    )


def archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in [
            ("__main__.py", MAIN),
            *((p.relative_to(PACKAGE).as_posix(), p.read_bytes()) for p in sources()),
        ]:
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buffer.getvalue()


def build(out: Path) -> dict[str, object]:
    data = archive()
    changed = not out.is_file() or out.read_bytes() != data
    if changed:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        partial.write_bytes(data)
        partial.replace(out)
    return {"path": str(out), "sha256": hashlib.sha256(data).hexdigest(), "changed": changed}


def min_python() -> str:
    required = tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"]
    match = re.fullmatch(r">=\s*(\d+\.\d+)", required.strip())
    if not match:
        raise SystemExit(f"{PYPROJECT}: requires-python {required!r} is not of the form >=X.Y")
    return match.group(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build").add_argument("--out", type=Path, required=True)
    sub.add_parser("min-python")
    args = parser.parse_args(argv)
    if args.command == "build":
        print(json.dumps(build(args.out)))
    else:
        print(min_python())
    return 0


if __name__ == "__main__":
    sys.exit(main())
