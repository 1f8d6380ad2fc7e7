"""The PostgreSQL test harness (harness/postgres.py): databases, outages, both modes."""
from __future__ import annotations

import psycopg
import pytest

from harness.postgres import TestPostgres


def _roundtrip(url: str) -> int:
    with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
        return conn.execute("SELECT 41 + 1").fetchone()[0]


def test_database_survives_an_outage(postgres: TestPostgres):
    url = postgres.new_database()
    assert url.startswith("postgresql://")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (v int)")
        conn.execute("INSERT INTO t VALUES (7)")
    conn = psycopg.connect(url, autocommit=True)
    try:
        postgres.stop()
        assert not postgres.running()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError):
            _roundtrip(url)
    finally:
        conn.close()
        postgres.start()
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT v FROM t").fetchone() == (7,)


def test_proxy_mode_against_the_same_server(postgres: TestPostgres):
    """The external-server mode (a cuttable proxy), exercised against whatever server we have."""
    external = TestPostgres.__new__(TestPostgres)
    TestPostgres.__init__(external, postgres.admin_dsn, server=None, source="test")
    try:
        url = external.new_database()
        assert f":{external.proxy.port}/" in url and _roundtrip(url) == 42
        with external.outage():
            with pytest.raises(psycopg.OperationalError):
                _roundtrip(url)
        assert _roundtrip(url) == 42
    finally:
        external.close()
