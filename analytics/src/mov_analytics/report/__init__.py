"""The weekly report: per site and device, min/mean/max per field, time above thresholds, alerts, data gaps."""
