"""The generated Sendmail configuration, checked with a real Sendmail's
address test (``sendmail -bv``). Sendmail comes from Debian's packages,
unpacked with ``dpkg -x`` rather than installed: its package conflicts
with Postfix, which the other tests need on the same machine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailintake.services import build_services
from tests.factories import designate

from .conftest import require

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def sendmail_root(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """Debian's sendmail-bin and sendmail-cf unpacked, plus m4 installed."""
    work = tmp_path_factory.mktemp("sendmail")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not shutil.which("m4"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "m4"], env=env, capture_output=True, timeout=600)
    downloaded = subprocess.run(
        ["apt-get", "download", "sendmail-bin", "sendmail-cf"], cwd=work, env=env, capture_output=True, timeout=600
    )
    if downloaded.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", "download", "sendmail-bin", "sendmail-cf"], cwd=work, env=env, capture_output=True, timeout=600
        )
    root = work / "root"
    for deb in work.glob("*.deb"):
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
    if not (root / "usr/libexec/sendmail/sendmail").exists() or not shutil.which("m4"):
        return None
    return root


def _configure(tmp_path: Path, root: Path, mode: str, make_settings) -> tuple[Path, Path]:
    settings = make_settings()
    services = build_services(settings)
    designate(services, "soumu@city.example.jp", "総務課")
    designate(services, "jinji@city.example.jp", "人事課")
    services.close()
    etc = tmp_path / "etc"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mailintake",
            "mta-config",
            "sendmail",
            "--mode",
            mode,
            "--relay",
            "127.0.0.1:2525",
            "--map-dir",
            str(etc),
            "--output",
            str(etc),
            "--data-dir",
            str(settings.data_dir),
        ],
        check=True,
        capture_output=True,
        env=dict(os.environ, MAILINTAKE_DATABASE_URL=settings.database_url),
    )
    generated = (etc / "sendmail.mc").read_text()
    features, definitions = generated.split("MAILER_DEFINITIONS\n", 1)
    # The test system has no /etc/mail/aliases of its own.
    features = features.replace("/etc/mail/aliases,", "")
    cf_dir = root / "usr/share/sendmail/cf"
    mc = (
        f"divert(-1)\ndefine(`_CF_DIR_', `{cf_dir}/')\ndivert(0)dnl\n"
        f"include(`{cf_dir}/m4/cf.m4')dnl\nVERSIONID(`mailintake test')dnl\nOSTYPE(`linux')dnl\n"
        "define(`confDONT_PROBE_INTERFACES', `True')dnl\n"
        f"define(`QUEUE_DIR', `{tmp_path}/queue')dnl\n"
        # Maps under /tmp live in a world-writable path: fine for a test.
        "define(`confDONT_BLAME_SENDMAIL', `GroupWritableDirPathSafe,MapInUnsafeDirPath')dnl\n"
        "LOCAL_DOMAIN(`city.example.jp')dnl\n"
        + features
        + "MAILER(`local')dnl\nMAILER(`smtp')dnl\nMAILER_DEFINITIONS\n"
        + definitions
    )
    (tmp_path / "queue").mkdir()
    (tmp_path / "test.mc").write_text(mc)
    cf = tmp_path / "sendmail.cf"
    with open(cf, "w") as out:
        subprocess.run(["m4", str(tmp_path / "test.mc")], stdout=out, check=True)
    sendmail = root / "usr/libexec/sendmail/sendmail"
    makemap = root / "usr/libexec/sendmail/makemap"
    for name in ("mailertable", "virtusertable"):
        with open(etc / name, "rb") as source:
            subprocess.run([str(makemap), "-C", str(cf), "hash", str(etc / name)], stdin=source, check=True)
    if mode == "copy":
        _sendmail(sendmail, cf, "-bi")
    return sendmail, cf


def _sendmail(sendmail: Path, cf: Path, *args: str) -> str:
    # Sendmail sleeps 60 s when it cannot qualify the host name, as here
    # without DNS: run it in its own UTS namespace under a qualified name.
    command = " ".join([str(sendmail), "-C", str(cf), *args])
    result = subprocess.run(
        ["unshare", "--uts", "sh", "-c", f"hostname mx.city.example.jp && exec {command}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout + result.stderr


def _verify(sendmail: Path, cf: Path, address: str) -> str:
    return _sendmail(sendmail, cf, "-bv", address)


@pytest.mark.parametrize("mode", ["divert", "copy"])
def test_designated_addresses_resolve_to_the_relay_and_others_do_not(
    mode: str, sendmail_root: Path | None, tmp_path: Path, make_settings
) -> None:
    require(sendmail_root is not None, "Debian's sendmail packages could not be fetched")
    assert sendmail_root is not None
    sendmail, cf = _configure(tmp_path, sendmail_root, mode, make_settings)
    for local in ("soumu", "jinji", "SOUMU"):
        result = _verify(sendmail, cf, f"{local}@City.Example.JP")
        route = f"{local.lower()}@city.example.jp.mailintake.internal"
        assert f"deliverable: mailer mailintake, host [127.0.0.1], user {route}" in result, result
        # Copy mode also hands the mail to the local mailbox of the same
        # name (no such OS user here, hence "User unknown").
        kept_locally = any(line.startswith(f"{local.lower()}... ") for line in result.splitlines())
        assert kept_locally == (mode == "copy"), result
    other = _verify(sendmail, cf, "other@city.example.jp")
    # Left to local delivery ("User unknown": no such OS user on this machine).
    assert "mailer mailintake" not in other, other
    assert "deliverable: mailer local, user other" in other or "User unknown" in other, other
