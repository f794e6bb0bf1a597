"""minting.py: the grant path's locks and re-check, on a real PostgreSQL with connections racing."""

from __future__ import annotations

import json

from tests.support.datastores import postgres_server
from tests.support.processes import run_manage


def _outcome(script: str) -> dict[str, object]:
    """Run ``tests.support.<script>.main`` in a shell on a fresh PostgreSQL; its JSON."""
    with postgres_server() as url:
        env = {
            "DJANGO_SETTINGS_MODULE": "tests.support.load_settings",
            "DATABASE_URL": url,
            "DEBUG": "0",
            "SECRET_KEY": f"{script}-" + "k" * 40,
            "ALLOWED_HOSTS": "127.0.0.1",
            "CREDENTIAL_HASH_KEY": "h" * 40,
            "LIVEKIT_URL": "ws://127.0.0.1:9",  # never joined; removals fail and are retried
            "LIVEKIT_API_KEY": "devkey",
            "LIVEKIT_API_SECRET": "a-minting-test-secret-of-32-chars!!",
        }
        run_manage(env, "migrate", "-v0")
        out = run_manage(env, "shell", "-c", f"from tests.support.{script} import main; main()")
    outcome: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return outcome


def test_a_mint_waiting_on_a_revocation_refuses_and_leaves_nothing_unrevoked() -> None:
    outcome = _outcome("mint_race")
    assert outcome["unrevoked_sessions"] == 0, outcome
    assert outcome["mint"] == "credentials_revoked", outcome
    assert outcome["mint_waited"] is True, outcome  # it waited for the revocation's lock


def test_mints_of_one_key_for_one_call_share_their_locks_and_a_revocation_waits_for_both() -> None:
    outcome = _outcome("mint_share")
    assert outcome["first"] == outcome["second"] == "granted", outcome
    # The second committed while the first still held its locks: they did not serialize.
    assert outcome["second_done_while_first_open"] is True, outcome
    # The revocation waited for the open mint, then revoked both sessions.
    assert outcome["revocation_waited"] is True, outcome
    assert (outcome["sessions"], outcome["unrevoked_sessions"]) == (2, 0), outcome
