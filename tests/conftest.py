"""Fixtures that start real components on loopback: the service (in a thread
or as a process), SMTP clients, SQLite and the local PostgreSQL server."""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy

from mailintake.config import Settings, load_settings
from mailintake.people.tokens import SCOPES
from mailintake.server import run_service
from mailintake.services import Services, build_services
from tests.factories import designate

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("MAILINTAKE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def require(condition: bool, reason: str) -> None:
    """Skip locally when a real component is missing; under CI=true, fail."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required component missing under CI: {reason}")
    pytest.skip(reason)


def apt_install(package: str, binary: str) -> bool:
    """Install a Debian package for a test that needs the real thing;
    True when ``binary`` is there afterwards."""
    if shutil.which(binary) or Path(binary).exists():
        return True
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], env=env, capture_output=True, timeout=1200)
    return bool(shutil.which(binary) or Path(binary).exists())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy; returns its value or fails."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


# -- databases ---------------------------------------------------------------------


def _postgres_available(url: str) -> bool:
    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
        return True
    except sqlalchemy.exc.OperationalError:
        return False


def _start_installed_clusters() -> None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    for version in versions:
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            capture_output=True,
            timeout=60,
        )


def _as_postgres(*command: str) -> subprocess.CompletedProcess[str]:
    # initdb and the server refuse to run as root.
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=300)


def _own_cluster(tmp: Path) -> str | None:
    """Debian's PostgreSQL, installed if missing, running a throw-away
    cluster of the test session's own (trust authentication, loopback only,
    a free port, UTF-8 so that Japanese text sorts and matches)."""
    if not apt_install("postgresql", "/usr/lib/postgresql"):
        return None
    bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))[-1]
    tmp.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(tmp, "postgres", "postgres")
    data, port = tmp / "data", free_port()
    steps = [
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"],
        [
            str(bindir / "pg_ctl"), "-D", str(data), "-l", str(tmp / "server.log"), "-w", "-o",
            f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off", "start",
        ],
        [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "test"],
    ]  # fmt: skip
    for step in steps:
        done = _as_postgres(*step)
        if done.returncode != 0:
            raise RuntimeError(f"{step[0]} failed: {done.stdout}{done.stderr}")
    atexit.register(_as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The server named by MAILINTAKE_TEST_PG (default: the local one on
    5432 with database ``test``); if none answers, the machine's clusters
    are started, and failing that the tests install Debian's PostgreSQL and
    run a cluster of their own."""
    url = PG_ADMIN_URL
    if not _postgres_available(url):
        _start_installed_clusters()
    if not _postgres_available(url):
        own = _own_cluster(Path(tempfile.mkdtemp(prefix="mailintake-pg-")))
        url = own or url
    require(_postgres_available(url), f"PostgreSQL not reachable at {url} and not installable")
    return url


@contextmanager
def fresh_schema(admin_url: str) -> Iterator[str]:
    """A URL whose connections use a new, empty schema of database ``test``."""
    schema = f"t_{secrets.token_hex(6)}"
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{admin_url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test runs twice: on a new SQLite file and on a fresh schema in
    the PostgreSQL database ``test`` (see :func:`settings` for the stores)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    with fresh_schema(request.getfixturevalue("postgres_admin_url")) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """For scenarios that only exist with a database server."""
    with fresh_schema(postgres_admin_url) as url:
        yield url


# -- settings and services -----------------------------------------------------------


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "smtp_port": free_port(),
            "http_port": free_port(),
            "ingest_retry_seconds": 0.2,
        }
        values.update(overrides)
        return load_settings(overrides=values, environ={})

    return factory


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    """SQLite with the ``files`` blob store, PostgreSQL with ``database``:
    each store runs every test, as each is deployed (one node; a cluster)."""
    store = "files" if database_url.startswith("sqlite") else "database"
    return make_settings(database_url=database_url, blob_store=store)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = build_services(settings)
    yield built
    built.close()


