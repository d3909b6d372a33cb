"""What the Airflow DAGs share beyond one stage: typed parameters, the hourly extract windows and their
catch-up mark, and the on-demand incident review (its checks, cut-off, build lock and publish)."""
