"""Exceptions that know how they are answered.

    MailintakeError               exit code 1 on the command line
    ├── ConfigError               bad setting or config file
    ├── NotFound                  HTTP 404; unknown id or address
    ├── BadRequest                HTTP 400; bad query parameter or input
    ├── Unauthorized              HTTP 401; missing or bad API token
    ├── Forbidden                 HTTP 403; missing or bad CSRF token, wrong role
    ├── Conflict                  HTTP 409; the mail's state changed meanwhile
    ├── TooManyAttempts           HTTP 429; sign-in throttled
    ├── AddressError              invalid or duplicate designated address
    └── SpoolError                SMTP 451; the spool cannot take the message
        └── SpoolFull             SMTP 452; no space left for the message

Each edge (SMTP handler, HTTP app, CLI) maps these in one place.
"""

from __future__ import annotations


class MailintakeError(Exception):
    http_status = 500
    exit_code = 1


class ConfigError(MailintakeError):
    exit_code = 2


class NotFound(MailintakeError):
    http_status = 404


class BadRequest(MailintakeError):
    http_status = 400


class Unauthorized(MailintakeError):
    http_status = 401


class Forbidden(MailintakeError):
    http_status = 403


class Conflict(MailintakeError):
    http_status = 409


class TooManyAttempts(MailintakeError):
    http_status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AddressError(MailintakeError):
    http_status = 400


class SpoolError(MailintakeError):
    """The message could not be made durable; the MTA must keep and retry it."""

    smtp_reply = "451 4.3.0 Requested action aborted: local error in processing; try again later"


class SpoolFull(SpoolError):
    smtp_reply = "452 4.3.1 Insufficient system storage; try again later"
