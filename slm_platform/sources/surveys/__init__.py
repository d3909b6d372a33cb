"""Survey-tool exports (LimeSurvey, Typeform, …: one row per response, one column per question) → canonical
``surveys`` rows, as a drop. See :mod:`slm_platform.sources.surveys.export`."""
