"""`cynode chat` (cli.md): one message with `-m`, else an interactive session; replies stream to stdout as they come.

Each turn sends only the new message; the gateway prepends the conversation so far from the server-side thread
(agents.md §3.5), so a session survives restarts of the CLI. `/new` starts a new thread, `/exit` or Ctrl-D quits;
line editing and the input history of the session come from readline. With `-o json` (one-shot only) the reply is
printed as one JSON object with the model and the token usage.

Errors are OpenAI-shaped on this endpoint; their message is shown and the status gives the exit code (401 -> 3,
404 -> 4, 400 -> 6, 429/5xx/timeouts -> 7). An error inside a stream (after the reply began) is a gateway error (7).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
import httpx

from cynode.cli.client import LOGIN_HINT, CliError, GatewayClient, exit_code_for, load_config, run_cli
from cynode.cli.common import EXIT_AUTH, EXIT_GATEWAY, EXIT_USAGE, CliState, fail
from cynode.cli.output import emit_json, terminal_safe

PM_MODEL = "cynodeai.pm"
# Reads may pause: the Project Manager agent sends a keep-alive every 15 s, the wait cap is 120 s (up to 600 s).
TIMEOUT = httpx.Timeout(connect=10.0, read=660.0, write=60.0, pool=10.0)
HELP = "/new starts a new conversation, /exit (or Ctrl-D) quits"


@dataclass
class Reply:
    text: str = ""
    model: str = ""
    id: str = ""
    usage: dict[str, int] = field(default_factory=dict)


def _error_message(raw: bytes, status: int) -> str:
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        err = doc.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if doc.get("detail"):
            return str(doc["detail"])
    return f"HTTP {status}"


def _status_exit(status: int) -> int:
    return EXIT_GATEWAY if status == 408 else exit_code_for(status)


class ChatSession:
    def __init__(self, client: GatewayClient, model: str | None, project: str | None) -> None:
        self.client = client
        self.model = model or PM_MODEL
        self.project = project

    def _headers(self) -> dict[str, str]:
        token = self.client.token()
        if not token:
            raise CliError(LOGIN_HINT, EXIT_AUTH)
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if self.project:
            headers["OpenAI-Project"] = self.project
        return headers

    def send(self, text: str, on_text: Callable[[str], None]) -> Reply:
        """One turn; `on_text` gets the reply piece by piece as it streams in."""
        body = {"model": self.model, "stream": True, "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": text}]}
        for attempt in range(2):
            try:
                with self.client.http.stream("POST", "/v1/chat/completions", json=body, headers=self._headers(),
                                             timeout=TIMEOUT) as r:
                    if r.status_code == 401 and attempt == 0 and self.client._try_refresh():
                        continue
                    if r.status_code != 200:
                        message = _error_message(r.read(), r.status_code)
                        if r.status_code == 401:
                            message += "; run `cynode auth login`"
                        raise CliError(message, _status_exit(r.status_code), r.status_code)
                    return self._read(r, on_text)
            except httpx.TimeoutException:
                raise CliError(f"the gateway at {self.client.cfg.url} did not answer in time", EXIT_GATEWAY) from None
            except httpx.HTTPError as e:
                raise CliError(f"cannot reach the gateway at {self.client.cfg.url} ({type(e).__name__})",
                               EXIT_GATEWAY) from None
        raise CliError("not logged in: run `cynode auth login`", EXIT_AUTH)

    @staticmethod
    def _read(r: httpx.Response, on_text: Callable[[str], None]) -> Reply:
        reply = Reply()
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue  # blank separators and ": keep-alive" comments
            payload = line[len("data: "):]
            if payload == "[DONE]":
                return reply
            chunk: dict[str, Any] = json.loads(payload)
            if "error" in chunk:
                raise CliError(str(chunk["error"].get("message") or "the reply failed"), EXIT_GATEWAY)
            reply.id = chunk.get("id", reply.id)
            reply.model = chunk.get("model", reply.model)
            if chunk.get("usage"):
                reply.usage = dict(chunk["usage"])
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    reply.text += piece
                    on_text(piece)
        raise CliError("the reply ended early", EXIT_GATEWAY)

    def new_thread(self) -> str:
        body = {"project_id": self.project} if self.project else {}
        return str(self.client.post("/v1/chat/threads", json=body)["thread_id"])


def _write(text: str) -> None:
    sys.stdout.write(terminal_safe(text))
    sys.stdout.flush()


def _one_shot(obj: CliState, session: ChatSession, message: str) -> None:
    if obj.json:
        reply = session.send(message, lambda _t: None)
        emit_json({"id": reply.id, "model": reply.model, "reply": reply.text, "usage": reply.usage})
        return
    reply = session.send(message, _write)
    if not reply.text.endswith("\n"):
        _write("\n")


def _repl(obj: CliState, session: ChatSession) -> None:
    with contextlib.suppress(ImportError):  # not on every platform
        import readline  # noqa: F401 - line editing and the session's input history for input()
    if not obj.quiet:
        click.echo(f"chatting with {session.model}; {HELP}", err=True)
    while True:
        try:
            line = input("you> ")
        except EOFError:
            _write("\n")
            return
        except KeyboardInterrupt:
            _write("\n")
            continue
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return
        if text == "/new":
            session.new_thread()
            click.echo("(new conversation)", err=True)
            continue
        if text.startswith("/"):
            click.echo(f"unknown command {text.split()[0]}: {HELP}", err=True)
            continue
        try:
            reply = session.send(text, _write)
            if not reply.text.endswith("\n"):
                _write("\n")
        except KeyboardInterrupt:
            _write("\n")
            click.echo("(interrupted)", err=True)
        except CliError as e:
            if e.code == EXIT_AUTH:
                raise
            click.echo(f"error: {e.message}", err=True)


@click.command("chat")
@click.option("-m", "--message", default=None, help="Send this message, print the reply and exit.")
@click.option("--model", default=None, help=f"Model id from /v1/models (default {PM_MODEL}, the Project Manager).")
@click.option("--project", default=None, help="Project id (default: your default project).")
@click.pass_obj
@run_cli
def chat(obj: CliState, message: str | None, model: str | None, project: str | None) -> None:
    """Chat with the Project Manager agent or a model: one message with -m, else an interactive session."""
    if message is not None and not message.strip():
        fail("-m: the message must not be empty", EXIT_USAGE)
    if message is None and obj.json:
        fail("-o json needs -m (one message)", EXIT_USAGE)
    with GatewayClient(load_config(obj)) as client:
        session = ChatSession(client, model, project)
        if message is not None:
            _one_shot(obj, session, message)
        else:
            _repl(obj, session)
