"""assist/signing.py: the signed order (text hash beside the token, ``iss``, ``aud``, a key
derived from the LiveKit secret), the agents' one receive path, and acknowledgements."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from livekit import api

from anyreach_listen.assist import signing
from anyreach_listen.assist.signing import GuidanceOrder

SECRET = "a-signing-test-secret-of-at-least-32-chars"
KEY, ROOM, AGENT = "APIkey", "call-room", "agent-ava"
ORDER = GuidanceOrder("g1", "say", "Offer the refund.")


def signed(order: GuidanceOrder = ORDER, **kwargs: Any) -> str:
    fields = {"room": ROOM, "api_key": KEY, "api_secret": SECRET, "identity": AGENT} | kwargs
    return signing.sign(order, **fields)


def refusal(payload: str, **kwargs: Any) -> str:
    fields = {"room": ROOM, "api_secret": SECRET, "api_key": KEY, "identity": AGENT} | kwargs
    with pytest.raises(signing.GuidanceRefused) as refused:
        signing.verify(payload, **fields)
    return str(refused.value)


def test_the_text_travels_beside_the_token_as_utf8_and_the_token_holds_its_hash() -> None:
    text = "\N{GRINNING FACE}" * 1000
    payload = signed(GuidanceOrder("g1", "whisper", text))
    assert len(payload.encode()) < signing.MAX_PAYLOAD
    data = json.loads(payload)
    assert data["text"] == text and text in payload  # not \\u-escaped
    claims = jwt.decode(data["token"], options={"verify_signature": False})
    assert "text" not in claims and claims["sha256"] == signing.text_digest(text)
    assert (claims["iss"], claims["aud"], claims["room"], claims["gid"]) == (KEY, AGENT, ROOM, "g1")
    order = signing.verify(payload, room=ROOM, api_secret=SECRET, api_key=KEY, identity=AGENT)
    assert order == GuidanceOrder("g1", "whisper", text)


def test_a_text_other_than_the_signed_one_is_refused() -> None:
    data = json.loads(signed())
    data["text"] = "Deny the refund."
    assert refusal(json.dumps(data)) == "the text is not the one signed"
    del data["text"]
    assert refusal(json.dumps(data)).startswith("invalid signature")


def test_the_issuer_is_checked_when_the_agent_knows_the_api_key() -> None:
    assert refusal(signed(api_key="another-key")) == "signed for another API key"
    # An agent that knows no API key checks the rest, not the issuer.
    order = signing.verify(signed(api_key="another-key"), room=ROOM, api_secret=SECRET)
    assert order == ORDER


def test_the_order_is_addressed_to_one_agent() -> None:
    assert refusal(signed(identity="agent-other")) == "addressed to another participant"
    assert refusal(signed(identity=None)) == "addressed to another participant"
    # Signed without an identity (no aud): only a verifier that checks none takes it.
    assert signing.verify(signed(identity=None), room=ROOM, api_secret=SECRET) == ORDER


def test_orders_and_livekit_access_tokens_never_pass_for_each_other() -> None:
    token = json.loads(signed())["token"]
    with pytest.raises(jwt.InvalidSignatureError):  # not a LiveKit token for this secret
        jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_aud": False})
    livekit_token = api.AccessToken(KEY, SECRET).with_identity(AGENT).to_jwt()
    forged = json.dumps({"token": livekit_token, "text": "hi"})
    assert "Signature verification failed" in refusal(forged)


def test_a_refusal_names_the_order_it_could_not_verify() -> None:
    seen = signing.RecentIds()
    forged = signed(api_secret="x" * 40)
    received = signing.receive(
        forged, room=ROOM, identity=AGENT, api_secret=SECRET, api_key=KEY, seen=seen
    )
    assert (received.order, received.apply) == (None, False) and not seen
    answer = json.loads(received.answer)
    assert answer == {"id": "g1", "status": "refused", "reason": answer["reason"]}
    assert answer["reason"] == "invalid signature: Signature verification failed"
    assert signing.read_acknowledgement(received.answer, "g1") == answer["reason"]
    for unreadable in ("not json", json.dumps({"token": "x.y"}), json.dumps({"token": 5})):
        assert signing.unverified_id(unreadable) == ""


def test_receive_applies_once_and_answers_a_retry_without_acting() -> None:
    seen = signing.RecentIds()
    kwargs: dict[str, Any] = {"room": ROOM, "identity": AGENT, "api_secret": SECRET, "seen": seen}
    first = signing.receive(signed(), **kwargs)
    assert (first.order, first.apply) == (ORDER, True) and "g1" in seen
    again = signing.receive(signed(), **kwargs)
    assert (again.order, again.apply) == (ORDER, False)
    assert json.loads(first.answer) == json.loads(again.answer) == {"id": "g1", "status": "applied"}
    seen.discard("g1")  # the caller could not apply it: a retry tries again
    assert signing.receive(signed(), **kwargs).apply


def test_recent_ids_forget_the_oldest() -> None:
    seen = signing.RecentIds(size=2)
    for order_id in ("a", "b", "a", "c"):
        seen.add(order_id)
    assert list(seen) == ["a", "c"]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ('{"id": "g1", "status": "applied"}', None),
        ('{"id": "g1", "status": "refused", "reason": "expired"}', "expired"),
        ('{"id": "", "status": "refused", "reason": "invalid signature"}', "invalid signature"),
        ('{"id": "", "status": "applied"}', "acknowledgement of another order"),
        ('{"id": "g2", "status": "refused", "reason": "x"}', "acknowledgement of another order"),
        ('{"id": "g2", "status": "applied"}', "acknowledgement of another order"),
        ("[]", "unreadable acknowledgement"),
        ("nope", "unreadable acknowledgement"),
    ],
)
def test_reading_an_acknowledgement(answer: str, reason: str | None) -> None:
    assert signing.read_acknowledgement(answer, "g1") == reason
