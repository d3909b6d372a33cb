"""Stage 2, load: stream a canonical drop into the ``raw`` schema (validation, quarantine with reasons,
upserts, watermarks, reconciliation per file) and report what the loads did."""
