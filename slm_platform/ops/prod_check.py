"""Refuse to start a production stack on missing, weak or well-known secrets.

Run first by the ``airflow-init`` and ``superset-init`` containers (docker/compose.yaml), and by an operator
before ``docker compose up``::

    python -m slm_platform.ops.prod_check --env-file docker/.env     # check a whole env file
    python -m slm_platform.ops.prod_check --for airflow              # check the process environment
    python -m slm_platform.ops.prod_check --generate > docker/.env   # fresh strong values for every secret

Standard library only: the Superset image runs it too. Messages never print a secret's value.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
import re
import secrets
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

# Signing and encryption keys: long random strings.
KEYS = (
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
    "SUPERSET_SECRET_KEY",
)
# Passwords of database roles, of the two admin users and of Redis (Celery broker, Superset's cache).
PASSWORDS = (
    "POSTGRES_PASSWORD",
    "SLM_READER_PASSWORD",
    "SUPERSET_ADMIN_PASSWORD",
    "AIRFLOW_ADMIN_PASSWORD",
    "REDIS_PASSWORD",
)
ALL = KEYS + PASSWORDS
# Which container needs which secret: each init container checks only what it receives.
GROUPS: dict[str, tuple[str, ...]] = {
    "all": ALL,
    "airflow": (
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
        "POSTGRES_PASSWORD",
        "AIRFLOW_ADMIN_PASSWORD",
        "SUPERSET_ADMIN_PASSWORD",  # the slm_superset connection of the dashboards' warm-up
        "REDIS_PASSWORD",  # the Celery broker URL
    ),
    # The reader password is checked here: superset-init gets it to register the warehouse connection.
    "superset": (
        "SUPERSET_SECRET_KEY",
        "POSTGRES_PASSWORD",
        "SLM_READER_PASSWORD",
        "SUPERSET_ADMIN_PASSWORD",
        "REDIS_PASSWORD",  # SUPERSET_REDIS_URL: cache, results, Celery broker
    ),
}
MIN_KEY_LENGTH = 32
MIN_PASSWORD_LENGTH = 16
# These are written into connection URLs or a JSON connection (compose interpolates them): URL-reserved
# characters, quotes or backslashes would break them or need escaping everywhere, so only unreserved ones.
URL_EMBEDDED = ("POSTGRES_PASSWORD", "SLM_READER_PASSWORD", "SUPERSET_ADMIN_PASSWORD", "REDIS_PASSWORD")
_URL_SAFE = re.compile(r"^[A-Za-z0-9._~-]+$")

# Values from docs, examples and tool defaults (compared case-insensitively).
KNOWN_DEFAULTS = frozenset(
    v.lower()
    for v in (
        "CHANGE_ME",
        "CHANGE_ME_TO_A_COMPLEX_RANDOM_SECRET",
        "thisISaSECRET_1234",
        "TEST_NON_DEV_SECRET",
        "admin",
        "secret",
        "password",
        "changeme",
        "airflow",
        "superset",
        "postgres",
        "slm",
        "slm_reader",
        "redis",
        "foobared",  # the password in redis.conf's commented-out requirepass example
    )
)
PLACEHOLDER_MARKERS = ("change_me", "changeme", "replace_me", "example", "placeholder")


_FERNET_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}=$")  # 32 bytes in url-safe base64: 43 characters + "="


def _is_fernet_key(value: str) -> bool:
    """A Fernet key is 32 bytes, url-safe base64 encoded (44 characters with padding).

    Stricter than Fernet itself, which also takes "+" and "/": generated keys never hold them.
    """
    if not _FERNET_SHAPE.match(value):
        return False
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii"))
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 32


def check_secrets(env: Mapping[str, str], names: Iterable[str] = ALL) -> list[str]:
    """Every problem with the secrets ``names`` in ``env``; empty when all are fit for production."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for name in names:
        value = env.get(name)
        if value is None or value == "":
            problems.append(f"{name} is missing or empty")
            continue
        if value != value.strip():
            problems.append(f"{name} has leading or trailing whitespace")
            continue
        lowered = value.lower()
        if lowered in KNOWN_DEFAULTS or any(m in lowered for m in PLACEHOLDER_MARKERS):
            problems.append(f"{name} is a default or placeholder value: generate a random one")
            continue
        minimum = MIN_KEY_LENGTH if name in KEYS else MIN_PASSWORD_LENGTH
        if len(value) < minimum:
            problems.append(f"{name} is too short ({len(value)} characters, at least {minimum} required)")
        if name == "AIRFLOW__CORE__FERNET_KEY" and not _is_fernet_key(value):
            problems.append(f"{name} is not a valid Fernet key (url-safe base64 of 32 bytes)")
        if name in URL_EMBEDDED and not _URL_SAFE.match(value):
            problems.append(f"{name} may only hold letters, digits and . _ ~ - (it is embedded in URLs)")
        if value in seen:
            problems.append(f"{name} reuses the value of {seen[value]}: each secret must be distinct")
        seen.setdefault(value, name)
    return problems


def generate(names: Iterable[str] = ALL) -> dict[str, str]:
    """Fresh values that pass :func:`check_secrets`."""
    out: dict[str, str] = {}
    for name in names:
        if name == "AIRFLOW__CORE__FERNET_KEY":
            out[name] = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        elif name in KEYS:
            out[name] = secrets.token_urlsafe(48)
        else:
            out[name] = secrets.token_urlsafe(24)  # unreserved URL characters only
    return out


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as docker compose reads them (comments, blank lines, optional quotes, ``export``)."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m slm_platform.ops.prod_check", description="Refuse weak or default production secrets."
    )
    parser.add_argument(
        "--for",
        dest="group",
        choices=sorted(GROUPS),
        default="all",
        help="which component's secrets to check (default: all)",
    )
    parser.add_argument("--env-file", type=Path, help="check this env file, not the process environment")
    parser.add_argument("--generate", action="store_true", help="print fresh KEY=VALUE lines and exit")
    args = parser.parse_args(argv)
    names = GROUPS[args.group]
    if args.generate:
        for key, value in generate(names).items():
            print(f"{key}={value}")
        return 0
    if args.env_file is not None:
        if not args.env_file.is_file():
            print(
                f"prod_check: REFUSED: {args.env_file} does not exist (copy docker/.env.example and fill it)",
                file=sys.stderr,
            )
            return 2
        env: Mapping[str, str] = read_env_file(args.env_file)
        source = str(args.env_file)
    else:
        env, source = os.environ, "the environment"
    problems = check_secrets(env, names)
    if problems:
        print(
            f"prod_check: REFUSED to start: {len(problems)} problem(s) with the secrets in {source}:",
            file=sys.stderr,
        )
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        print(
            "Set them in docker/.env (see docker/.env.example; "
            "`python -m slm_platform.ops.prod_check --generate` prints strong values).",
            file=sys.stderr,
        )
        return 1
    print(f"prod_check: {len(names)} secrets OK ({args.group})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
