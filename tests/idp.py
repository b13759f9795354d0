"""Real identity providers on loopback for the sign-in tests, started once
per test session: the certified ``oidc-provider`` (npm) under Node.js and
SimpleSAMLphp (Debian) under PHP's built-in server. Each is installed when
missing; under CI=true a provider that cannot be had fails the tests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from joserfc.jwk import KeySet, RSAKey

from mailintake.config import Settings
from mailintake.services import Services, build_services
from tests.conftest import ServiceThread, apt_install, free_port, require
from tests.factories import designate
from tests.web import add_user

HERE = Path(__file__).parent / "idp"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mailintake-tests"


@contextmanager
def signin_site(settings: Settings) -> Iterator[tuple[Services, ServiceThread]]:
    """The running service with 総務課's address, the clerk tanaka (no
    password needed) and a system administrator to read the audit log."""
    services = build_services(settings)
    designate(services, "soumu@city.example.jp", "総務課")
    add_user(services, "tanaka", ["総務課"])
    add_user(services, "admin", [], role="system_admin")
    service = ServiceThread(settings).start()
    try:
        yield services, service
    finally:
        service.stop()
        services.close()


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the provider exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s: {log.read_text(errors='replace')[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


# -- OpenID Connect --------------------------------------------------------------------


@dataclass
class OidcProvider:
    issuer: str
    keys: KeySet  # the provider's signing keys, private parts included
    clients: dict[str, str]  # client_id → secret
    process: subprocess.Popen[bytes]


def _node_modules() -> Path:
    """``npm ci`` of tests/idp/oidc into a cache keyed by its lock file."""
    require(apt_install("nodejs", "node") and apt_install("npm", "npm"), "Node.js and npm")
    lock = (HERE / "oidc" / "package-lock.json").read_bytes()
    target = CACHE / f"oidc-provider-{hashlib.sha256(lock).hexdigest()[:12]}"
    if not (target / "node_modules" / "oidc-provider").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(HERE / "oidc" / name, target / name)
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=target,
            capture_output=True,
            text=True,
            timeout=600,
        )
        require(done.returncode == 0, f"npm ci oidc-provider: {done.stderr[-500:]}")
    shutil.copy(HERE / "oidc" / "provider.mjs", target / "provider.mjs")
    return target


def start_oidc_provider(tmp: Path, redirect_base: str, users: dict[str, dict[str, str]]) -> OidcProvider:
    folder = _node_modules()
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    key = RSAKey.generate_key(2048, parameters={"kid": "test-signing", "use": "sig", "alg": "RS256"}, private=True)
    keys = KeySet([key])
    clients = {"mailintake": "secret-of-mailintake", "other-rp": "secret-of-other-rp"}
    client_list = [
        {
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uris": [f"{redirect_base}/sso/oidc/callback"],
            "post_logout_redirect_uris": [f"{redirect_base}/login?notice=logged_out"],
        }
        for client_id, secret in clients.items()
    ]
    env = dict(
        os.environ,
        OIDC_ISSUER=issuer,
        OIDC_USERS=json.dumps(users),
        OIDC_CLIENTS=json.dumps(client_list),
        OIDC_JWKS=json.dumps({"keys": [key.as_dict(private=True)]}),
        OIDC_COOKIE_KEY=hashlib.sha256(os.urandom(16)).hexdigest(),
    )
    log = tmp / "oidc-provider.log"
    with log.open("wb") as out:
        process = subprocess.Popen(["node", "provider.mjs"], cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
    _wait_http(f"{issuer}/.well-known/openid-configuration", process, log)
    return OidcProvider(issuer, keys, clients, process)


# -- SAML --------------------------------------------------------------------------------

SIMPLESAMLPHP = Path("/usr/share/simplesamlphp")


@dataclass
class SamlIdP:
    base_url: str
    entity_id: str
    metadata_file: Path  # the IdP's metadata, as the SP is given it
    folder: Path
    process: subprocess.Popen[bytes]

    def trust_sp(self, entity_id: str, acs: str, sls: str, **options: object) -> None:
        """(Re)writes the IdP's record of a service provider; SimpleSAMLphp
        reads its metadata on every request."""
        extra = "".join(f"    {json.dumps(k)} => {_php(v)},\n" for k, v in options.items())
        entry = (
            f"$metadata[{json.dumps(entity_id)}] = [\n"
            f"    'AssertionConsumerService' => {json.dumps(acs)},\n"
            f"    'SingleLogoutService' => {json.dumps(sls)},\n"
            f"    'simplesaml.nameidattribute' => 'uid',\n"
            f"{extra}];\n"
        )
        entries = self.folder / "sp" / f"{hashlib.sha256(entity_id.encode()).hexdigest()[:16]}.php"
        entries.parent.mkdir(exist_ok=True)
        entries.write_text(entry)
        combined = "<?php\n" + "".join(p.read_text() for p in sorted(entries.parent.glob("*.php")))
        (self.folder / "metadata" / "saml20-sp-remote.php").write_text(combined)


def _php(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def start_saml_idp(tmp: Path, users: dict[str, dict[str, str]]) -> SamlIdP:
    require(apt_install("php-cli", "php"), "PHP")
    require(apt_install("simplesamlphp", str(SIMPLESAMLPHP / "www")), "SimpleSAMLphp")
    if not _php_has("dom"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-qq", "php-xml", "php-mbstring"], env=env, timeout=1200)
    require(_php_has("dom"), "PHP's XML extension (php-xml)")
    folder = tmp / "simplesamlphp"
    for name in ("config", "metadata", "cert", "data"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-idp",
         "-keyout", str(folder / "cert" / "idp.key"), "-out", str(folder / "cert" / "idp.crt")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    accounts = "".join(
        f"        {json.dumps(login + ':' + user['password'])} => "
        f"['uid' => [{json.dumps(user['uid'])}], 'displayName' => [{json.dumps(user['name'])}]],\n"
        for login, user in users.items()
    )
    (folder / "config" / "config.php").write_text(
        textwrap.dedent(f"""\
        <?php
        $config = [
            'baseurlpath' => '{base}/',
            'certdir' => '{folder}/cert/',
            'loggingdir' => '{folder}/data/',
            'datadir' => '{folder}/data/',
            'tempdir' => '{folder}/data',
            'metadatadir' => '{folder}/metadata/',
            'secretsalt' => '{os.urandom(16).hex()}',
            'auth.adminpassword' => '{os.urandom(16).hex()}',
            'technicalcontact_email' => 'idp@example.org',
            'timezone' => 'UTC',
            'logging.handler' => 'file',
            'logging.level' => SimpleSAML\\Logger::INFO,
            'enable.saml20-idp' => true,
            'module.enable' => ['exampleauth' => true, 'core' => true, 'saml' => true],
            'store.type' => 'phpsession',
            'session.phpsession.savepath' => '{folder}/data',
            'admin.checkforupdates' => false,
        ];
        """)
    )
    (folder / "config" / "authsources.php").write_text(
        "<?php\n$config = [\n    'admin' => ['core:AdminPassword'],\n"
        f"    'users' => ['exampleauth:UserPass',\n{accounts}    ],\n];\n"
    )
    entity_id = f"{base}/idp"
    (folder / "metadata" / "saml20-idp-hosted.php").write_text(
        f"<?php\n$metadata[{json.dumps(entity_id)}] = ['host' => '__DEFAULT__', 'privatekey' => 'idp.key', "
        "'certificate' => 'idp.crt', 'auth' => 'users', 'sign.logout' => true];\n"
    )
    (folder / "metadata" / "saml20-sp-remote.php").write_text("<?php\n")
    log = folder / "data" / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            # No opcode cache: the tests rewrite the IdP's metadata between requests.
            ["php", "-d", "opcache.enable=0", "-S", f"127.0.0.1:{port}", "-t", str(SIMPLESAMLPHP / "www")],
            env=dict(os.environ, SIMPLESAMLPHP_CONFIG_DIR=str(folder / "config")),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    _wait_http(f"{base}/saml2/idp/metadata.php", process, log)
    metadata = folder / "idp-metadata.xml"
    metadata.write_bytes(httpx.get(f"{base}/saml2/idp/metadata.php", timeout=10).content)
    return SamlIdP(base, entity_id, metadata, folder, process)


def _php_has(extension: str) -> bool:
    done = subprocess.run(["php", "-m"], capture_output=True, text=True, timeout=30)
    return extension in done.stdout.split()
