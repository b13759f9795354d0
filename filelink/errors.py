"""Exceptions, each mapped once to an exit status by the command line."""

from __future__ import annotations


class FilelinkError(Exception):
    exit_code = 1


class ConfigError(FilelinkError):
    exit_code = 2


class PermissionSetupError(FilelinkError):
    """The folder tree could not be given its owners, modes or ACLs."""


class ConversionError(FilelinkError):
    """A text file does not decode in the route's source character code."""


class NotAFile(FilelinkError):
    """A claimed outbox entry is not a regular file with one name (a link,
    a FIFO, a device, a hard link): refused, never read."""


class DeliveryRefused(Exception):
    """The destination cannot take the file now (e.g. its name is taken)."""

    @classmethod
    def name_taken(cls, destination: str, name: str) -> DeliveryRefused:
        return cls(f"{destination} の受信フォルダに同名の {name} があり、上書きしない設定です")
