"""Shared fixtures for meshplane tests (harness: real processes, real Envoy)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from harness.envoy import EnvoyNotFoundError, envoy_binary as _find_envoy
from harness.processes import ProcessGroup, free_port as _free_port


@pytest.fixture
def procs(tmp_path: Path):
    """A ProcessGroup closed (every process killed by pgid) after the test.

    Logs go to ``<tmp_path>/logs/<name>.log``; on failure, pytest keeps tmp_path.
    """
    group = ProcessGroup(log_dir=tmp_path / "logs")
    try:
        yield group
    finally:
        group.close()


@pytest.fixture(scope="session")
def envoy_binary() -> Path:
    """Path of the real Envoy binary. FAILS (never skips) if it can't be found."""
    try:
        return _find_envoy()
    except EnvoyNotFoundError as exc:
        pytest.fail(f"Envoy binary required for these tests but not found:\n{exc}", pytrace=False)


@pytest.fixture
def free_port():
    """Callable ``free_port(host="127.0.0.1") -> int``; never returns the same
    (host, port) twice within one test."""
    handed_out: set[tuple[str, int]] = set()

    def _get(host: str = "127.0.0.1") -> int:
        for _ in range(50):
            port = _free_port(host)
            if (host, port) not in handed_out:
                handed_out.add((host, port))
                return port
        raise RuntimeError(f"could not find an unused port on {host}")

    return _get


# 127.<A>.<B>.<n>: A derived from the pid (parallel pytest runs/xdist workers
# land on different /16s), B from a random offset advanced per test (so a test
# never reuses a previous test's addresses, e.g. ones still in TIME_WAIT), n
# counts up within the test.  127.0.x.x is avoided (default addresses live there).
_ADDR_A = 1 + os.getpid() % 254
_addr_b = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "little")).randrange(256)


class AddressAllocator:
    """Hands out distinct loopback addresses (127.0.0.0/8) for one test.

    ``addresses()`` / ``addresses.next()`` -> ``"127.A.B.n"``;
    ``addresses.endpoint()`` -> ``(address, free_port)``.
    """

    def __init__(self, a: int, b: int):
        self.prefix = f"127.{a}.{b}."
        self._n = 1
        self.allocated: list[str] = []

    def next(self) -> str:
        self._n += 1
        if self._n > 254:
            raise RuntimeError("more than 253 addresses requested in one test")
        addr = f"{self.prefix}{self._n}"
        self.allocated.append(addr)
        return addr

    __call__ = next

    def __iter__(self):
        while True:
            yield self.next()

    def endpoint(self) -> tuple[str, int]:
        addr = self.next()
        return addr, _free_port(addr)


@pytest.fixture
def addresses() -> AddressAllocator:
    global _addr_b
    _addr_b = (_addr_b + 1) % 256
    return AddressAllocator(_ADDR_A, _addr_b)


@pytest.fixture(scope="module")
def module_addresses() -> AddressAllocator:
    """Like ``addresses`` but shared by a module whose tests share one running mesh."""
    global _addr_b
    _addr_b = (_addr_b + 1) % 256
    return AddressAllocator(_ADDR_A, _addr_b)


@pytest.fixture(scope="module")
def module_procs(tmp_path_factory):
    """A ProcessGroup living as long as a test module (one mesh shared by its tests)."""
    log_dir = tmp_path_factory.mktemp("logs")
    with ProcessGroup(log_dir=log_dir) as group:
        yield group


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL (harness/postgres.py: ``MESHPLANE_TEST_POSTGRES``, else 127.0.0.1:5432,
    else a throwaway cluster). ``postgres.new_database()`` -> a fresh database URL;
    ``postgres.stop()``/``start()``/``outage()`` for "PostgreSQL goes away and comes back" (a test
    that stops it starts it again). FAILS (never skips) when there is no PostgreSQL."""
    from harness.postgres import PostgresUnavailable, TestPostgres

    try:
        pg = TestPostgres.open()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield pg
    finally:
        pg.close()
