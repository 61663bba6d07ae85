"""Serves the InfluxDB v2 write TEST DOUBLE (analytics/tests/influx_write_double.py), not InfluxDB.

The stack scenario runs without InfluxDB (no image here); this stands in for its write endpoint on the
compose network (alias `influxdb`), so the analytics worker's writes succeed and every point it writes is
printed as one JSON line on stdout (`docker logs`). It stops by itself after the given lifetime.

    python3 influx_double_server.py TOKEN BUCKET LIFETIME_S
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from influx_write_double import InfluxWriteDouble


def main() -> None:
    token, bucket, lifetime = sys.argv[1], sys.argv[2], float(sys.argv[3])
    double = InfluxWriteDouble(token=token, bucket=bucket, host="0.0.0.0", port=8086)
    print(json.dumps({"listening": double.url}), flush=True)
    seen = 0
    deadline = time.monotonic() + lifetime
    try:
        while time.monotonic() < deadline:
            points = double.snapshot()
            for point in points[seen:]:
                print(json.dumps({"measurement": point.measurement, "tags": dict(point.tags),
                                  "fields": dict(point.fields)}), flush=True)
            seen = len(points)
            time.sleep(0.2)
    finally:
        double.close()


if __name__ == "__main__":
    main()