class ServiceThread:
    """The whole service (relay, ingester, web/API) in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def runner() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await run_service(
                self.settings,
                stop=self._stop,
                on_ready=lambda text: self._ready.set() if text.startswith("data in") else None,
            )

        try:
            asyncio.run(runner())
        except BaseException as exc:  # surfaced by start()/stop()
            self._error = exc
            self._ready.set()

    def start(self) -> ServiceThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        if self._error is not None:
            raise self._error

    @property
    def smtp_port(self) -> int:
        return self.settings.smtp_port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"


@pytest.fixture
def start_service() -> Iterator[Callable[[Settings], ServiceThread]]:
    started: list[ServiceThread] = []

    def factory(settings: Settings) -> ServiceThread:
        service = ServiceThread(settings).start()
        started.append(service)
        return service

    yield factory
    for service in reversed(started):
        service.stop()


@pytest.fixture
def designated(services: Services) -> str:
    """One designated address for 総務課."""
    return designate(services, "soumu@city.example.jp", "総務課").address


@pytest.fixture
def service(settings: Settings, services: Services, designated: str, start_service: Any) -> ServiceThread:
    return start_service(settings)


@pytest.fixture
def token(services: Services) -> str:
    return services.tokens.create(f"test-{secrets.token_hex(3)}", SCOPES)


@pytest.fixture
def api(service: ServiceThread, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


# -- processes --------------------------------------------------------------------------


class ServiceProcess:
    """``mailintake serve`` as a real process, for crash tests."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        env = dict(
            os.environ,
            MAILINTAKE_DATABASE_URL=self.settings.database_url,
            MAILINTAKE_BLOB_STORE=self.settings.blob_store,
            MAILINTAKE_LOG_LEVEL="WARNING",
        )
        if self.settings.handoff_push_dir is not None:
            env["MAILINTAKE_HANDOFF_PUSH_DIR"] = str(self.settings.handoff_push_dir)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mailintake",
                    "serve",
                    "--data-dir",
                    str(self.settings.data_dir),
                    "--smtp-port",
                    str(self.settings.smtp_port),
                    "--http-port",
                    str(self.settings.http_port),
                ],
                env=env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        wait_for(lambda: _port_open(self.settings.http_port) or self.proc.poll() is not None, 30)
        assert self.proc.poll() is None, self.log_path.read_text(errors="replace")
        wait_for(lambda: _port_open(self.settings.smtp_port), 10)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def service_process(tmp_path: Path) -> Iterator[Callable[[Settings], ServiceProcess]]:
    started: list[ServiceProcess] = []

    def factory(settings: Settings) -> ServiceProcess:
        proc = ServiceProcess(settings, tmp_path / "service.log").start()
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.kill()


@pytest.fixture(scope="session")
def mount_available() -> bool:
    target = Path(f"/tmp/mailintake-mount-probe-{os.getpid()}")
    target.mkdir(exist_ok=True)
    ok = (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(target)], capture_output=True).returncode
        == 0
    )
    if ok:
        subprocess.run(["umount", str(target)], check=True)
    shutil.rmtree(target, ignore_errors=True)
    return ok


@pytest.fixture
def browsers() -> Iterator[Callable[[str], Any]]:
    """Signed-in HTTP sessions (tests/web.py), closed after the test."""
    from .web import Browser

    opened: list[Browser] = []

    def factory(base_url: str) -> Browser:
        browser = Browser(base_url)
        opened.append(browser)
        return browser

    yield factory
    for browser in opened:
        browser.close()


@pytest.fixture(scope="session")
def acl_tools() -> None:
    """setfacl/getfacl, which `filelink init` needs (Debian's acl package)."""
    require(apt_install("acl", "/usr/bin/setfacl"), "Debian's acl package is not installable here")


@pytest.fixture(scope="module")
def filelink_accounts(acl_tools: None) -> Iterator[None]:
    """Real OS users and groups for the linkage engine's systems (tests/linkage.py)."""
    from .linkage import create_accounts, remove_accounts

    require(os.geteuid() == 0, "creating OS users needs root")
    create_accounts()
    yield
    remove_accounts()


# -- a real browser ----------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
NOTO_CJK = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"


@pytest.fixture
def chromium() -> Iterator[Any]:
    require(apt_install("chromium", CHROMIUM), "Debian's chromium package is not installable here")
    # Japanese glyphs for readable screenshots.
    require(apt_install("fonts-noto-cjk", NOTO_CJK), "Debian's fonts-noto-cjk package is not installable here")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, chromium_sandbox=False)
        yield browser
        browser.close()
