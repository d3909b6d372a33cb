"""The Zabbix connector against a REAL Zabbix 6.0 API: Debian's ``zabbix-frontend-php`` (the PHP code that
*is* the JSON-RPC API) on PHP's built-in web server, on a database created from ``zabbix-server-pgsql``'s
schema, in a scratch database of the suite's PostgreSQL.

What the Zabbix *server* daemon would write while monitoring (trigger events, their recoveries, item history,
service status changes) is inserted into its tables as the server writes them; everything else (host groups,
hosts, items, triggers, maintenance, services, the SLA, an API token) is created through the API itself. The
extract then reads it all back through the API, with a session from ``user.login`` and with an API token, and
the figures are checked against what was inserted. Zabbix's own SLI (``sla.getsli``) is compared with ours.

Needs ``php`` (php-cli, php-pgsql, php-bcmath, php-mbstring, php-gd, php-xml) and the two packages' files: the
installed ``/usr/share/zabbix`` and ``/usr/share/zabbix-server-pgsql``, else the .debs fetched by ``apt-get
download`` and unpacked under /var/tmp/slm-zabbix-debs (nothing is installed or started system-wide).
"""

from __future__ import annotations

import gzip
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg2
import pytest
import requests

from slm_platform.load.loader import load_drop
from slm_platform.sources import zabbix as zbx
from tests.conftest import query_dicts, scratch_database

DEBS = Path("/var/tmp/slm-zabbix-debs")
PACKAGES = ("zabbix-frontend-php", "zabbix-server-pgsql")
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # a past month: sla.getsli never reports beyond the current one
H = 3600


def _ts(dt: datetime) -> int:
    return int(dt.timestamp())


def _package_files() -> tuple[Path, Path]:
    """(frontend dir, schema dir): the installed packages', else the .debs unpacked under DEBS."""
    installed = Path("/usr/share/zabbix"), Path("/usr/share/zabbix-server-pgsql")
    if (installed[0] / "api_jsonrpc.php").exists() and (installed[1] / "schema.sql.gz").exists():
        return installed
    root = DEBS / "root"
    if not (root / "usr/share/zabbix/api_jsonrpc.php").exists():
        DEBS.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["apt-get", "download", *PACKAGES], cwd=DEBS, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"apt-get download {' '.join(PACKAGES)} failed: {proc.stderr[-500:]}")
        for deb in DEBS.glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root / "usr/share/zabbix", root / "usr/share/zabbix-server-pgsql"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    """A bare JSON-RPC client for setting the scene (the connector under test has its own)."""

    def __init__(self, url: str):
        self.url, self.auth, self.n = url, None, 0

    def __call__(self, method: str, params) -> object:
        self.n += 1
        body = {"jsonrpc": "2.0", "method": method, "params": params, "id": self.n}
        if self.auth and method not in ("apiinfo.version", "user.login"):
            body["auth"] = self.auth
        r = requests.post(self.url, json=body, timeout=60).json()
        if "error" in r:
            raise AssertionError(f"{method}: {r['error']}")
        return r["result"]


