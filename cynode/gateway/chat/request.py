"""Decoding and validating a Chat Completions request (agents.md §3.3) into what the pipeline needs.

Unknown fields are ignored; a wrong type or value is a 400 whose `param` names the field (`messages[2].content`).
Content may be a string or a list of parts of which only `{type: "text", text}` is accepted (joined with newlines).
`developer` messages count as `system`. The model is the trimmed-empty default `cynodeai.pm` or the exact id given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from cynode.contracts.chat import PM_MODEL, ChatCompletionRequest, MessageIn
from cynode.gateway.chat import errors
from cynode.utf8 import decode_json

ROLES = ("system", "developer", "user", "assistant", "tool")
MAX_MESSAGES = 1000
MAX_TOKENS = 131_072
MAX_STOPS = 4
MAX_STOP_CHARS = 256

_PATH = re.compile(r" - at `\$\.?([^`]*)`$")


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # system | user | assistant | tool
    content: str


@dataclass(frozen=True)
class ChatInput:
    model: str
    messages: list[Message]
    stream: bool
    include_usage: bool
    options: dict[str, Any] = field(default_factory=dict)  # Ollama options, for direct inference only

    @property
    def last_user_index(self) -> int:
        return max(i for i, m in enumerate(self.messages) if m.role == "user")


def decode(raw: bytes) -> ChatCompletionRequest:
    try:
        return decode_json(raw, ChatCompletionRequest)
    except msgspec.ValidationError as e:
        text = str(e)
        m = _PATH.search(text)
        raise errors.invalid(_PATH.sub("", text), m.group(1) if m and m.group(1) else None) from None
    except msgspec.DecodeError:
        raise errors.invalid("the request body is not valid JSON") from None


def _content(i: int, msg: MessageIn) -> str:
    param = f"messages[{i}].content"
    c = msg.content
    if c is None:
        text = ""
    elif isinstance(c, str):
        text = c
    else:
        texts = []
        for part in c:
            if part.type != "text":
                raise errors.unsupported_content(param)
            if part.text is None:
                raise errors.invalid("a text part needs `text`", param)
            texts.append(part.text)
        text = "\n".join(texts)
    if "\x00" in text:
        raise errors.invalid("NUL characters are not allowed", param)
    return text


def _messages(raw: list[MessageIn]) -> list[Message]:
    if not 1 <= len(raw) <= MAX_MESSAGES:
        raise errors.invalid(f"give 1 to {MAX_MESSAGES} messages", "messages")
    out = []
    for i, msg in enumerate(raw):
        if msg.role not in ROLES:
            raise errors.invalid("role must be system, developer, user, assistant or tool", f"messages[{i}].role")
        out.append(Message("system" if msg.role == "developer" else msg.role, _content(i, msg)))
    users = [i for i, m in enumerate(out) if m.role == "user"]
    if not users:
        raise errors.invalid("messages must include a user message", "messages")
    if not out[users[-1]].content.strip():
        raise errors.invalid("the last user message must not be empty", f"messages[{users[-1]}].content")
    return out


def _options(req: ChatCompletionRequest) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if req.temperature is not None:
        if not 0 <= req.temperature <= 2:
            raise errors.invalid("temperature must be from 0 to 2", "temperature")
        opts["temperature"] = req.temperature
    if req.top_p is not None:
        if not 0 <= req.top_p <= 1:
            raise errors.invalid("top_p must be from 0 to 1", "top_p")
        opts["top_p"] = req.top_p
    for name in ("max_completion_tokens", "max_tokens"):
        value = getattr(req, name)
        if value is not None:
            if not 1 <= value <= MAX_TOKENS:
                raise errors.invalid(f"{name} must be from 1 to {MAX_TOKENS}", name)
            opts.setdefault("num_predict", value)
    if req.stop is not None:
        stops = [req.stop] if isinstance(req.stop, str) else req.stop
        if len(stops) > MAX_STOPS or any(not s or len(s) > MAX_STOP_CHARS or "\x00" in s for s in stops):
            raise errors.invalid(f"stop: up to {MAX_STOPS} non-empty strings of at most {MAX_STOP_CHARS} characters",
                                 "stop")
        if stops:
            opts["stop"] = stops
    if req.seed is not None:
        if not -(2**63) <= req.seed < 2**63:
            raise errors.invalid("seed is out of range", "seed")
        opts["seed"] = req.seed
    return opts


def parse(raw: bytes) -> ChatInput:
    """The validated request; ChatError(400) otherwise."""
    req = decode(raw)
    if req.n is not None and req.n != 1:
        raise errors.invalid("only n=1 is supported", "n")
    messages = _messages(req.messages)
    options = _options(req)
    model = req.model if req.model is not None and req.model.strip() else PM_MODEL
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    return ChatInput(model=model, messages=messages, stream=bool(req.stream), include_usage=include_usage,
                     options=options)


def audit_model(model: str) -> str:
    """A model id as the audit row may hold it (the id of a refused request is the client's text)."""
    return model.replace("\x00", "")[:200]
