"""Survey-tool exports (LimeSurvey, Typeform, …: one row per response, one column per question) → canonical
``surveys`` rows, loaded like any drop. See :mod:`slm_platform.surveys.export`."""
