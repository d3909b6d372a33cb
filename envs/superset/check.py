"""The superset environment works: its interpreter imports Superset and its server (tools/build_env.sh).

Writes the files the environment's marker records (relative to the environment) to the file argv[1].
"""

import importlib
import os
import sys

files = [importlib.import_module(name).__file__ for name in ("superset", "gunicorn", "psycopg2")]
with open(sys.argv[1], "w") as out:
    out.writelines(os.path.relpath(f, sys.prefix) + "\n" for f in files)
