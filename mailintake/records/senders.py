"""The sender directory (発信者の名簿) the clerks grow as they register: the
組織名 and 氏名 given for a mail address, and the 組織名 for its domain, so
that the next mail from the same sender — or from the same organisation —
prefills itself."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import SenderEntry, utcnow


@dataclass(frozen=True)
class SenderGuess:
    organisation: str
    name: str


# Domains that many unrelated people share: never one organisation.
SHARED_DOMAINS = frozenset(
    {
        "gmail.com", "yahoo.co.jp", "ymail.ne.jp", "outlook.jp", "outlook.com", "hotmail.com", "hotmail.co.jp",
        "live.jp", "icloud.com", "me.com", "docomo.ne.jp", "ezweb.ne.jp", "au.com", "softbank.ne.jp",
        "i.softbank.jp", "nifty.com", "biglobe.ne.jp", "so-net.ne.jp", "ocn.ne.jp",
    }
)  # fmt: skip


def _domain_key(address: str) -> str:
    domain = address.rpartition("@")[2] if "@" in address else ""
    return "" if not domain or domain in SHARED_DOMAINS else "@" + domain


def guess(session: Session, address: str, display_name: str) -> SenderGuess:
    """What the directory knows of ``address`` (else of its domain), the
    mail's display name standing in for a name it does not know."""
    address = address.strip().lower()
    keys = [k for k in (address, _domain_key(address)) if k]
    found = {e.key: e for e in session.scalars(select(SenderEntry).where(SenderEntry.key.in_(keys)))}
    exact, domain = found.get(address), found.get(_domain_key(address))
    organisation = (exact.organisation if exact else "") or (domain.organisation if domain else "")
    name = (exact.name if exact else "") or display_name.strip()
    return SenderGuess(organisation, name)


def remember(session: Session, address: str, organisation: str, name: str) -> None:
    """After a registration: this address is this person of this organisation."""
    address = address.strip().lower()
    if not address or not (organisation or name):
        return
    entries = [(address, organisation, name)]
    if organisation and _domain_key(address):
        entries.append((_domain_key(address), organisation, ""))
    for key, org, person in entries:
        entry = session.get(SenderEntry, key) or SenderEntry(key=key[:320])
        entry.organisation, entry.name, entry.updated_at = org, person, utcnow()
        session.add(entry)