@pytest.fixture(scope="module")
def zabbix(pg_server, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """(API URL, DSN of Zabbix's database) of a Zabbix 6.0 frontend on a fresh schema."""
    php = shutil.which("php")
    if not php:
        pytest.fail("php not found: install php-cli php-pgsql php-bcmath php-mbstring php-gd php-xml")
    frontend, schema = _package_files()
    tmp = tmp_path_factory.mktemp("zabbix")
    web = tmp / "frontend"
    shutil.copytree(frontend, web, symlinks=True)
    conf = tmp / "zabbix.conf.php"
    core = web / "include/classes/core/CConfigFile.php"
    core.write_text(core.read_text().replace("'/etc/zabbix/zabbix.conf.php'", f"'{conf}'"))
    with scratch_database(pg_server) as dsn:
        conn = psycopg2.connect(dsn)
        t = time.monotonic()
        with conn, conn.cursor() as cur:
            for name in ("schema", "images", "data"):
                cur.execute(gzip.decompress((schema / f"{name}.sql.gz").read_bytes()).decode())
        conn.close()
        print(f"zabbix schema loaded in {time.monotonic() - t:.1f} s")
        u = psycopg2.extensions.parse_dsn(dsn)
        conf.write_text(
            "<?php\n$DB['TYPE'] = ZBX_DB_POSTGRESQL;\n"
            f"$DB['SERVER'] = '{u['host']}';\n$DB['PORT'] = '{u['port']}';\n"
            f"$DB['DATABASE'] = '{u['dbname']}';\n$DB['USER'] = '{u['user']}';\n"
            f"$DB['PASSWORD'] = '{u.get('password', '')}';\n$DB['SCHEMA'] = '';\n"
            "$DB['ENCRYPTION'] = false;\n$DB['KEY_FILE'] = '';\n$DB['CERT_FILE'] = '';\n"
            "$DB['CA_FILE'] = '';\n"
            "$DB['VERIFY_HOST'] = false;\n$DB['CIPHER_LIST'] = '';\n$DB['VAULT_URL'] = '';\n"
            "$DB['VAULT_DB_PATH'] = '';\n$DB['VAULT_TOKEN'] = '';\n$DB['DOUBLE_IEEE754'] = true;\n"
            "$ZBX_SERVER = '127.0.0.1';\n$ZBX_SERVER_PORT = '10051';\n$ZBX_SERVER_NAME = 'slm-test';\n"
            "$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;\n"
        )
        port = _free_port()
        log = open(tmp / "php.log", "w")
        proc = subprocess.Popen([php, "-S", f"127.0.0.1:{port}", "-t", str(web)], stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}/api_jsonrpc.php"
        try:
            for _ in range(100):
                try:
                    if Api(url)("apiinfo.version", {}):
                        break
                except (requests.ConnectionError, ValueError):
                    time.sleep(0.2)
            yield url, dsn
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


def test_real_zabbix_problems_maintenance_checks_and_sli(zabbix, pg_server, tmp_path):
    url, zdsn = zabbix
    api = Api(url)
    version = api("apiinfo.version", {})
    api.auth = api("user.login", {"username": "Admin", "password": "zabbix"})
    groups = {
        name: api("hostgroup.create", {"name": name})["groupids"][0]
        for name in ("ACME/ERP", "ACME/MAIL", "LAB")
    }
    hosts, triggers, items = {}, {}, {}
    for host, group in (("erp-web-01", "ACME/ERP"), ("mx-01", "ACME/MAIL"), ("lab-01", "LAB")):
        hosts[host] = api("host.create", {"host": host, "groups": [{"groupid": groups[group]}]})["hostids"][0]
        items[host] = api(
            "item.create",
            {"hostid": hosts[host], "name": "ping", "key_": "icmpping", "type": 2, "value_type": 3},
        )["itemids"][0]
        triggers[host] = api(
            "trigger.create",
            {"description": f"{host} unreachable", "expression": f"last(/{host}/icmpping)=0", "priority": 4},
        )["triggerids"][0]
    warn = api(
        "trigger.create",
        {"description": "erp slow", "expression": "last(/erp-web-01/icmpping)=2", "priority": 2},
    )["triggerids"][0]

    # what the server writes: problem and recovery events, item history, service status changes
    t = _ts(T0)
    scene = [  # (eventid, trigger, clock, recovery clock or None, severity, tags)
        (1001, triggers["erp-web-01"], t + 600, t + 1500, 4, {}),
        (1003, triggers["erp-web-01"], t + 1800, None, 4, {}),  # open
        (1005, triggers["mx-01"], t + 60, t + 120, 4, {"service": "mail"}),
        (1007, warn, t + 700, t + 800, 2, {}),  # warning: below the threshold
        (1009, triggers["lab-01"], t + 900, t + 1000, 4, {}),  # unmapped
    ]
    conn = psycopg2.connect(zdsn)
    with conn, conn.cursor() as cur:
        for eid, trig, clock, rclock, sev, tags in scene:
            cur.execute(
                "insert into events (eventid, source, object, objectid, clock, ns, value, name, severity)"
                " values (%s, 0, 0, %s, %s, 0, 1, 'problem', %s)",
                (eid, trig, clock, sev),
            )
            for i, (k, v) in enumerate(tags.items()):
                cur.execute("insert into event_tag values (%s, %s, %s, %s)", (eid * 10 + i, eid, k, v))
            if rclock is not None:
                cur.execute(
                    "insert into events (eventid, source, object, objectid, clock, ns, value, name, severity)"
                    " values (%s, 0, 0, %s, %s, 0, 0, 'problem', 0)",
                    (eid + 1, trig, rclock),
                )
                cur.execute("insert into event_recovery (eventid, r_eventid) values (%s, %s)", (eid, eid + 1))
            else:
                cur.execute(
                    "insert into problem (eventid, source, object, objectid, clock, ns, name, severity)"
                    " values (%s, 0, 0, %s, %s, 0, 'problem', %s)",
                    (eid, trig, clock, sev),
                )
        for i in range(60):
            cur.execute(
                "insert into history_uint (itemid, clock, value, ns) values (%s, %s, %s, 0)",
                (items["erp-web-01"], t + 60 * i, 0 if i == 10 else 1),
            )
    conn.close()
    api(
        "maintenance.create",
        {
            "name": "ERP patch",
            "active_since": t - 86400,
            "active_till": t + 86400,
            "groupids": [groups["ACME/ERP"]],
            "timeperiods": [{"timeperiod_type": 0, "start_date": t + 2400, "period": 600}],
        },
    )
    mapping = zbx.mapping_from_dict(
        {
            "min_severity": "average",
            "services": [
                {
                    "service_code": "ACME-ERP",
                    "host_groups": ["ACME/ERP"],
                    "check": {"host": "erp-web-01", "key": "icmpping"},
                },
                {"service_code": "ACME-MAIL", "tags": {"service": "mail"}},
            ],
        }
    )
    creds = zbx.Credentials(user="Admin", password="zabbix")
    res = zbx.extract(mapping, T0, T0 + timedelta(hours=1), tmp_path / "s", url=url, creds=creds, page_size=2)
    token_id = api("token.create", {"name": "slm", "userid": "1"})["tokenids"][0]
    token = api("token.generate", [token_id])[0]["token"]
    res_tok = zbx.extract(
        mapping, T0, T0 + timedelta(hours=1), tmp_path / "t", url=url, creds=zbx.Credentials(token=token)
    )
    assert (tmp_path / "s/outages.csv").read_text() == (tmp_path / "t/outages.csv").read_text()
    assert res.api_version == res_tok.api_version == version
    out = _rows(tmp_path / "s/outages.csv")
    assert {(r["service_code"], r["started_at"], r["ended_at"]) for r in out if r["service_code"]} == {
        ("ACME-ERP", "2026-11-02T10:10:00Z", "2026-11-02T10:25:00Z"),
        ("ACME-ERP", "2026-11-02T10:30:00Z", ""),
        ("ACME-MAIL", "2026-11-02T10:01:00Z", "2026-11-02T10:02:00Z"),
    }
    assert [r["host"] for r in out if not r["service_code"]] == ["lab-01"]
    assert res.below_severity == 1 and res.problems == 5 and res.recoveries == 4
    maint = _rows(tmp_path / "s/maintenance.csv")
    assert [(r["service_code"], r["starts_at"], r["ends_at"]) for r in maint] == [
        ("ACME-ERP", "2026-11-02T10:40:00Z", "2026-11-02T10:50:00Z")
    ]
    checks = _rows(tmp_path / "s/checks.csv")
    assert len(checks) == 60 and [r["checked_at"] for r in checks if r["status"] == "down"] == [
        "2026-11-02T10:10:00Z"
    ]

    # Zabbix's SLI beside ours: a service for mail problems, its status changes as the server writes them
    sid = api(
        "service.create",
        {
            "name": "Mail",
            "algorithm": 1,
            "sortorder": 0,
            "tags": [{"tag": "sla", "value": "mail"}],
            "problem_tags": [{"tag": "service", "operator": 0, "value": "mail"}],
        },
    )["serviceids"][0]
    slaid = api(
        "sla.create",
        {
            "name": "Mail 99.9",
            "period": 2,
            "slo": 99.9,
            "effective_date": t - 86400 * 40,
            "timezone": "UTC",
            "service_tags": [{"tag": "sla", "operator": 0, "value": "mail"}],
        },
    )["slaids"][0]
    conn = psycopg2.connect(zdsn)
    with conn, conn.cursor() as cur:
        # a service created today has no SLI for November (sli -1): this one has existed since October
        cur.execute("update services set created_at = %s where serviceid = %s", (t - 86400 * 40, sid))
        cur.execute(
            "insert into service_alarms values (1, %s, %s, 4), (2, %s, %s, -1)", (sid, t + 60, sid, t + 120)
        )
    conn.close()
    month = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    sla_map = zbx.mapping_from_dict(
        {
            "sla_id": slaid,
            "services": [{"service_code": "ACME-MAIL", "tags": {"service": "mail"}, "sla_service_id": sid}],
        }
    )
    sli = zbx.get_sli(sla_map, *month, url=url, creds=creds)
    full = tmp_path / "month"
    zbx.extract(sla_map, *month, full, url=url, creds=creds)
    (cmp,) = zbx.compare_sla(sli, full, cut_off=_ts(month[1]))
    assert sli[0]["downtime"] == 60 and cmp["ours_downtime_s"] == 60 and cmp["agree"], (sli, cmp)

    # and the drop loads: mapped rows in, the unmapped one quarantined with its reason
    with scratch_database(pg_server) as wh:
        ref = tmp_path / "ref"
        ref.mkdir()
        (ref / "clients.csv").write_text("client_code,client_name,timezone,country\nACME,ACME,UTC,FR\n")
        (ref / "services.csv").write_text(
            "service_code,client_code,service_name,calendar_code,criticality\n"
            "ACME-ERP,ACME,ERP,24x7,high\nACME-MAIL,ACME,Mail,24x7,low\n"
        )
        load_drop(wh, ref)
        batches = {b.entity: b for b in load_drop(wh, tmp_path / "s", source="zabbix")}
        assert batches["outages"].rows_loaded == 3 and batches["outages"].rows_quarantined == 1
        assert batches["checks"].rows_loaded == 60 and batches["maintenance"].rows_loaded == 1
        (q,) = query_dicts(wh, "select reason from raw.quarantine where entity = 'outages'")
        assert "service_code" in q["reason"]
    print(f"real Zabbix {version}: {res.requests} requests, {res.pages} pages, {res.seconds:.2f} s")


def _rows(path: Path) -> list[dict]:
    import csv

    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
