"""Secret redaction for chat (agents.md §3.9): every kind, the `name: value` forms, and properties over generated
text (a planted secret never survives, redacting twice changes nothing, ordinary text is left alone)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cynode.gateway.redaction import PLACEHOLDER, redact, redact_async

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"


@pytest.mark.parametrize(("text", "expected", "kinds"), [
    ("key sk-proj0123456789abcdefghij done", f"key {PLACEHOLDER} done", ("api_key",)),
    ("AKIAIOSFODNN7EXAMPLE", PLACEHOLDER, ("api_key",)),
    ("api_key=abc123", f"api_key: {PLACEHOLDER}", ("api_key",)),
    ("API-KEY: abc123", f"API-KEY: {PLACEHOLDER}", ("api_key",)),
    ("apikey = 'a b c' rest", f"apikey: '{PLACEHOLDER}' rest", ("api_key",)),
    ("client_secret: s3cr3t", f"client_secret: {PLACEHOLDER}", ("api_key",)),
    ('{"secret": "s3cr3t", "n": 1}', f'{{"secret": "{PLACEHOLDER}", "n": 1}}', ("api_key",)),
    ("ghp_" + "a" * 36, PLACEHOLDER, ("token",)),
    ("gho_" + "B1" * 20, PLACEHOLDER, ("token",)),
    ("xoxb-123456789012-abcdef", PLACEHOLDER, ("token",)),
    ("Authorization: Bearer abc.def-ghi", f"Authorization: Bearer {PLACEHOLDER}", ("token",)),
    (f"jwt {JWT} end", f"jwt {PLACEHOLDER} end", ("token",)),
    ("token=abc123", f"token: {PLACEHOLDER}", ("token",)),
    ("access_token: abc123", f"access_token: {PLACEHOLDER}", ("token",)),
    ("password: hunter2", f"password: {PLACEHOLDER}", ("password",)),
    ('"Password"="hunter2"', f'"Password": "{PLACEHOLDER}"', ("password",)),
    ("a\n-----BEGIN EC PRIVATE KEY-----\nMHcC\nAQEE\n-----END EC PRIVATE KEY-----\nb", f"a\n{PLACEHOLDER}\nb",
     ("private_key",)),
    ("-----BEGIN PRIVATE KEY-----\ncut off mid-paste", PLACEHOLDER, ("private_key",)),
    ("password: -----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----", f"password: {PLACEHOLDER}",
     ("private_key",)),
    ("BEARER Bearer 000000", f"BEARER {PLACEHOLDER}", ("token",)),
    ("Bearer password: hunter2", f"Bearer password: {PLACEHOLDER}", ("password",)),
    ("token: Bearer abc", f"token: {PLACEHOLDER}", ("token",)),
    ("Bearer sk-00000000000000000000", f"Bearer {PLACEHOLDER}", ("api_key",)),
    ("api_key=sk-abcdefghijklmnopqrstuvwxyz and password=x and Bearer " + JWT,
     f"api_key: {PLACEHOLDER} and password: {PLACEHOLDER} and Bearer {PLACEHOLDER}", ("api_key", "password", "token")),
])
def test_each_kind_is_replaced_and_recorded(text: str, expected: str, kinds: tuple[str, ...]) -> None:
    out = redact(text)
    assert (out.text, out.kinds, out.applied) == (expected, kinds, True)


@pytest.mark.parametrize("text", [
    "hello world", "max_tokens: 5", "the tokens are counted", "sk-short", "Bearer", "password:", "token = ",
    f"password: {PLACEHOLDER}", f"Bearer {PLACEHOLDER}", "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----",
    "AKIA is a prefix", "eyJ alone",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    out = redact(text)
    assert (out.text, out.kinds, out.applied) == (text, (), False)


async def test_large_texts_are_redacted_off_the_event_loop() -> None:
    text = ("lorem ipsum " * 20_000) + "password=hunter2"
    out = await redact_async(text)
    assert out.text.endswith(f"password: {PLACEHOLDER}") and out.kinds == ("password",)


secret_values = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="\"',;"),
                        min_size=6, max_size=30).filter(lambda s: PLACEHOLDER not in s)
planted = st.one_of(
    st.tuples(st.just("api_key"), st.text("abcdefXYZ0123456789._-", min_size=20, max_size=40).map(lambda s: "sk-" + s)),
    st.tuples(st.just("api_key"), st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=16, max_size=16)
              .map(lambda s: "AKIA" + s)),
    st.tuples(st.just("token"), st.text("abcXYZ0123456789", min_size=36, max_size=50).map(lambda s: "ghs_" + s)),
    st.tuples(st.just("token"), secret_values.map(lambda s: "Bearer " + s)),
    st.tuples(st.just("token"), secret_values.map(lambda s: "token=" + s)),
    st.tuples(st.just("password"), secret_values.map(lambda s: "password: " + s)),
    st.tuples(st.just("api_key"), secret_values.map(lambda s: "secret=" + s)),
    st.tuples(st.just("private_key"), st.text("ABCDEFabcdef0123456789+/\n", min_size=8, max_size=80)
              .map(lambda s: f"-----BEGIN RSA PRIVATE KEY-----\n{s}\n-----END RSA PRIVATE KEY-----")),
)
surrounding = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)


def _split(secret: str) -> tuple[str, str]:
    """The name that stays (`password`) and the part of a planted secret that must disappear (the value)."""
    for prefix in ("Bearer ", "token=", "password: ", "secret="):
        if secret.startswith(prefix):
            return prefix[:-1], secret[len(prefix):]
    return "", secret.split("\n", 1)[1] if secret.startswith("-----BEGIN") else secret


@settings(max_examples=300, deadline=None)
@given(before=surrounding, item=planted, after=surrounding)
def test_a_planted_secret_never_survives(before: str, item: tuple[str, str], after: str) -> None:
    kind, secret = item
    out = redact(f"{before} {secret}\n{after}")
    name, core = _split(secret)
    left = out.text.replace(PLACEHOLDER, "\x00")
    assert left.count(core) <= before.count(core) + after.count(core) + name.count(core)  # only where those had it
    assert PLACEHOLDER in out.text and out.kinds  # surroundings may claim it ("password: " + "sk-..."), so:
    assert kind in redact(f" {secret}\n").kinds  # alone, it is recorded as its own kind


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(surrounding, st.lists(st.one_of(surrounding, planted.map(lambda p: p[1]))).map(" ".join)))
def test_redacting_twice_changes_nothing(text: str) -> None:
    once = redact(text)
    twice = redact(once.text)
    assert twice.text == once.text and twice.kinds == ()
