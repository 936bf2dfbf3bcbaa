"""What the gateway stores in jobs.payload and the scheduler reads back (orchestrator.md §6.6, §7.2)."""

from __future__ import annotations

from typing import Literal

import msgspec


class JobInputRef(msgspec.Struct, frozen=True):
    """An attachment handed to a sandbox job: read from the artifact store at dispatch, sent as input_files."""

    name: str
    artifact_id: str


class SandboxPayload(msgspec.Struct, frozen=True, omit_defaults=True):
    command: list[str]
    timeout_seconds: int
    image: str | None = None
    use_inference: bool = False
    env: dict[str, str] | None = None
    input_files: list[JobInputRef] | None = None
    inline_files: dict[str, str] | None = None  # name -> UTF-8 text (e.g. a long prompt for the model-call script)


class JobPayload(msgspec.Struct, frozen=True, omit_defaults=True):
    version: int
    kind: Literal["sandbox", "model_call"]
    sandbox: SandboxPayload | None = None  # kind=sandbox
    prompt: str | None = None  # kind=model_call: the prompt with text attachments appended
