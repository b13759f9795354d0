"""Mail addresses as text: the normal form MTA lookup tables compare, the
designated address a copy-routed recipient stands for, and the one check
of an address that may be designated."""

from __future__ import annotations

import re

from ..errors import AddressError


def normalize_address(address: str) -> str:
    """Lower-case the whole address, like MTA lookup tables do; strip <>."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    return address.lower()


def designated_form(rcpt: str, copy_route_suffix: str) -> str:
    """The designated address an envelope recipient stands for: itself, or,
    for a copy routed through ``<address>.<copy_route_suffix>``, the
    address without the suffix."""
    normalized = normalize_address(rcpt)
    if copy_route_suffix:
        tail = "." + copy_route_suffix
        if normalized.endswith(tail) and "@" in normalized[: -len(tail)]:
            return normalized[: -len(tail)]
    return normalized


# The safe set for a designated address. Sendmail's aliases and Postfix's
# maps give meaning to more (`|program`, `/file`, `:include:`, `,`): such an
# address would turn the generated MTA configuration into program delivery.
_LOCAL_PART = re.compile(r"[a-z0-9_+\-]+(\.[a-z0-9_+\-]+)*")
_DOMAIN = re.compile(r"([a-z0-9]([a-z0-9\-]*[a-z0-9])?\.)+[a-z0-9]([a-z0-9\-]*[a-z0-9])?")


def validate_address(address: str) -> str:
    """The one check of a designated address, for the CLI, the admin page,
    the directory import and the MTA configuration generators."""
    normalized = normalize_address(address)
    local, sep, domain = normalized.rpartition("@")
    if len(normalized) > 254:
        raise AddressError(f"アドレスが長すぎます: {address!r}")
    if not sep or not _LOCAL_PART.fullmatch(local) or not _DOMAIN.fullmatch(domain) or len(local) > 64:
        raise AddressError(
            f"収受用アドレスとして使えません: {address!r}（@ の前は英数字と . _ + - だけ、@ の後はドメイン名）"
        )
    return normalized
