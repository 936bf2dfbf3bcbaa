"""`cynode task ...` (cli.md): create (JSON or multipart with attachments), list, get, watch, result, logs, cancel,
artifacts. The file option of `task artifacts get` is `--out` because the root `-o` is the output format."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from cynode.cli.client import CliError, GatewayClient, load_config, run_cli, seg
from cynode.cli.common import EXIT_USAGE, CliState, fail
from cynode.cli.output import emit_json, emit_more, emit_table

CLOSED = ("completed", "failed", "canceled", "superseded")
POLL_S = 1.0


def _client(obj: CliState) -> GatewayClient:
    return GatewayClient(load_config(obj))


def _task_rows(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"field": k, "value": ", ".join(v) if isinstance(v, list) else v} for k, v in task.items()]


def _wait(client: GatewayClient, obj: CliState, ref: str) -> dict[str, Any]:
    """Poll until the task is closed, with a spinner on stderr (never on stdout)."""
    task = client.get(f"/v1/tasks/{seg(ref)}")
    if task["status"] in CLOSED:
        return task
    con = Console(stderr=True, no_color=obj.no_color)
    with con.status(f"waiting for task {task['task_name']} ({task['status']})") as spinner:
        while task["status"] not in CLOSED:
            time.sleep(POLL_S)
            task = client.get(f"/v1/tasks/{seg(ref)}")
            spinner.update(f"waiting for task {task['task_name']} ({task['status']})")
    return task


def _print_result(obj: CliState, result: dict[str, Any], strict: bool) -> None:
    if obj.json:
        emit_json(result)
    elif result["status"] not in CLOSED:
        click.echo(f"task {result['task_name']} is {result['status']}; use -w to wait for its result", err=True)
    else:
        out = result.get("stdout") or ""
        if out:
            click.echo(out, nl=not out.endswith("\n"))
        err = result.get("stderr") or ""
        if err and not obj.quiet:
            click.echo(err, nl=not err.endswith("\n"), err=True)
        if result["status"] != "completed" and not obj.quiet:
            click.echo(f"task {result['task_name']} {result['status']}"
                       + (f" (exit code {result['exit_code']})" if result.get("exit_code") is not None else ""),
                       err=True)
    if strict and (result["status"] != "completed" or (result.get("exit_code") or 0) != 0):
        sys.exit(1)


def _text_of(path: str, option: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"{option} {path}: not UTF-8 text", EXIT_USAGE)
    except OSError as e:
        fail(f"{option} {path}: {e.strerror or e}", EXIT_USAGE)


@click.group()
def task() -> None:
    """Create tasks and read their state, results, logs and attachments."""


@task.command("create")
@click.argument("prompt_arg", metavar="[PROMPT]", required=False)
@click.option("-p", "--prompt", default=None, help="The prompt text (natural language by default).")
@click.option("-f", "--task-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Read the prompt from a file.")
@click.option("-s", "--script", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Run this shell script in a sandbox (input mode script).")
@click.option("--input-mode", type=click.Choice(["prompt", "script", "commands"]), default=None)
@click.option("--command", "commands", multiple=True, help="A command to run (repeatable; input mode commands).")
@click.option("-a", "--attach", "attachments", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Attach a file (repeatable, up to 16, 10 MiB each).")
@click.option("--name", default=None, help="Task name (normalized; made unique with -2, -3, ...).")
@click.option("--use-inference", is_flag=True, help="Give a script/commands sandbox the inference proxy.")
@click.option("-w", "--wait", is_flag=True, help="Wait for the task to finish and print its result.")
@click.pass_obj
@run_cli
def create(obj: CliState, prompt_arg: str | None, prompt: str | None, task_file: str | None, script: str | None,
           input_mode: str | None, commands: tuple[str, ...], attachments: tuple[str, ...], name: str | None,
           use_inference: bool, wait: bool) -> None:
    """Create a task; prints it (or, with -w, its result)."""
    sources = [s for s in (prompt_arg, prompt, task_file, script) if s is not None]
    if len(sources) > 1:
        fail("give the prompt once: PROMPT, -p, -f or -s", EXIT_USAGE)
    text = prompt_arg if prompt_arg is not None else prompt
    if task_file is not None:
        text = _text_of(task_file, "--task-file")
    if script is not None:
        text = _text_of(script, "--script")
        if input_mode not in (None, "script"):
            fail("-s/--script runs a script: --input-mode must be script", EXIT_USAGE)
        input_mode = "script"
    if commands:
        if input_mode not in (None, "commands"):
            fail("--command needs --input-mode commands", EXIT_USAGE)
        input_mode = "commands"
    if text is None and not commands:
        fail("nothing to run: give a PROMPT, -p, -f, -s or --command", EXIT_USAGE)
    body: dict[str, Any] = {}
    if text is not None:
        body["prompt"] = text
    if input_mode is not None:
        body["input_mode"] = input_mode
    if commands:
        body["commands"] = list(commands)
    if name is not None:
        body["task_name"] = name
    if use_inference:
        body["use_inference"] = True
    with _client(obj) as client:
        if attachments:
            files: list[tuple[str, Any]] = [("task", (None, json.dumps(body), "application/json"))]
            handles = [open(p, "rb") for p in attachments]  # noqa: SIM115 - closed below
            try:
                files += [("attachment", (Path(p).name, fh, "application/octet-stream"))
                          for p, fh in zip(attachments, handles, strict=True)]
                created = client.post("/v1/tasks", files=files, timeout=120.0)
            finally:
                for fh in handles:
                    fh.close()
        else:
            created = client.post("/v1/tasks", json=body)
        if wait:
            _wait(client, obj, created["id"])
            _print_result(obj, client.get(f"/v1/tasks/{created['id']}/result"), strict=False)
            return
    emit_table(obj, "Task created", ["field", "value"], _task_rows(created), raw=created)


@task.command("list")
@click.option("-l", "--limit", type=click.IntRange(1, 200), default=None, help="Page size (1-200, default 50).")
@click.option("--cursor", default=None, help="Continue from a previous page's next_cursor.")
@click.option("--status", default=None,
              type=click.Choice(["queued", "running", "completed", "failed", "canceled", "superseded"]))
@click.pass_obj
@run_cli
def list_(obj: CliState, limit: int | None, cursor: str | None, status: str | None) -> None:
    """Your tasks, newest first."""
    params = {k: v for k, v in (("limit", limit), ("cursor", cursor), ("status", status)) if v is not None}
    with _client(obj) as client:
        body = client.get("/v1/tasks", params=params)
    rows = [{"id": t["id"], "name": t["task_name"], "status": t["status"], "created": t["created_at"]}
            for t in body["tasks"]]
    emit_table(obj, "Tasks", ["id", "name", "status", "created"], rows, raw=body)
    emit_more(obj, "cynode task list", body)



@task.command("get")
@click.argument("ref", metavar="ID")
@click.pass_obj
@run_cli
def get(obj: CliState, ref: str) -> None:
    """One task, by id or name."""
    with _client(obj) as client:
        t = client.get(f"/v1/tasks/{seg(ref)}")
    emit_table(obj, "Task", ["field", "value"], _task_rows(t), raw=t)


@task.command("watch")
@click.argument("ref", metavar="ID")
@click.option("-F", "--follow", is_flag=True, help="Also print new log lines as they appear.")
@click.pass_obj
@run_cli
def watch(obj: CliState, ref: str, follow: bool) -> None:
    """Show the task's state changes until it is closed."""
    with _client(obj) as client:
        last = None
        printed = 0
        while True:
            t = client.get(f"/v1/tasks/{seg(ref)}")
            if t["status"] != last and not obj.json:
                click.echo(f"{time.strftime('%H:%M:%S')} {t['task_name']}: {t['status']}", err=obj.quiet)
                last = t["status"]
            if follow and not obj.json:
                lines = client.get(f"/v1/tasks/{t['id']}/logs")["lines"]
                for line in lines[printed:]:
                    click.echo(line)
                printed = max(printed, len(lines))
            if t["status"] in CLOSED:
                break
            time.sleep(POLL_S)
    if obj.json:
        emit_json(t)


