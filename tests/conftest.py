"""Shared fixtures. Tests mirror the source tree (tests/platform, tests/storage, ...)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Two cores here: keep torch from oversubscribing when tests run model fits.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one intra-op thread for the rest of the test module, restored afterwards. On the shared 2-core
    machine two threads per process make small model steps an order of magnitude slower (the
    OpenMP workers spin-wait for each other). Folders whose every test trains a model use it
    from their conftest (``autouse``, module scope, so the module's trained-model fixtures run
    pinned too); single tests ask for it by name; session-scoped model fixtures use the same
    :func:`assay.platform.optimize.intra_op_threads` directly."""
    from assay.platform.optimize import intra_op_threads

    with intra_op_threads(1):
        yield


# ---------------------------------------------------------------------------------------------
# PostgreSQL: a fresh database per test, cloned from a migrated template made once per session.
# ---------------------------------------------------------------------------------------------
PG_ADMIN_URL = os.environ.get(
    "ASSAY_TEST_POSTGRES_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _pg_admin():
    from sqlalchemy import create_engine

    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def _pg_url(dbname: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(PG_ADMIN_URL).set(database=dbname).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_template():
    """Name of a migrated template database (dropped at the end of the session)."""
    import uuid

    from sqlalchemy import create_engine

    from assay.storage.migrate import upgrade

    admin = _pg_admin()
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as e:  # pragma: no cover - environment problem, not a test result
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({e}); start it "
            "(see .ci/run) or set ASSAY_TEST_POSTGRES_ADMIN_URL"
        )
    name = f"assay_tmpl_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine = create_engine(_pg_url(name))
    upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def postgres_url(pg_template):
    """URL of a fresh, migrated PostgreSQL database for one test."""
    import uuid

    name = f"assay_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield _pg_url(name)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def empty_postgres_url():
    """URL of a fresh PostgreSQL database with no schema."""
    import uuid

    name = f"assay_empty_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield _pg_url(name)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def database_url(request, tmp_path):
    """One URL per backend; storage and client suites run once per backend."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'assay.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(database_url):
    """A store on each backend: every storage-facing and REST suite runs once per backend."""
    from assay.storage.factory import open_store

    s = open_store(database_url)
    yield s
    s.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_store(request, tmp_path):
    """A SQL store on each SQL backend, for tests that look at the SQL itself."""
    from assay.storage.factory import open_store

    url = (
        f"sqlite:///{tmp_path / 'assay.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    s = open_store(url)
    yield s
    s.close()


# ---------------------------------------------------------------------------------------------
# A real `assay serve` process on a free localhost port.
# ---------------------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``assay serve`` in a subprocess (start/kill/restart), for end-to-end tests."""

    def __init__(self, database_url: str, *, auth: str = "none", env: dict | None = None,
                 extra_args: list[str] | None = None, port: int | None = None) -> None:  # fmt: skip
        self.database_url = database_url
        self.auth = auth
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "ASSAY_REAPER_INTERVAL_S": "0.5", **(env or {})}
        self.extra_args = list(extra_args or [])
        self.proc = None
        self.log_path = None

    def start(self, timeout: float = 60.0) -> LiveServer:
        import subprocess
        import sys
        import tempfile
        import time

        import httpx

        log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
        self.log_path = log.name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assay.service.cli", "serve", "--database-url",
             self.database_url, "--port", str(self.port), "--auth", self.auth,
             "--log-level", "warning", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO_ROOT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def log(self) -> str:
        return Path(self.log_path).read_text() if self.log_path else ""

    def kill(self, sig: int = 9) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        import signal

        self.kill(signal.SIGTERM)


@pytest.fixture
def live_server_factory():
    servers: list[LiveServer] = []

    def make(database_url: str, **kw) -> LiveServer:
        s = LiveServer(database_url, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def live_server_class() -> type[LiveServer]:
    return LiveServer


# ---------------------------------------------------------------------------------------------
# The fast lane: `pytest -m "not slow"` skips every test marked slow (over ~5 s on a quiet
# 2-core machine). `make test` runs everything. So that the lane stays fast, the end of a run
# lists the unmarked tests that took longer (a hint to mark them, never a failure: timings on
# a shared machine are noise, not a verdict).
# ---------------------------------------------------------------------------------------------
SLOW_HINT_S = 5.0
_unmarked_slow: list[tuple[float, str]] = []


def pytest_runtest_logreport(report) -> None:
    slow = report.duration > SLOW_HINT_S and "slow" not in report.keywords
    if slow and report.when in ("setup", "call"):
        _unmarked_slow.append((report.duration, f"{report.nodeid} ({report.when})"))


def pytest_terminal_summary(terminalreporter) -> None:
    if _unmarked_slow:
        terminalreporter.section("unmarked tests over ~5 s (consider @pytest.mark.slow)")
        for seconds, name in sorted(_unmarked_slow, reverse=True)[:20]:
            terminalreporter.write_line(f"{seconds:6.1f}s {name}")
