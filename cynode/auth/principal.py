"""Who is calling: resolved from the bearer token and the database on every request (no cache)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ADMIN_ROLES = frozenset({"owner", "admin"})

TokenKind = Literal["access", "api_token"]


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    handle: str
    roles: tuple[str, ...]  # role names bound at system scope, directly or through an active group
    group_ids: tuple[str, ...]  # the user's active groups
    token_kind: TokenKind
    session_id: str | None = None  # refresh_sessions.id for access tokens
    token_id: str | None = None  # api_tokens.id for personal API tokens

    @property
    def is_admin(self) -> bool:
        """Admin = an active owner or admin binding at system scope; the handle is never the test."""
        return not ADMIN_ROLES.isdisjoint(self.roles)
