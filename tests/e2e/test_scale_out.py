"""Scale-out: two daphne workers sharing PostgreSQL and a Redis channel layer.

A LiveKit webhook delivered to one worker must reach a supervisor whose
browser is connected to the other; minting on both workers at once must
write every audit row to the shared database.
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from demo.devserver import DEV_API_KEY, DEV_API_SECRET
from tests.support.datastores import postgres_server, redis_server
from tests.support.livekit import sign_webhook, webhook_event
from tests.support.processes import daphne_server, free_port, run_manage

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@dataclass
class Cluster:
    workers: list[str]
    env: dict[str, str]
    seed: dict[str, Any]

    def manage(self, *args: str) -> str:
        return run_manage(self.env, *args)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with postgres_server() as database_url, redis_server() as redis_url:
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DEBUG": "1",
            "LIVEKIT_URL": f"ws://127.0.0.1:{free_port()}",
            "LIVEKIT_API_KEY": DEV_API_KEY,
            "LIVEKIT_API_SECRET": DEV_API_SECRET,
        }
        partial = Cluster([], env, {})
        partial.manage("migrate", "-v0")
        partial.seed = json.loads(partial.manage("seed_demo", "--json"))
        with (
            daphne_server(free_port(), env) as first,
            daphne_server(free_port(), env) as second,
        ):
            partial.workers = [first, second]
            yield partial


def test_webhook_on_one_worker_updates_a_browser_on_the_other(
    cluster: Cluster, browser: Browser
) -> None:
    room = "scale-out-room"
    conversation_id = cluster.manage(
        "shell",
        "-v0",
        "-c",
        "from anyreach_listen.models import *; o = Organization.objects.get(slug='demo'); "
        f"c = Conversation.objects.create(organization=o, team=o.teams.get(), "
        f"status='triggered', livekit_room='{room}', caller_label='+1 555 0999'); print(c.pk)",
    ).strip()
    webhook_worker, browser_worker = cluster.workers

    context = browser.new_context(base_url=browser_worker)
    try:
        page = context.new_page()
        page.goto("/accounts/login/")
        login = cluster.seed["users"]["supervisor"]
        page.get_by_label("Username").fill(login["username"])
        page.get_by_label("Password").fill(login["password"])
        page.get_by_role("button", name="Sign in").click()
        status = page.locator(f'tr[data-conversation="{conversation_id}"] .status')
        expect(status).to_have_text("Triggered")
        expect(page.locator("#stream-status")).to_have_text("Updates live.")

        body = webhook_event("room_started", room)
        response = httpx.post(
            f"{webhook_worker}/livekit/webhook",
            content=body,
            headers={
                "Authorization": sign_webhook(body, DEV_API_KEY, DEV_API_SECRET),
                "Content-Type": "application/webhook+json",
            },
        )
        assert response.status_code == 200, response.text
        expect(status).to_have_text("In progress", timeout=15_000)
    finally:
        context.close()


def test_concurrent_mints_on_both_workers_share_one_audit(cluster: Cluster) -> None:
    key = cluster.seed["api_keys"]["manage"]
    conversation = cluster.seed["conversations"]["active"]

    def mint(i: int) -> str:
        worker = cluster.workers[i % 2]
        response = httpx.post(
            f"{worker}/core/conversations/{conversation}/listener-token",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["token"])

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        tokens = list(pool.map(mint, range(20)))
    assert len(set(tokens)) == 20
    count = cluster.manage(
        "shell",
        "-v0",
        "-c",
        "from anyreach_listen.models import ListenSession as L; "
        "print(L.objects.filter(via='api', api_key__name='demo-manage').count())",
    )
    assert int(count) == 20
