"""Argon2id password hashing (orchestrator.md §3): t=3, m=64 MiB, p=2, salt 16, hash 32, PHC strings.

Hashing is CPU- and memory-heavy, so it runs in a dedicated thread pool of `max_concurrent_hashes` threads (never
inside the event loop, and never more at once). An unknown handle verifies against a dummy hash so the response time
does not reveal which handles exist.
"""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from cynode.errors import FieldError, Invalid

HASH_ALG = "argon2id"
MIN_PASSWORD, MAX_PASSWORD = 8, 256

_HASHER = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=2, hash_len=32, salt_len=16,
                         type=Type.ID)


def check_password_rules(password: str, field: str = "password") -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise Invalid(f"{field}: must be {MIN_PASSWORD}-{MAX_PASSWORD} characters",
                      [FieldError(field, f"must be {MIN_PASSWORD}-{MAX_PASSWORD} characters")])


class Passwords:
    def __init__(self, max_concurrent: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, max_concurrent), thread_name_prefix="argon2")
        self._dummy: str | None = None

    async def _run(self, fn: object, *args: object) -> object:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)  # type: ignore[arg-type]

    async def hash(self, password: str) -> str:
        return str(await self._run(_HASHER.hash, password))

    async def verify(self, phc: str | None, password: str) -> bool:
        """True when `password` matches; a missing hash (unknown user, no credential) checks the dummy hash."""
        target = phc if phc is not None else await self._dummy_hash()
        ok = bool(await self._run(_verify, target, password))
        return ok and phc is not None

    @staticmethod
    def needs_rehash(phc: str) -> bool:
        try:
            return _HASHER.check_needs_rehash(phc)
        except InvalidHashError:
            return True

    async def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(24))
        return self._dummy

    async def warm_up(self) -> None:
        await self._dummy_hash()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _verify(phc: str, password: str) -> bool:
    try:
        return _HASHER.verify(phc, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
