"""What one generation asks of the model runner, and the events it streams back. Plain data, built from Ollama
options or OpenAI parameters by the API layers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cynode.contracts.inference import ModelOptions
from cynode.inference.prompt import Turn


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampler settings; the defaults are Ollama's."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_penalty: float = 1.1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    seed: int | None = None  # None: a fresh random seed per request


@dataclass(frozen=True, slots=True)
class Grammar:
    """Constrained output: `json` = any JSON value, `schema` = JSON matching a JSON schema."""

    kind: Literal["json", "schema"]
    schema: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """One generation. Exactly one of `turns` (rendered with the model's chat template) or `raw_prompt`."""

    turns: tuple[Turn, ...] | None = None
    raw_prompt: str | None = None
    context: tuple[int, ...] = ()  # tokens of a previous /api/generate exchange to continue from
    sampling: Sampling = field(default_factory=Sampling)
    max_tokens: int = -1  # -1: until the model stops or the context is full
    stop: tuple[str, ...] = ()
    grammar: Grammar | None = None
    num_ctx: int | None = None  # None: the server's n_ctx
    stream: bool = True  # False: the text comes as one Piece at the end (no per-token hand-over to the event loop)


@dataclass(frozen=True, slots=True)
class Started:
    """The model is loaded and the prompt tokenized; tokens follow. HTTP status can still be chosen before this."""

    prompt_tokens: int
    load_ns: int


@dataclass(frozen=True, slots=True)
class Piece:
    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    done_reason: str  # stop | length
    prompt_tokens: int
    eval_count: int
    load_ns: int
    prompt_eval_ns: int
    eval_ns: int
    context: tuple[int, ...] = ()  # prompt + generated tokens (Ollama's `context`)


Event = Started | Piece | Finished


class InvalidRequest(ValueError):
    """The request cannot be served as asked (bad format/schema, unsupported feature): HTTP 400."""


def sampling_from_options(options: ModelOptions | None, base: Sampling | None = None) -> Sampling:
    base = base or Sampling()
    if options is None:
        return base
    pick = {name: getattr(options, name) for name in _SAMPLING_OPTIONS if getattr(options, name) is not None}
    return replace(base, **pick)


def grammar_from_format(fmt: str | dict[str, Any] | None) -> Grammar | None:
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return Grammar("json")
    if isinstance(fmt, dict):
        return Grammar("schema", fmt)
    raise InvalidRequest(f"invalid format {fmt!r}: use \"json\" or a JSON schema object")


def max_tokens_from(num_predict: int | None) -> int:
    """Ollama's num_predict: None, -1 (until the model stops) and -2 (fill the context) all end at the latest when
    the context is full; n >= 0 means at most n tokens."""
    if num_predict is None or num_predict in (-1, -2):
        return -1
    if num_predict < -2:
        raise InvalidRequest(f"invalid num_predict {num_predict}")
    return num_predict


_SAMPLING_OPTIONS = (
    "temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty",
    "frequency_penalty", "mirostat", "mirostat_tau", "mirostat_eta", "seed",
)
