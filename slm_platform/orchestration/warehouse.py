"""The warehouse as Airflow knows it: the ``slm_warehouse`` connection, read in one place.

Tasks get the warehouse through :func:`hook` (the Postgres provider's ``PostgresHook`` on that connection):
:func:`warehouse_dsn` is the ``postgresql://`` URL the loader, the gate (GX) and the dbt runner take, and
:func:`dbt_profile` is Cosmos' dbt profile mapped from the same connection, so the password has one
spelling (the connection) wherever Airflow runs. Outside Airflow (the CLI) nothing here is used: dbt reads
``dbt_project/profiles.yml`` and its ``SLM_PG_*`` variables (slm_platform/transform/dbt_runner.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

WAREHOUSE_CONN_ID = "slm_warehouse"


def hook(conn_id: str = WAREHOUSE_CONN_ID) -> PostgresHook:
    """The Postgres provider's hook on the warehouse connection, its URLs in libpq's ``postgresql://``
    scheme (not SQLAlchemy's ``postgresql+psycopg``). Imported here, not at DAG parse time."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    return PostgresHook(postgres_conn_id=conn_id, sqlalchemy_scheme="postgresql")


def warehouse_dsn(conn_id: str = WAREHOUSE_CONN_ID) -> str:
    """The warehouse's ``postgresql://user:password@host:port/dbname`` URL from the Airflow connection,
    with the connection's libpq extras (e.g. ``sslmode``) as its query: the parameters the hook's
    ``get_conn`` would pass to psycopg2."""
    pg = hook(conn_id)
    extras = {
        key: str(value)
        for key, value in pg.connection.extra_dejson.items()
        if key not in pg.ignored_extra_options
    }
    url = pg.sqlalchemy_url
    if extras:
        url = url.update_query_dict(extras)
    return url.render_as_string(hide_password=False)


# What the dbt profile holds besides the connection (schema, threads, timeout): read from the project's
# profiles.yml, so the CLI's dbt and Airflow's build into the same schemas with the same settings.
PROFILE_SETTINGS = ("schema", "threads", "connect_timeout")


def dbt_profile(project_dir: Path, profile_name: str = "slm", target_name: str = "default"):
    """Cosmos' ProfileConfig for the dbt project: the ``slm_warehouse`` connection mapped to a postgres
    profile (the password goes to dbt in an environment variable Cosmos sets, never in a file), plus the
    non-secret settings of ``profiles.yml``'s target."""
    import yaml
    from cosmos import ProfileConfig
    from cosmos.profiles import PostgresUserPasswordProfileMapping

    target = yaml.safe_load((project_dir / "profiles.yml").read_text())[profile_name]["outputs"][target_name]
    return ProfileConfig(
        profile_name=profile_name,
        target_name=target_name,
        profile_mapping=PostgresUserPasswordProfileMapping(
            conn_id=WAREHOUSE_CONN_ID,
            profile_args={key: target[key] for key in PROFILE_SETTINGS if key in target},
        ),
    )
