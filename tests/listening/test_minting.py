"""minting.py: the grant path's re-check, on a real PostgreSQL with two connections racing."""

from __future__ import annotations

import json

from tests.support.datastores import postgres_server
from tests.support.processes import run_manage


def test_a_mint_waiting_on_a_revocation_refuses_and_leaves_nothing_unrevoked() -> None:
    with postgres_server() as url:
        env = {
            "DJANGO_SETTINGS_MODULE": "tests.support.load_settings",
            "DATABASE_URL": url,
            "DEBUG": "0",
            "SECRET_KEY": "mint-race-" + "k" * 40,
            "ALLOWED_HOSTS": "127.0.0.1",
            "CREDENTIAL_HASH_KEY": "h" * 40,
            "LIVEKIT_URL": "ws://127.0.0.1:9",  # never called: nothing joins
            "LIVEKIT_API_KEY": "devkey",
            "LIVEKIT_API_SECRET": "a-mint-race-test-secret-of-32-chars!",
        }
        run_manage(env, "migrate", "-v0")
        out = run_manage(env, "shell", "-c", "from tests.support.mint_race import main; main()")
    outcome = json.loads(out.strip().splitlines()[-1])
    assert outcome["unrevoked_sessions"] == 0, outcome
    assert outcome["mint"] == "credentials_revoked", outcome
    assert outcome["mint_waited"] is True, outcome  # it waited for the revocation's lock
