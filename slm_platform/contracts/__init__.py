"""Stage 2, contracts: the catalogue of calendars and agreements (SLA / OLA / UC), validated, and put into
the warehouse beside the loaded data."""
