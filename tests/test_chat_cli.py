"""`cynode chat` as a user runs it (a real subprocess) against the real gateway on a real port, with the real PMA
and the built-in model: one-shot, `-o json`, the interactive session, and the exit codes of cli.md; and the model's
text reaching the terminal without control characters."""

# ruff: noqa: F811 - the fixtures imported from test_chat_api are (re)named as test parameters

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cynode.cli.output import terminal_safe
from tests.support.system import cynode_cli
from tests.test_chat_api import (  # noqa: F401
    UNREACHABLE,
    ChatEnv,
    MakeChat,
    make_chat,
    pma_service,
)


async def run(env: ChatEnv | None, token: str, tmp_path: Path, *args: str,
              stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    cli_env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "CYNODE_TOKEN": token,
               "CYNODE_GATEWAY_URL": env.base if env else "http://127.0.0.1:9"}
    return await asyncio.to_thread(cynode_cli, *args, env=cli_env, input=stdin, timeout=300)


@pytest.mark.model
async def test_one_shot_and_json(make_chat: MakeChat, model_server: str, tmp_path: Path) -> None:
    env = await make_chat(inference_url=model_server, pma=pma_service(model_server))
    token = await env.personal_token(await env.user("ann"))
    r = await run(env, token, tmp_path, "chat", "-m", "Say hello.")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and r.stderr == ""
    r = await run(env, token, tmp_path, "-o", "json", "chat", "-m", "Say hello again.")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["model"] == "cynodeai.pm" and doc["reply"] and doc["id"].startswith("chatcmpl-")
    assert doc["usage"]["completion_tokens"] > 0
    stored = await env.messages()
    assert [m["role"] for m in stored] == ["user", "assistant"] * 2
    assert stored[3]["content"] == doc["reply"] and len({m["thread_id"] for m in stored}) == 1


@pytest.mark.model
async def test_interactive_session_with_new_and_exit(make_chat: MakeChat, model_server: str, tmp_path: Path) -> None:
    env = await make_chat(inference_url=model_server, pma=pma_service(model_server))
    token = await env.personal_token(await env.user("ann"))
    r = await run(env, token, tmp_path, "chat", stdin="My name is Ann.\n\n/help\nWhat is my name?\n/new\nHi.\n/exit\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("you> ") == 7  # one prompt per input line, the last one read /exit
    assert "unknown command /help" in r.stderr and "(new conversation)" in r.stderr
    stored = await env.messages()
    assert [m["content"] for m in stored if m["role"] == "user"] == ["My name is Ann.", "What is my name?", "Hi."]
    threads = [m["thread_id"] for m in stored]
    assert threads[0] == threads[3] != threads[4] == threads[5]  # /new started a second conversation
    r = await run(env, token, tmp_path, "chat", stdin="")  # Ctrl-D at the prompt
    assert r.returncode == 0, r.stderr


async def test_exit_codes(make_chat: MakeChat, tmp_path: Path) -> None:
    env = await make_chat(inference_url=UNREACHABLE)
    token = await env.personal_token(await env.user("ann"))
    cases = [
        (token, ("chat", "-m", "hi", "--model", "nope"), 4, "does not exist"),
        (token, ("chat", "-m", "hi", "--project", "not-a-uuid"), 6, "OpenAI-Project"),
        (token, ("chat", "-m", "hi"), 7, "Project Manager agent is not available"),
        (token, ("chat", "-m", "hi", "--model", "gemma3:270m"), 7, "failed"),
        ("cyn_pat_wrong", ("chat", "-m", "hi"), 3, "cynode auth login"),
        ("", ("chat", "-m", "hi"), 3, "not logged in"),
        (token, ("-o", "json", "chat"), 2, "needs -m"),
        (token, ("chat", "-m", "  "), 2, "must not be empty"),
    ]
    for tok, args, code, text in cases:
        r = await run(env, tok, tmp_path, *args)
        assert r.returncode == code, (args, r.returncode, r.stderr)
        assert text in r.stderr and len(r.stderr.strip().splitlines()) == 1 and r.stdout == "", (args, r.stderr)
    r = await run(None, token, tmp_path, "chat", "-m", "hi")  # nothing listens there
    assert r.returncode == 7 and "cannot reach the gateway" in r.stderr


def _unprintable(c: str) -> bool:
    return (ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) < 0xA0


@given(st.text())
def test_model_text_reaches_the_terminal_without_control_characters(text: str) -> None:
    assert terminal_safe(text) == "".join(c for c in text if not _unprintable(c))


def test_escape_sequences_lose_their_escape() -> None:  # OSC 52 writes the clipboard; CSI 2J clears the screen
    assert terminal_safe("a\x1b]52;c;ZXZpbA==\x07b\r\nc\x9b2J") == "a]52;c;ZXZpbA==b\nc2J"
