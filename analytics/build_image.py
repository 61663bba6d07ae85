"""Build the worker image from a temporary context (analytics/ plus, optionally, a CA bundle for PyPI).

    python3 analytics/build_image.py [--tag mov/analytics:dev] [--target release|dev] [--base-image mov/box:trixie]
                                     [--ca-file FILE] [--label KEY=VALUE ...]

``--target dev`` builds the development variant (the local env's developer loop: the release image plus watchfiles
and debugpy from requirements-loop.lock); the default is the release image every env runs.

``--ca-file`` (or the PIP_CERT environment variable) names a CA bundle that the *build stage* needs to reach
PyPI through a TLS-inspecting proxy. It is copied into the temporary context only, never into the repository,
and never into the final image stage.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The Dockerfile's targets: always named, so a release build never runs the dev stages.
TARGETS = ("release", "dev")
CONTEXT_FILES = (
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "requirements.lock",
    "requirements-loop.lock",
    "README.md",
    "example-config.yaml",
    "src",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", default="mov/analytics:dev")
    parser.add_argument("--target", choices=TARGETS, default="release", help="the Dockerfile's target")
    parser.add_argument("--base-image", help="overrides the Dockerfile's BASE_IMAGE")
    parser.add_argument("--ca-file", default=os.environ.get("PIP_CERT", ""))
    parser.add_argument("--label", action="append", default=[], help="image label KEY=VALUE (repeatable)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mov-analytics-build-") as tmp:
        context = Path(tmp)
        for name in CONTEXT_FILES:
            source = HERE / name
            if source.is_dir():
                shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy2(source, context / name)
        if args.ca_file:
            (context / "build-ca").mkdir()
            shutil.copy2(args.ca_file, context / "build-ca" / "ca.crt")
        command = ["docker", "build", "--target", args.target, "-t", args.tag]
        for label in args.label:
            command += ["--label", label]
        if args.base_image:
            command += ["--build-arg", f"BASE_IMAGE={args.base_image}"]
        command.append(str(context))
        print("+", " ".join(command), file=sys.stderr)
        return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
