#!/usr/bin/env python3
"""Images for the compose stack, made on the controller: local builds and the offline bundle.

    python3 scripts/images.py bundle --out DIR --build mosquitto=mov/mosquitto:2.0.21 \\
        --build analytics=mov/analytics:0.1.0 [--dev analytics] [--pull telegraf:1.32.3 ...] \\
        [--base-image mov/box:trixie]

``--build`` images are built here: Mosquitto and HAProxy (the Docker API proxy) from Debian's packages
(images/mosquitto/, images/haproxy/), the analytics worker from analytics/ (analytics/build_image.py), all on
a local debootstrap-based base image, so no
registry is needed. A build is skipped while the image's ``org.mov.source-sha256`` label matches the hash
of its sources and base image. ``--dev SERVICE`` builds that service's development variant instead (the analytics
worker's ``dev`` target, for the local env's developer loop; give it a tag of its own). ``--pull`` images come
from a registry (a controller with access, for an air-gapped host). Then every image is written with
``docker save`` to DIR/images.tar, with DIR/SHA256SUMS and DIR/images.json (reference -> image id); an unchanged
set of image ids keeps the existing bundle untouched, so copying it again changes nothing. The last line on stdout
is a JSON summary.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LABEL = "org.mov.source-sha256"
# One build of a reference at a time on this controller (deploys of two envs at once, CI's parallel lanes): a second
# build of the same sources would give the reference another image id, and the first deploy's next run would find
# its bundle changed.
LOCK_DIR = REPO / ".cache" / "image-builds"
DEFAULT_BASE = os.environ.get("MOV_IMAGE_BASE", "mov/box:trixie")
# What each locally buildable service is made from; changes under these paths rebuild the image.
SOURCES: dict[str, tuple[Path, tuple[str, ...]]] = {
    "mosquitto": (REPO / "images" / "mosquitto", ("Dockerfile",)),
    "dockerproxy": (REPO / "images" / "haproxy", ("Dockerfile",)),
    "analytics": (
        REPO / "analytics",
        (
            "Dockerfile",
            ".dockerignore",
            "pyproject.toml",
            "requirements.lock",
            "requirements-loop.lock",
            "README.md",
            "example-config.yaml",
            "src",
            "build_image.py",
        ),
    ),
}
# Services with a development variant: its build target (analytics/Dockerfile's `dev`).
DEV_TARGETS = {"analytics": "dev"}
IGNORED_PARTS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


class ImageError(RuntimeError):
    pass


def docker(*args: str, capture: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=capture, text=True)
    if result.returncode != 0:
        raise ImageError(f"docker {' '.join(args[:3])} failed: {(result.stderr or '').strip()[-400:]}")
    return result.stdout.strip() if capture else ""


def image_id(ref: str) -> str | None:
    result = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def image_label(ref: str, label: str) -> str:
    result = subprocess.run(
        ["docker", "image", "inspect", "-f", f'{{{{index .Config.Labels "{label}"}}}}', ref],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def _files(root: Path, names: Iterable[str]) -> list[Path]:
    found: list[Path] = []
    for name in names:
        path = root / name
        if path.is_dir():
            found += [
                p
                for p in path.rglob("*")
                if p.is_file() and not IGNORED_PARTS.intersection(p.parts) and not p.name.endswith(".pyc")
            ]
        elif path.is_file():
            found.append(path)
    return sorted(found)


def source_hash(service: str, base_id: str, build_args: Sequence[str] = ()) -> str:
    root, names = SOURCES[service]
    digest = hashlib.sha256(f"{base_id}\n{' '.join(build_args)}\n".encode())
    for path in _files(root, names):
        digest.update(f"{path.relative_to(root)}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@contextmanager
def build_lock(ref: str) -> Iterator[None]:
    """Held while a reference is checked and built; another process building it waits, then finds it up to date."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOCK_DIR / (re.sub(r"[^\w.-]+", "_", ref) + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build(service: str, ref: str, base_image: str, dev: bool = False) -> bool:
    """Build one image (its development variant when dev) unless its sources are unchanged; True when it was built."""
    with build_lock(ref):
        return _build(service, ref, base_image, dev)


