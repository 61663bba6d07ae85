"""The weekly report: per site and device, min/mean/max per field, time above thresholds, alerts, data gaps;
the containers, the host's resources, and the week's backups and restore drills."""
