"""mailintake token …, user …, sso-link and directory …: who may use the service."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlencode

import click

from ..config import Settings, read_secret
from ..models import ROLES
from ..people.groupware import sign_handoff
from ..people.tokens import DEFAULT_SCOPES, SCOPES
from . import _services, cli, common_options

# -- API tokens -------------------------------------------------------------------


@cli.group()
def token() -> None:
    """Bearer tokens for the JSON API."""


@token.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(SCOPES),
    help="What the token may do (repeatable); default messages:read. "
    "A document system needs registrations:read and registrations:ack.",
)
@click.option("--section", "sections", multiple=True, help="Limit the token to this section (repeatable).")
@common_options
def token_create(settings: Settings, name: str, scopes: tuple[str, ...], sections: tuple[str, ...]) -> None:
    """Create a token; it is printed once, as the last word."""
    value = _services(settings).tokens.create(name, scopes or DEFAULT_SCOPES, list(sections) or None)
    click.echo(f"token for {name}: {value}")


@token.command("list")
@common_options
def token_list(settings: Settings) -> None:
    """List tokens with their scopes and sections."""
    for info in _services(settings).tokens.list():
        sections = ",".join(sorted(info.section_names)) if info.section_names is not None else "all sections"
        state = "revoked" if info.revoked else "active"
        click.echo(f"{info.name}\t{state}\t{' '.join(sorted(info.scopes))}\t{sections}")


@token.command("revoke")
@click.argument("name")
@common_options
def token_revoke(settings: Settings, name: str) -> None:
    """Revoke a token at once."""
    _services(settings).tokens.revoke(name)
    click.echo(f"revoked {name}")


# -- users ----------------------------------------------------------------------------


@cli.group()
def user() -> None:
    """Web UI users: clerks (係員), section admins (所属管理者), system admins."""


def _read_password(password_stdin: bool) -> str | None:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("password", hide_input=True, confirmation_prompt=True)


@user.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="clerk", show_default=True)
@click.option("--section", "sections", multiple=True, help="Section (課) the user belongs to; repeatable.")
@click.option("--name", "display_name", default="", help="Display name (氏名).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--no-password", is_flag=True, help="No local password (signs in through the groupware only).")
@common_options
def user_add(
    settings: Settings,
    username: str,
    role: str,
    sections: tuple[str, ...],
    display_name: str,
    password_stdin: bool,
    no_password: bool,
) -> None:
    """Add a user."""
    password = None if no_password else _read_password(password_stdin)
    info = _services(settings).accounts.add_user(
        username, password=password, role=role, sections=list(sections), display_name=display_name
    )
    click.echo(f"added {info.username} ({info.role}; {', '.join(info.section_names) or 'no section'})")


@user.command("list")
@common_options
def user_list(settings: Settings) -> None:
    """List users."""
    for info in _services(settings).accounts.list_users():
        state = "enabled" if info.enabled else "disabled"
        click.echo(f"{info.username}\t{info.role}\t{','.join(info.section_names)}\t{state}\t{info.display_name}")


@user.command("edit")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default=None)
@click.option("--section", "sections", multiple=True, help="Replaces the user's sections; repeatable.")
@click.option("--name", "display_name", default=None)
@click.option("--password-stdin", is_flag=True, help="Set a new password read from standard input.")
@common_options
def user_edit(
    settings: Settings,
    username: str,
    role: str | None,
    sections: tuple[str, ...],
    display_name: str | None,
    password_stdin: bool,
) -> None:
    """Change a user's role, sections, name or password."""
    password = _read_password(True) if password_stdin else None
    info = _services(settings).accounts.update_user(
        username, role=role, sections=list(sections) or None, display_name=display_name, password=password
    )
    click.echo(f"updated {info.username} ({info.role}; {', '.join(info.section_names) or 'no section'})")


@user.command("disable")
@click.argument("username")
@common_options
def user_disable(settings: Settings, username: str) -> None:
    """Disable a user; their sessions end at once."""
    _services(settings).accounts.update_user(username, enabled=False)
    click.echo(f"disabled {username}")


@user.command("enable")
@click.argument("username")
@common_options
def user_enable(settings: Settings, username: str) -> None:
    """Enable a disabled user."""
    _services(settings).accounts.update_user(username, enabled=True)
    click.echo(f"enabled {username}")


@cli.command("sso-link")
@click.argument("username")
@click.option("--next", "next_url", default="/messages", show_default=True, help="Page to land on.")
@common_options
def sso_link(settings: Settings, username: str, next_url: str) -> None:
    """Print a signed groupware hand-off link for USERNAME (valid
    groupware_max_age seconds, once): what a portal gateway produces."""
    if settings.groupware_handoff != "signed" or settings.groupware_secret_file is None:
        raise click.ClickException("groupware_handoff が signed ではありません（deploy/sso.md を参照）")
    secret = read_secret(settings.groupware_secret_file, "groupware_secret_file").encode()
    query = urlencode({settings.groupware_parameter: sign_handoff(secret, username), "next": next_url})
    click.echo(f"{settings.public_url}/sso/groupware?{query}")


# -- sections ----------------------------------------------------------------------


@cli.group()
def section() -> None:
    """Sections (課) and their 文書記号."""


@section.command("add")
@click.argument("name")
@click.option("--symbol", default="", help="文書記号; default: the name without 課/室/係.")
@common_options
def section_add(settings: Settings, name: str, symbol: str) -> None:
    """Add a section (課); addresses and users can then be given to it."""
    info = _services(settings).accounts.add_section(name, symbol)
    click.echo(f"added {info.name} (文書記号 {info.symbol})")


@section.command("list")
@common_options
def section_list(settings: Settings) -> None:
    """Sections with their 文書記号."""
    for info in _services(settings).accounts.sections():
        click.echo(f"{info.name}\t{info.symbol}")


# -- directory ---------------------------------------------------------------------


@cli.group()
def directory() -> None:
    """Sections and staff assignments from the personnel system (組織マスタ, 異動情報)."""


@directory.command("import")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--inbox",
    "inboxes",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A linkage inbox folder: every *.csv in it is imported and removed once applied; repeatable.",
)
@common_options
def directory_import(settings: Settings, files: tuple[Path, ...], inboxes: tuple[Path, ...]) -> None:
    """Import 組織マスタ and 異動情報 CSV files (UTF-8 or CP932)."""
    from ..leases import Lease
    from ..people.directory import DirectoryImport

    engine = _services(settings).engine
    # Every node's timer may run this on one shared inbox: one at a time.
    lease = Lease(engine, "directory-import")
    if not lease.held():
        click.echo("別のノードが取り込み中です。残ったファイルは次の回に取り込みます。")
        return
    try:
        found = list(files) + [p for inbox in inboxes for p in sorted(inbox.glob("*.csv")) if p.is_file()]
        report = DirectoryImport(engine).import_files(found)
        for path in report.done:
            if any(path.parent == inbox for inbox in inboxes):
                path.unlink()
    finally:
        lease.release()
    click.echo(
        f"{report.files} file(s): {report.sections_added} section(s) added, {report.sections_changed} changed, "
        f"{report.users_moved} user(s) moved, {report.rows_waiting} row(s) waiting for their 発令日"
    )
    if report.users_unknown:
        click.echo(f"no user for 職員番号 {', '.join(sorted(set(report.users_unknown)))}", err=True)
