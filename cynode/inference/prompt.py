"""Chat messages -> the prompt text a model was trained on.

The packaged Gemma 3 GGUF carries no chat template, so Gemma's turn format is written out here. A registered GGUF
that does carry one (`tokenizer.chat_template`) is rendered with it instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

GEMMA_END_OF_TURN = "<end_of_turn>"
# What /api/show reports as the template of a model without its own: Gemma's turns, in Ollama's template notation.
GEMMA_TEMPLATE = (
    "<start_of_turn>user\n{{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}<end_of_turn>\n<start_of_turn>model\n"
)


@dataclass(frozen=True, slots=True)
class Turn:
    role: str  # system | user | assistant | tool
    content: str


def gemma_prompt(turns: Sequence[Turn]) -> str:
    """Gemma's format: system text goes in front of the first user turn (Gemma has no system role), the assistant
    is called `model`, and the prompt ends with an open model turn for the reply."""
    system = "\n\n".join(t.content.strip() for t in turns if t.role == "system" and t.content.strip())
    out: list[str] = []
    pending_system = system
    for turn in turns:
        if turn.role == "system":
            continue
        role = "model" if turn.role == "assistant" else "user"
        content = turn.content.strip()
        if pending_system and role == "user":
            content = f"{pending_system}\n\n{content}" if content else pending_system
            pending_system = ""
        out.append(f"<start_of_turn>{role}\n{content}{GEMMA_END_OF_TURN}\n")
    if pending_system:  # only system text (or the conversation starts with the model): still say it first
        out.insert(0, f"<start_of_turn>user\n{pending_system}{GEMMA_END_OF_TURN}\n")
    out.append("<start_of_turn>model\n")
    return "".join(out)


def template_prompt(template: str, turns: Sequence[Turn], *, bos_token: str, eos_token: str) -> str:
    """Render a GGUF's own Jinja chat template (as llama.cpp's server does), with the generation prompt opened."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter  # lazy: llama_cpp is heavy

    formatter = Jinja2ChatFormatter(template=template, eos_token=eos_token, bos_token=bos_token)
    messages: list[Any] = [{"role": t.role, "content": t.content} for t in turns]
    return str(formatter(messages=messages).prompt)
