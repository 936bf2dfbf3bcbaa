"""Default projects (orchestrator.md §5): every user, `system` included, has exactly one, made race-safely."""

from __future__ import annotations

import uuid

from cynode.auth.principal import Principal
from cynode.auth.store import IdentityRepo
from cynode.errors import FieldError, Invalid, NotFound

DEFAULT_PREFIX = "default-"


def default_slug(user_id: str) -> str:
    return f"{DEFAULT_PREFIX}{user_id}"


async def ensure_default_project(repo: IdentityRepo, user_id: str, handle: str) -> str:
    """Get or create the user's default project (and the owner binding on it); returns its id.

    The insert settles races on the unique slug; when a concurrent creator wins between our snapshot and our insert,
    the statement sees neither row, so it is simply run again.
    """
    for _ in range(5):
        row = await repo.get_or_create_project(default_slug(user_id), f"{handle} (default)")
        if row is not None:
            if row["created"]:
                await repo.bind_project_owner(user_id, row["id"])
            return str(row["id"])
    raise RuntimeError("could not get or create the default project")


async def resolve_project(repo: IdentityRepo, principal: Principal, project_id: str | None) -> str:
    """The project a new task goes to: the given accessible one (else 404), or the caller's default project."""
    if project_id is None:
        return await ensure_default_project(repo, principal.user_id, principal.handle)
    try:
        pid = uuid.UUID(project_id)
    except ValueError:
        raise Invalid("project_id: must be a UUID", [FieldError("project_id", "must be a UUID")]) from None
    row = await repo.accessible_project(pid, principal.user_id, list(principal.group_ids), principal.is_admin)
    if row is None:
        raise NotFound("project not found")
    return str(row["id"])
