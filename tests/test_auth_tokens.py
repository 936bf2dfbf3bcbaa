"""JWT helpers, token hashing and the in-memory abuse controls (pure; no database)."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from cynode.auth.limits import Lockout, RateLimiter
from cynode.auth.tokens import (
    PAT_PREFIX,
    decode_jwt,
    encode_jwt,
    handle_fingerprint,
    new_api_token,
    new_refresh_token,
    token_hash,
)
from cynode.errors import Unauthenticated

SECRET = b"s" * 32


def test_encode_decode_round_trip_adds_standard_claims() -> None:
    token, exp = encode_jwt({"sub": "u1", "sid": "s1"}, SECRET, 900, "access")
    claims = decode_jwt(token, SECRET, "access")
    assert claims["sub"] == "u1" and claims["sid"] == "s1" and claims["iss"] == "cynodeai"
    assert claims["token_type"] == "access" and claims["exp"] - claims["iat"] == 900 and len(claims["jti"]) == 32
    assert int(exp.timestamp()) == claims["exp"]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "HS256"


def test_wrong_type_secret_issuer_or_algorithm_is_unauthenticated() -> None:
    node, _ = encode_jwt({"sub": "n1"}, SECRET, 60, "node")
    with pytest.raises(Unauthenticated):
        decode_jwt(node, SECRET, "access")  # a node token on a user endpoint
    access, _ = encode_jwt({"sub": "u1"}, SECRET, 60, "access")
    with pytest.raises(Unauthenticated):
        decode_jwt(access, b"x" * 32, "access")
    foreign = jwt.encode({"sub": "u1", "iss": "other", "iat": 1, "exp": 2**40, "jti": "j", "token_type": "access"},
                         SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        decode_jwt(foreign, SECRET, "access")
    body = {"sub": "u1", "iss": "cynodeai", "iat": 1, "exp": 2**40, "jti": "j", "token_type": "access"}
    none_alg = jwt.encode(body, None, algorithm="none")
    with pytest.raises(Unauthenticated):
        decode_jwt(none_alg, SECRET, "access")
    hs512 = jwt.encode(body, SECRET * 2, algorithm="HS512")
    with pytest.raises(Unauthenticated):
        decode_jwt(hs512, SECRET * 2, "access")
    with pytest.raises(Unauthenticated):
        decode_jwt("not.a.jwt", SECRET, "access")
    missing_jti = jwt.encode({k: v for k, v in body.items() if k != "jti"}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        decode_jwt(missing_jti, SECRET, "access")


def test_expiry_has_a_30_second_leeway() -> None:
    import time

    now = int(time.time())
    body = {"sub": "u1", "iss": "cynodeai", "iat": now - 100, "jti": "j", "token_type": "access"}
    within = jwt.encode({**body, "exp": now - 20}, SECRET, algorithm="HS256")
    assert decode_jwt(within, SECRET, "access")["sub"] == "u1"
    beyond = jwt.encode({**body, "exp": now - 40}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="expired"):
        decode_jwt(beyond, SECRET, "access")


def test_opaque_tokens_are_random_and_only_their_hash_is_kept() -> None:
    a, b = new_refresh_token(), new_refresh_token()
    assert a != b and len(base64.urlsafe_b64decode(a.split("_", 2)[2] + "=")) == 32
    pat = new_api_token()
    assert pat.startswith(PAT_PREFIX)
    assert token_hash(pat) != token_hash(a) and len(token_hash(pat)) == 32
    fp = handle_fingerprint("nobody")
    assert fp.startswith("sha256:") and len(fp) == 7 + 16 and "nobody" not in fp


def test_rate_limiter_refills_over_time_and_zero_is_off() -> None:
    now = [0.0]
    rl = RateLimiter(60, clock=lambda: now[0])
    assert all(rl.hit("ip") == 0 for _ in range(60))
    wait = rl.hit("ip")
    assert wait == 1
    assert rl.hit("other-ip") == 0  # per key
    now[0] += 1.0
    assert rl.hit("ip") == 0
    off = RateLimiter(0)
    assert all(off.hit("x") == 0 for _ in range(1000))


def test_lockout_after_n_failures_within_the_window_then_expires() -> None:
    now = [0.0]
    lo = Lockout(10, 900, clock=lambda: now[0])
    for _ in range(9):
        lo.failure("alice")
    assert lo.locked("alice") == 0
    lo.failure("alice")
    assert 0 < lo.locked("alice") <= 900
    now[0] += 901
    assert lo.locked("alice") == 0
    for _ in range(9):  # failures spread over more than the window never lock
        lo.failure("bob")
        now[0] += 200
    lo.failure("bob")
    assert lo.locked("bob") == 0
    for _ in range(5):
        lo.failure("carol")
    lo.success("carol")
    for _ in range(9):
        lo.failure("carol")
    assert lo.locked("carol") == 0


def test_verifier_cache_still_checks_expiry() -> None:
    import time

    from cynode.auth.tokens import JwtVerifier

    verify = JwtVerifier(SECRET, "access")
    now = int(time.time())
    body = {"sub": "u1", "iss": "cynodeai", "iat": now - 100, "jti": "j", "token_type": "access"}
    almost = jwt.encode({**body, "exp": now - 29}, SECRET, algorithm="HS256")
    assert verify(almost)["sub"] == "u1"  # verified once, then served from the cache
    assert verify(almost)["sub"] == "u1"
    time.sleep(1.2)
    with pytest.raises(Unauthenticated, match="expired"):
        verify(almost)
    with pytest.raises(Unauthenticated):
        verify(jwt.encode({**body, "exp": now + 60}, b"x" * 32, algorithm="HS256"))  # never cached when invalid
    node, _ = encode_jwt({"sub": "n"}, SECRET, 60, "node")
    with pytest.raises(Unauthenticated):
        verify(node)


def test_client_ip_trusts_forwarded_for_only_from_trusted_proxies() -> None:
    from cynode.gateway.guard import ClientIp

    def scope(peer: str, xff: str | None) -> dict:
        headers = [(b"x-forwarded-for", xff.encode())] if xff else []
        return {"client": (peer, 1), "headers": headers}

    untrusting = ClientIp([])
    assert untrusting(scope("10.0.0.5", "1.2.3.4")) == "10.0.0.5"
    trusting = ClientIp(["10.0.0.0/8", "not-an-ip"])
    assert trusting(scope("10.0.0.5", "1.2.3.4, 10.0.0.7")) == "1.2.3.4"
    assert trusting(scope("10.0.0.5", "6.6.6.6, 1.2.3.4")) == "1.2.3.4"  # a client cannot spoof past the last hop
    assert trusting(scope("192.168.1.1", "1.2.3.4")) == "192.168.1.1"
    assert trusting(scope("10.0.0.5", None)) == "10.0.0.5"