@task.command("result")
@click.argument("ref", metavar="ID")
@click.option("-w", "--wait", is_flag=True, help="Wait until the task is closed.")
@click.option("--strict", is_flag=True, help="Exit 1 when the task did not complete successfully.")
@click.pass_obj
@run_cli
def result(obj: CliState, ref: str, wait: bool, strict: bool) -> None:
    """Print the task's output (the model's answer for prompt tasks)."""
    with _client(obj) as client:
        if wait:
            _wait(client, obj, ref)
        res = client.get(f"/v1/tasks/{seg(ref)}/result")
    _print_result(obj, res, strict)


@task.command("logs")
@click.argument("ref", metavar="ID")
@click.option("--stream", type=click.Choice(["stdout", "stderr", "all"]), default="all", show_default=True)
@click.pass_obj
@run_cli
def logs(obj: CliState, ref: str, stream: str) -> None:
    """The task's stdout/stderr lines."""
    with _client(obj) as client:
        body = client.get(f"/v1/tasks/{seg(ref)}/logs", params={"stream": stream})
    if obj.json:
        emit_json(body)
        return
    for line in body["lines"]:
        click.echo(line)


@task.command("cancel")
@click.argument("ref", metavar="ID")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@run_cli
def cancel(obj: CliState, ref: str, yes: bool) -> None:
    """Cancel a queued or running task."""
    if not yes and not click.confirm(f"Cancel task {ref}?", err=True):
        fail("not canceled", EXIT_USAGE)
    with _client(obj) as client:
        body = client.post(f"/v1/tasks/{seg(ref)}/cancel")
    if obj.json:
        emit_json(body)
    elif not obj.quiet:
        click.echo(f"task {body['task_name']} canceled", err=True)