def _build(service: str, ref: str, base_image: str, dev: bool) -> bool:
    if service not in SOURCES:
        raise ImageError(f"no local build for {service!r} (buildable: {', '.join(sorted(SOURCES))})")
    if dev and service not in DEV_TARGETS:
        raise ImageError(f"no development variant of {service!r} (only: {', '.join(sorted(DEV_TARGETS))})")
    base_id = image_id(base_image)
    if base_id is None:
        raise ImageError(f"base image {base_image} is missing: python3 scripts/box.py build")
    tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else ""
    build_args = [f"MOSQUITTO_VERSION={tag.split('-', 1)[0]}"] if service == "mosquitto" else []
    target = DEV_TARGETS[service] if dev else "release"
    if dev:
        build_args.append(f"target={target}")
    if service == "mosquitto" and not tag:
        raise ImageError(f"{ref}: the tag must carry Mosquitto's version (e.g. mov/mosquitto:2.0.21)")
    wanted = source_hash(service, base_id, build_args)
    if image_label(ref, LABEL) == wanted:
        print(f"{ref}: up to date", file=sys.stderr)
        return False
    if service == "analytics":
        command = [
            sys.executable,
            str(REPO / "analytics" / "build_image.py"),
            "--tag",
            ref,
            "--target",
            target,
            "--base-image",
            base_image,
            "--label",
            f"{LABEL}={wanted}",
        ]
    else:
        command = [
            "docker",
            "build",
            "-t",
            ref,
            "--label",
            f"{LABEL}={wanted}",
            "--build-arg",
            f"BASE_IMAGE={base_image}",
            *(arg for a in build_args for arg in ("--build-arg", a)),
            str(SOURCES[service][0]),
        ]
    print("+", " ".join(command), file=sys.stderr, flush=True)
    # The build's own output goes to stderr: stdout carries only the summary.
    if subprocess.run(command, stdout=sys.stderr).returncode != 0:
        raise ImageError(f"building {ref} failed (see the build output above)")
    return True


def pull(ref: str) -> bool:
    if image_id(ref) is not None:
        return False
    print(f"+ docker pull {ref}", file=sys.stderr, flush=True)
    docker("pull", ref)
    return True


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def bundle(refs: Sequence[str], out: Path) -> bool:
    """Save refs into out/images.tar (+ SHA256SUMS, images.json); False when the bundle was already current."""
    ids = {}
    for ref in refs:
        found = image_id(ref)
        if found is None:
            raise ImageError(f"{ref} is not on this machine (build or pull it first)")
        ids[ref] = found
    out.mkdir(parents=True, exist_ok=True)
    tar, sums, manifest = out / "images.tar", out / "SHA256SUMS", out / "images.json"
    if manifest.exists() and tar.exists() and sums.exists():
        current = json.loads(manifest.read_text())
        if current == ids and sums.read_text().split()[0] == sha256_file(tar):
            return False
    partial = out / "images.tar.partial"
    docker("save", "-o", str(partial), *sorted(ids))
    partial.replace(tar)
    sums.write_text(f"{sha256_file(tar)}  images.tar\n")
    manifest.write_text(json.dumps(ids, indent=2, sort_keys=True) + "\n")
    return True


def _pairs(values: Sequence[str]) -> dict[str, str]:
    pairs = {}
    for value in values:
        service, sep, ref = value.partition("=")
        if not sep or not service or not ref:
            raise ImageError(f"--build {value!r}: expected SERVICE=IMAGE")
        pairs[service] = ref
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("build", "bundle"):
        p = sub.add_parser(name)
        p.add_argument("--build", action="append", default=[], metavar="SERVICE=IMAGE")
        p.add_argument("--dev", action="append", default=[], metavar="SERVICE", help="build its development variant")
        p.add_argument("--base-image", default=DEFAULT_BASE)
        if name == "bundle":
            p.add_argument("--pull", action="append", default=[], metavar="IMAGE")
            p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        builds = _pairs(args.build)
        unknown = sorted(set(args.dev) - set(builds))
        if unknown:
            raise ImageError(f"--dev {', '.join(unknown)}: not among the --build services")
        built = [
            ref for service, ref in builds.items() if build(service, ref, args.base_image, dev=service in args.dev)
        ]
        summary: dict[str, object] = {"built": built}
        if args.command == "bundle":
            pulled = [ref for ref in args.pull if pull(ref)]
            refs = [*builds.values(), *args.pull]
            summary |= {
                "pulled": pulled,
                "bundle_changed": bundle(refs, args.out),
                "images": json.loads((args.out / "images.json").read_text()),
            }
    except ImageError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
