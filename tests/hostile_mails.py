"""Builders of hostile mail, shared by the tests and bench/hostile.py: each
is small to describe and expensive to parse naively."""

from __future__ import annotations

import base64
import os


def many_empty_parts(parts: int) -> bytes:
    """A multipart mail of ``parts`` empty parts (each part is 2 lines)."""
    head = (
        b"From: a@example.jp\r\nTo: soumu@city.example.jp\r\nSubject: =?UTF-8?B?"
        + base64.b64encode("空のパートだらけ".encode())
        + b"?=\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    )
    return head + b"--b\r\n\r\n" * parts + b"--b--\r\n"


def nested_forwards(depth: int, payload_bytes: int) -> bytes:
    """A mail forwarded ``depth`` times, with an attachment at the core."""
    data = base64.encodebytes(os.urandom(payload_bytes)).replace(b"\n", b"\r\n")
    inner = (
        b"From: a@example.jp\r\nSubject: core\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=core\r\n\r\n--core\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--core\r\nContent-Type: application/octet-stream; name=x.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + data
        + b"--core--\r\n"
    )
    for level in range(depth):
        boundary = f"lv{level}".encode()
        inner = (
            b"From: f@example.jp\r\nTo: soumu@city.example.jp\r\nSubject: Fwd " + str(level).encode() + b"\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n"
            b"--" + boundary + b"\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
            b"--" + boundary + b"\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--" + boundary + b"--\r\n"
        )
    return inner


def huge_subject(characters: int) -> bytes:
    """A Subject of ``characters`` characters, folded every 70."""
    word = "長い件名" * (characters // 4)
    folded = "\r\n ".join(word[i : i + 70] for i in range(0, len(word), 70))
    head = f"From: a@example.jp\r\nTo: soumu@city.example.jp\r\nSubject: {folded}\r\n"
    return head.encode("utf-8") + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\nbody\r\n"
