"""ServiceNow sources: the Table API extractor (``table_api``) and the audit-log export importer (``export``).

Both write a canonical drop for :func:`slm_platform.load.loader.load_drop`; ``mapping`` holds the shared
of ServiceNow states, priorities and timestamps to the canonical format.
"""