@task.group()
def artifacts() -> None:
    """A task's attachments."""


@artifacts.command("list")
@click.argument("ref", metavar="ID")
@click.pass_obj
@run_cli
def artifacts_list(obj: CliState, ref: str) -> None:
    """List a task's artifacts."""
    with _client(obj) as client:
        body = client.get(f"/v1/tasks/{seg(ref)}/artifacts")
    emit_table(obj, f"Artifacts of {body['task_name']}",
               ["artifact_id", "path", "size_bytes", "content_type", "checksum_sha256"], body["artifacts"], raw=body)


@artifacts.command("get")
@click.argument("ref", metavar="ID")
@click.argument("artifact_id", metavar="ART")
@click.option("--out", "out", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Where to write it ('-' for stdout; default: its name in the current directory).")
@click.pass_obj
@run_cli
def artifacts_get(obj: CliState, ref: str, artifact_id: str, out: str | None) -> None:
    """Download one artifact."""
    with _client(obj) as client:
        listing = client.get(f"/v1/tasks/{seg(ref)}/artifacts")
        match = next((a for a in listing["artifacts"] if a["artifact_id"] == artifact_id or a["name"] == artifact_id),
                     None)
        if match is None:
            raise CliError("artifact not found", 4)
        data = client.send("GET", f"/v1/tasks/{listing['task_id']}/artifacts/{match['artifact_id']}").content
    if out == "-":
        if obj.json:
            fail("--out - cannot be combined with -o json", EXIT_USAGE)
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    # The default is the artifact's own name, in the current directory only: whatever the server says, never a path.
    name = Path(str(match["name"])).name
    target = Path(out) if out else Path(name if name not in ("", ".", "..") else match["artifact_id"])
    try:
        target.write_bytes(data)
    except OSError as e:
        fail(f"cannot write {target}: {e.strerror or e}", EXIT_USAGE)
    if obj.json:
        emit_json({"artifact_id": match["artifact_id"], "path": str(target), "size_bytes": len(data)})
    elif not obj.quiet:
        click.echo(f"wrote {len(data)} bytes to {target}", err=True)
