"""Stage 1, sources: read a system of record (canonical drop folders, ServiceNow, Prometheus, status-page
histories, survey-tool exports, the demo generator) and write canonical rows as a drop. A source never
loads: :mod:`slm_platform.load` takes the drop from there."""
