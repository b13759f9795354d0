"""mailintake address …, mta-config and probe: the designated addresses and the MTA in front of them."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from ..config import Settings
from ..intake.addresses import JST, normalize_address
from . import _services, cli, common_options

# -- designated addresses -------------------------------------------------------


@cli.group()
def address() -> None:
    """Designated receiving addresses (収受用アドレス)."""


@address.command("add")
@click.argument("address_text", metavar="ADDRESS")
@click.option(
    "--section", required=True, help="Section (担当課) that handles this address's mail; made first with `section add`."
)
@click.option("--label", default="", help="Free text shown beside the address.")
@common_options
def address_add(settings: Settings, address_text: str, section: str, label: str) -> None:
    """Designate ADDRESS; the relay accepts mail for it at once."""
    info = _services(settings).addresses.add(address_text, section, label)
    click.echo(f"added {info.address} ({info.section})")


@address.command("list")
@common_options
def address_list(settings: Settings) -> None:
    """List designated addresses."""
    infos = _services(settings).addresses.list()
    if not infos:
        click.echo("no designated addresses yet; add one with 'mailintake address add'")
        return
    for info in infos:
        state = "enabled " if info.enabled else "disabled"
        label = f"  {info.label}" if info.label else ""
        last = info.last_received.astimezone(JST).strftime("%Y-%m-%d %H:%M") if info.last_received else "-"
        click.echo(f"{info.address}\t{state}\t{info.section}\t{info.message_count} messages\tlast {last}{label}")


@address.command("edit")
@click.argument("address_text", metavar="ADDRESS")
@click.option("--section", default=None, help="New section (担当課).")
@click.option("--label", default=None, help="New label.")
@common_options
def address_edit(settings: Settings, address_text: str, section: str | None, label: str | None) -> None:
    """Change the section or label of ADDRESS."""
    info = _services(settings).addresses.update(address_text, section, label)
    click.echo(f"updated {info.address} ({info.section})")


@address.command("delete")
@click.argument("address_text", metavar="ADDRESS")
@common_options
def address_delete(settings: Settings, address_text: str) -> None:
    """Remove ADDRESS; only possible while no mail is stored for it."""
    _services(settings).addresses.delete(address_text)
    click.echo(f"deleted {normalize_address(address_text)}")


@address.command("stats")
@click.argument("address_text", metavar="ADDRESS")
@click.option("--days", type=click.IntRange(1, 366), default=14, show_default=True)
@common_options
def address_stats(settings: Settings, address_text: str, days: int) -> None:
    """Messages per day (Japan time) for ADDRESS."""
    for day, count in _services(settings).addresses.daily_counts(address_text, days):
        click.echo(f"{day.isoformat()}\t{count}")


@address.command("disable")
@click.argument("address_text", metavar="ADDRESS")
@common_options
def address_disable(settings: Settings, address_text: str) -> None:
    """Stop accepting mail for ADDRESS (550 at RCPT); stored mail stays."""
    info = _services(settings).addresses.set_enabled(address_text, False)
    click.echo(f"disabled {info.address}")


@address.command("enable")
@click.argument("address_text", metavar="ADDRESS")
@common_options
def address_enable(settings: Settings, address_text: str) -> None:
    """Accept mail for ADDRESS again."""
    info = _services(settings).addresses.set_enabled(address_text, True)
    click.echo(f"enabled {info.address}")


# -- MTA configuration -----------------------------------------------------------


@cli.command("mta-config")
@click.argument("mta", type=click.Choice(["postfix", "sendmail"]))
@click.option(
    "--mode",
    type=click.Choice(["copy", "divert"]),
    default="divert",
    show_default=True,
    help="copy: the mailbox keeps the mail and a copy comes here; divert: it comes only here.",
)
@click.option(
    "--relay",
    "relay",
    multiple=True,
    metavar="HOST:PORT",
    help="Where the MTA reaches the relay (default: smtp_host:smtp_port); "
    "repeat it for two or more nodes, tried in turn.",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path, allow_dash=True),
    default=None,
    help="Write the map files, main.cf/sendmail.mc lines and commands.sh into this private folder "
    "instead of printing; '-' writes them as a tar archive to standard output (for root to extract).",
)
@click.option("--map-dir", default=None, help="Folder the maps will live in (default /etc/postfix or /etc/mail).")
@common_options
def mta_config(
    settings: Settings, mta: str, mode: str, relay: tuple[str, ...], output: Path | None, map_dir: str | None
) -> None:
    """Generate the Postfix or Sendmail configuration for the enabled addresses."""
    from ..operations import mta_config as generator

    relays = generator.relay_list(" ".join(relay)) if relay else [(settings.smtp_host, settings.smtp_port)]
    enabled = [info.address for info in _services(settings).addresses.list() if info.enabled]
    build = generator.postfix if mta == "postfix" else generator.sendmail
    extra = {"map_dir": map_dir} if map_dir else {}
    config = build(enabled, mode, relays, settings.copy_route_suffix, **extra)
    if output is None:
        click.echo(config.render(), nl=False)
        return
    if str(output) == "-":
        sys.stdout.buffer.write(config.archive())
        sys.stdout.buffer.flush()
        return
    for path in config.write(output):
        click.echo(f"wrote {path}")


# -- probe ----------------------------------------------------------------------------


@cli.command("probe")
@click.argument("address_text", metavar="ADDRESS")
@click.option(
    "--via",
    "via",
    default=None,
    metavar="HOST:PORT",
    help="The organisation's MTA to send the probe through (default: the probe_via setting).",
)
@click.option(
    "--from", "sender", default="mailintake-probe@localhost", show_default=True, help="Envelope and header sender."
)
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for the probe to arrive.")
@common_options
def probe_command(settings: Settings, address_text: str, via: str, sender: str, timeout: float) -> None:
    """Send a probe through the MTA to a designated address and time its arrival."""
    from ..operations.probing import send_probe, wait_for_probe

    services = _services(settings)
    address = normalize_address(address_text)
    if not services.addresses.get(address).enabled:
        raise click.ClickException(f"{address} is disabled; the relay would refuse the probe")
    via = via or settings.probe_via
    from ..operations.mta_config import host_port

    host, port = host_port(via)
    started = time.monotonic()
    probe_id = send_probe(services, address, host, port, sender)
    result = wait_for_probe(services, probe_id, timeout, started)
    if result.message_id is None:
        click.echo(f"probe {probe_id} to {address} via {via}: not arrived within {timeout:g} s", err=True)
        sys.exit(1)
    click.echo(f"probe {probe_id} to {address} via {via}: arrived in {result.seconds:.2f} s")
