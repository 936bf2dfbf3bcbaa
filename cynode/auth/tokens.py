"""Token primitives: HS256 JWTs (access and node tokens) and opaque secrets stored only as SHA-256.

The JWT helpers are generic so the control plane uses the same code for node tokens (orchestrator.md §3): HS256 only
(`none` and every other algorithm rejected), `iss=cynodeai`, a `token_type` claim checked on decode, 30 s leeway.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt

from cynode.errors import Unauthenticated

ISSUER = "cynodeai"
ALGORITHM = "HS256"
LEEWAY_S = 30
PAT_PREFIX = "cyn_pat_"
REFRESH_PREFIX = "cyn_rt_"

_REQUIRED = ["iss", "sub", "iat", "exp", "jti", "token_type"]


def encode_jwt(claims: dict[str, Any], secret: bytes, ttl_s: float, token_type: str) -> tuple[str, datetime]:
    """Sign `claims` plus iss/iat/exp/jti/token_type; returns the token and its expiry (UTC)."""
    now = int(time.time())
    exp = now + max(0, int(ttl_s))
    body = {**claims, "iss": ISSUER, "iat": now, "exp": exp, "jti": uuid.uuid4().hex, "token_type": token_type}
    token = jwt.encode(body, secret, algorithm=ALGORITHM)
    return token, datetime.fromtimestamp(exp, UTC)


def decode_jwt(token: str, secret: bytes, token_type: str) -> dict[str, Any]:
    """Verify signature (HS256 only), issuer, expiry (30 s leeway) and token_type; any failure is Unauthenticated."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[ALGORITHM], issuer=ISSUER, leeway=LEEWAY_S,
            options={"require": _REQUIRED, "verify_signature": True, "verify_exp": True, "verify_iat": True},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise Unauthenticated("invalid token") from None
    if claims.get("token_type") != token_type or not isinstance(claims.get("sub"), str):
        raise Unauthenticated("invalid token") from None
    return claims


class JwtVerifier:
    """`decode_jwt` with a bounded cache of already-verified tokens, so a busy client does not pay for the signature
    check on every request. Only the signature and claims parsing are cached: expiry is checked on every call, and
    callers still check the session (or node) in the database."""

    def __init__(self, secret: bytes, token_type: str, max_entries: int = 10_000) -> None:
        self.secret = secret
        self.token_type = token_type
        self.max_entries = max_entries
        self._verified: dict[str, dict[str, Any]] = {}

    def __call__(self, token: str) -> dict[str, Any]:
        claims = self._verified.get(token)
        if claims is None:
            claims = decode_jwt(token, self.secret, self.token_type)
            if len(self._verified) >= self.max_entries:
                self._verified.clear()
            self._verified[token] = claims
        elif claims["exp"] + LEEWAY_S <= time.time():
            del self._verified[token]
            raise Unauthenticated("token expired")
        return claims


def _random_urlsafe(nbytes: int = 32) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).rstrip(b"=").decode()


def new_refresh_token() -> str:
    """32 random bytes, base64url; the prefix only helps secret scanners and log scrubbing recognise it."""
    return REFRESH_PREFIX + _random_urlsafe(32)


def new_api_token() -> str:
    return PAT_PREFIX + _random_urlsafe(32)


def token_hash(token: str) -> bytes:
    """What is stored for refresh and personal API tokens: the SHA-256 of the token text."""
    return hashlib.sha256(token.encode()).digest()


def handle_fingerprint(handle: str) -> str:
    """How an unknown handle is recorded in auth_audit_log: never the raw input."""
    return "sha256:" + hashlib.sha256(handle.encode(errors="replace")).hexdigest()[:16]
