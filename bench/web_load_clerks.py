"""The clerks of ``bench/web_load``, for locust: each signs in as its own
account (clerk00 … clerk49, five per section) and works as a clerk does —
mostly the 受信一覧, then searches, opening mails and registering one.

Request kinds are named so that locust reports each: list, search,
detail, register_form, register, healthz (the baseline). The clerks are
locust's FastHttpUser (geventhttpclient): the load generator shares the
machine with the server, and costs it a fraction of the CPU that
requests-based users do."""

from __future__ import annotations

import itertools
import os
import random
import re
import time
from urllib.parse import urlencode

from locust import between, task
from locust.contrib.fasthttp import FastHttpUser

PASSWORD = os.environ["MAILINTAKE_BENCH_PASSWORD"]
SEARCH_WORDS = ("議", "会議", "予算", "予算要求", "照会", "契約の")
_accounts = itertools.count()

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
ROW = re.compile(r'data-id="(\d+)" data-status="new"')


class Clerk(FastHttpUser):
    wait_time = between(0.5, 1.5)  # reading between clicks

    def on_start(self) -> None:
        self.username = f"clerk{next(_accounts) % 50:02d}"
        self.new_ids: list[str] = []
        for _ in range(10):  # an office signing in at once may be asked to wait
            form = self.client.get("/login", name="login").text
            token = TOKEN.search(form)
            assert token is not None
            signed_in = self.client.post(
                "/login",
                data={"username": self.username, "password": PASSWORD, "csrf_token": token.group(1), "next": "/"},
                name="login",
                allow_redirects=False,
            )
            if signed_in.status_code == 303:
                return
            time.sleep(float(signed_in.headers.get("retry-after", "1")))
        raise RuntimeError(f"{self.username} could not sign in")

    @task(6)
    def inbox(self) -> None:
        page = self.client.get("/messages", name="list").text
        self.new_ids = ROW.findall(page)

    @task(3)
    def search(self) -> None:
        query = urlencode({"status": "all", "q": random.choice(SEARCH_WORDS)})
        self.client.get(f"/messages?{query}", name="search")

    @task(3)
    def detail(self) -> None:
        if self.new_ids:
            self.client.get(f"/messages/{random.choice(self.new_ids)}", name="detail")

    @task(1)
    def register(self) -> None:
        if not self.new_ids:
            return
        message_id = self.new_ids.pop(random.randrange(len(self.new_ids)))
        form = self.client.get(f"/register?id={message_id}", name="register_form").text
        token = TOKEN.search(form)
        received_on = re.search(rf'name="received_on_{message_id}" type="date" value="([^"]+)"', form)
        if token is None or received_on is None:
            return  # registered by a colleague meanwhile: the form says so
        with self.client.post(
            "/register",
            data={
                "csrf_token": token.group(1),
                "message_id": message_id,
                f"subject_{message_id}": "負荷試験の収受",
                f"sender_{message_id}": "山田 太郎",
                f"received_on_{message_id}": received_on.group(1),
                f"retention_{message_id}": "5年",
            },
            name="register",
            allow_redirects=False,
            catch_response=True,
        ) as response:
            # 303 to /registered: numbered, or named as taken by a colleague.
            if response.status_code != 303 or "/registered?" not in response.headers.get("location", ""):
                response.failure(f"registration answered {response.status_code}")

    @task(1)
    def healthz(self) -> None:
        self.client.get("/healthz", name="healthz")
