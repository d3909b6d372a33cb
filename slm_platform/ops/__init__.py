"""Operations: the local stack (PostgreSQL cluster, Airflow, Superset processes), the set-up doctor and the
production configuration check. ``doctor`` and ``prod_check`` use the standard library only."""
