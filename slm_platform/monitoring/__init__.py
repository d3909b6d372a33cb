"""Availability sources: Prometheus probes (checks), status-page histories (outages, maintenance)."""
