"""Fixtures shared by the Molecule scenarios' testinfra suites."""

from __future__ import annotations

import pytest

BUSYBOX_IMAGE = "mov-test/busybox:1"


@pytest.fixture(scope="module")
def busybox_image(host) -> str:  # type: ignore[no-untyped-def]
    """A tiny image for the box's own Docker, made from Debian's static busybox (no registry)."""
    if host.run(f"docker image inspect {BUSYBOX_IMAGE}").rc != 0:
        host.check_output("DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static")
        host.check_output(
            "set -e; d=$(mktemp -d); mkdir -p $d/bin $d/tmp $d/www; cp /bin/busybox $d/bin/busybox; "
            "for a in sh echo sleep nc httpd cat ls; do ln -s busybox $d/bin/$a; done; "
            f"echo canary > $d/www/index.html; tar -C $d -c . | docker import - {BUSYBOX_IMAGE}; rm -rf $d"
        )
    return BUSYBOX_IMAGE
