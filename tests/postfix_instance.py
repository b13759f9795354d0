"""A private Postfix instance for tests: its own config, queue, data and
mailbox folders under a temporary directory, smtpd on a loopback port,
virtual mailboxes for city.example.jp, and no delivery anywhere else."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

MAILBOXES = ("soumu", "jinji", "other")


def ensure_postfix() -> bool:
    from .conftest import apt_install

    return apt_install("postfix", "/usr/sbin/postfix")


class PostfixInstance:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.etc = root / "etc"
        self.mail = root / "mail"
        self.log = root / "maillog"

    def configure(self, generated_main_cf: str) -> None:
        for sub in ("etc", "queue", "data", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root / "data", "postfix")
        shutil.chown(self.mail, "nobody", "nogroup")
        master = Path("/etc/postfix/master.cf").read_text()
        lines = []
        for line in master.splitlines():
            if line.startswith("smtp ") and " inet " in line:
                line = f"127.0.0.1:{self.port} inet n - n - - smtpd"
            lines.append(line)
        (self.etc / "master.cf").write_text("\n".join(lines) + "\n")
        (self.etc / "main.cf").write_text(
            f"""compatibility_level = 3.6
queue_directory = {self.root}/queue
data_directory = {self.root}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.city.example.jp
mydomain = city.example.jp
mydestination =
virtual_mailbox_domains = city.example.jp
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = hash:{self.etc}/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
mynetworks = 127.0.0.0/8
smtpd_recipient_restrictions = permit_mynetworks, reject
maillog_file_prefixes = {self.root}
maillog_file = {self.log}
default_transport = error:no mail leaves this test
smtp_dns_support_level = disabled
alias_maps =
alias_database =
biff = no
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
{generated_main_cf}
"""
        )
        (self.etc / "vmailbox").write_text("".join(f"{m}@city.example.jp {m}/\n" for m in MAILBOXES))
        self.postconf("-F", "*/*/chroot = n")
        for name in os.listdir(self.etc):
            if name in ("vmailbox", "mailintake_transport", "mailintake_bcc"):
                self.run("postmap", "-c", str(self.etc), str(self.etc / name))

    def postconf(self, *args: str) -> None:
        self.run("postconf", "-c", str(self.etc), *args)

    def run(self, *args: str) -> str:
        result = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {result.stderr}{self.tail()}")
        return result.stdout

    def start(self) -> None:
        self.run("postfix", "-c", str(self.etc), "check")
        self.run("postfix", "-c", str(self.etc), "start")
        deadline = time.monotonic() + 20
        import socket

        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("postfix did not start listening" + self.tail())

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.etc), "stop"], capture_output=True, timeout=60)

    def flush(self) -> None:
        self.run("postqueue", "-c", str(self.etc), "-f")

    def queue(self) -> str:
        return self.run("postqueue", "-c", str(self.etc), "-p")

    def mailbox(self, name: str) -> list[bytes]:
        folder = self.mail / name / "new"
        return [p.read_bytes() for p in sorted(folder.iterdir())] if folder.exists() else []

    def tail(self) -> str:
        return "\n" + self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
