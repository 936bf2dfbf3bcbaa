"""The gateway's services, built once at startup (after migrations) and reached by handlers per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cynode.auth.limits import RateLimiter
from cynode.auth.passwords import Passwords
from cynode.auth.service import AuthService
from cynode.auth.users import UserService
from cynode.config import Settings
from cynode.db.pool import Database
from cynode.gateway.artifacts import ArtifactStore
from cynode.gateway.audit import AuditWriter
from cynode.gateway.chat.service import ChatService
from cynode.gateway.chat.threads import ThreadService
from cynode.gateway.guard import ClientIp
from cynode.gateway.tasks.service import TaskService


@dataclass
class GatewayServices:
    settings: Settings
    db: Database
    passwords: Passwords
    auth: AuthService
    users: UserService
    tasks: TaskService
    artifacts: ArtifactStore
    audit: AuditWriter
    user_limiter: RateLimiter
    client_ip: ClientIp
    system_settings: Any = None  # cynode.gateway.settings_api.SettingsService
    chat: ChatService | None = None
    threads: ThreadService | None = None

    async def read_artifact(self, task_id: str, artifact_id: str) -> tuple[str, bytes]:
        """(name, content) of a task's attachment, for the scheduler to send as a sandbox input file.
        Raises LookupError when the artifact (or its file) does not exist."""
        return await self.tasks.read_input(task_id, artifact_id)

    async def stop(self) -> None:
        """Flush the audit trails (no row is lost at shutdown), then release the hashing threads."""
        if self.chat is not None:
            await self.chat.stop()
        await self.audit.stop()
        self.passwords.close()
