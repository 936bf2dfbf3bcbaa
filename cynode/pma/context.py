"""LLM context composition (agents.md §2.5): one system message with fixed headings, then the conversation."""

from __future__ import annotations

from cynode.contracts.pma import PmaChatRequest, PmaMessage
from cynode.pma.bundles import DEFAULT_SKILL_ID, DEFAULT_SKILL_NAME, Bundle


def system_block(bundle: Bundle, req: PmaChatRequest) -> str:
    parts = [bundle.baseline]
    if bundle.instructions:
        parts.append(bundle.instructions)
    if req.project is not None:
        p = req.project
        parts.append(f"## Project context\n- id: {p.id}\n- slug: {p.slug}\n- name: {p.display_name}")
    if req.task_id:
        parts.append(f"## Task context\n- id: {req.task_id}")
    if req.additional_context and req.additional_context.strip():
        parts.append(f"## User additional context\n{req.additional_context.strip()}")
    parts.append(f"## Skills\n### Skill: {DEFAULT_SKILL_NAME} ({DEFAULT_SKILL_ID})\n{bundle.default_skill}")
    return "\n\n".join(parts)


def within_budget(messages: list[PmaMessage], budget: int) -> list[PmaMessage]:
    """The newest messages up to `budget` characters; the last user message is always kept."""
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=len(messages) - 1)
    kept: list[int] = [last_user]
    used = len(messages[last_user].content)
    for i in range(len(messages) - 1, -1, -1):
        if i == last_user:
            continue
        size = len(messages[i].content)
        if used + size > budget:
            break
        kept.append(i)
        used += size
    return [messages[i] for i in sorted(kept)]


def compose(bundle: Bundle, req: PmaChatRequest, budget: int) -> list[dict[str, str]]:
    history = within_budget(list(req.messages), budget)
    return [{"role": "system", "content": system_block(bundle, req)},
            *({"role": m.role, "content": m.content} for m in history)]
