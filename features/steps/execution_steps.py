"""Steps for sandboxed execution and inference: a user's CLI and HTTP calls, and what comes back."""

from __future__ import annotations

import json
import re
import tempfile
import time

import httpx
from behave import given, then, when

from features.steps.auth_steps import admin_token, bearer, create_user, login, unique_handle
from tests.support.system import ServeProcess, cynode_cli

_pat_users: dict[str, dict] = {}  # gateway URL -> one user with a personal API token, shared to keep logins rare


def _unescape(text: str) -> str:
    return text.replace('\\"', '"').replace("\\n", "\n")


@given("a CLI user with a personal API token")
def cli_user_with_pat(context):
    user = _pat_users.get(context.gateway)
    if user is None:
        handle = unique_handle("runner")
        create_user(context, handle)
        token = login(context.gateway, handle, context.users[handle]["password"]).json()["access_token"]
        r = httpx.post(context.gateway + "/v1/auth/tokens", json={"name": "features"}, headers=bearer(token),
                       timeout=30)
        assert r.status_code == 201, r.text
        user = _pat_users[context.gateway] = {"handle": handle, "pat": r.json()["token"]}
    d = tempfile.mkdtemp(prefix="cynode-feat-cli-")
    context.tmp_dirs.append(d)
    context.cli_env = {"XDG_CONFIG_HOME": d, "CYNODE_GATEWAY_URL": context.gateway, "CYNODE_TOKEN": user["pat"]}
    context.user_headers = bearer(user["pat"])


def _newest_task(context, base: str | None = None, headers: dict | None = None) -> dict:
    r = httpx.get((base or context.gateway) + "/v1/tasks?limit=1", headers=headers or context.user_headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["tasks"][0]


@when('I run the CLI "{args}" with the command "{command}"')
@when('I run the CLI "{args}" with the prompt "{command}"')
def run_cli_with_text(context, args, command):
    context.result = cynode_cli(*args.split(), _unescape(command), env=context.cli_env, timeout=240)
    context.task = _newest_task(context)


@when('I run the CLI "{args}" on the task just created')
def run_cli_on_created(context, args):
    context.result = cynode_cli(*args.split(), context.task["id"], env=context.cli_env, timeout=120)


@then('the CLI prints exactly "{text}"')
def cli_prints(context, text):
    assert context.result.returncode == 0, (context.result.returncode, context.result.stderr)
    assert context.result.stdout.rstrip("\n") == _unescape(text), context.result.stdout


@then("the CLI succeeds with a non-empty answer")
def cli_answer(context):
    assert context.result.returncode == 0, (context.result.returncode, context.result.stderr)
    assert context.result.stdout.strip(), context.result.stdout


def _create(context, body: dict, *, base: str | None = None, headers: dict | None = None) -> None:
    r = httpx.post((base or context.gateway) + "/v1/tasks", json=body, headers=headers or context.user_headers,
                   timeout=30)
    assert r.status_code == 201, r.text
    context.task = r.json()


@when('I create a commands task with the commands "{command}"')
def create_commands(context, command):
    _create(context, {"input_mode": "commands", "commands": [_unescape(command)]})


@when('I create an inference commands task with the commands "{command}"')
def create_inference_commands(context, command):
    _create(context, {"input_mode": "commands", "commands": [_unescape(command)], "use_inference": True})


@when('I create a commands task running, in order, {quoted}')
def create_commands_list(context, quoted):
    commands = re.findall(r'"([^"]*)"', quoted)
    _create(context, {"input_mode": "commands", "commands": commands})


@when('I create a commands task with the attachment "{name}" containing "{text}" and the commands "{command}"')
def create_with_attachment(context, name, text, command):
    files = [("task", (None, json.dumps({"input_mode": "commands", "commands": [_unescape(command)]}),
                       "application/json")),
             ("attachment", (name, text.encode(), "text/plain"))]
    r = httpx.post(context.gateway + "/v1/tasks", files=files, headers=context.user_headers, timeout=30)
    assert r.status_code == 201, r.text
    context.task = r.json()


def _wait_result(base: str, headers: dict, task_id: str, timeout: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{base}/v1/tasks/{task_id}/result", headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        doc = r.json()
        if doc["status"] in ("completed", "failed", "canceled", "superseded"):
            return doc
        time.sleep(0.3)
    raise AssertionError(f"task {task_id} did not finish within {timeout} s")


@then('the task ends "{status}" with exit code {code:d} and stdout "{stdout}"')
@then('the task ends "{status}" with exit code {code:d}')
def task_ends(context, status, code, stdout=None):
    context.result_doc = doc = _wait_result(context.gateway, context.user_headers, context.task["id"])
    assert doc["status"] == status and doc.get("exit_code") == code, doc
    if stdout is not None:
        assert doc.get("stdout") == _unescape(stdout), doc


@then('the job result says "{status}"')
def job_result_says(context, status):
    job = context.result_doc["jobs"][0]
    assert job["result"]["status"] == status, job


@then("its stdout is exactly 262144 bytes and flagged truncated, and its stderr is \"done\\n\" and not truncated")
def truncated(context):
    result = context.result_doc["jobs"][0]["result"]
    assert len(result["stdout"].encode()) == 262144 and set(result["stdout"]) == {"a"}
    assert result["truncated"] == {"stdout": True, "stderr": False}, result["truncated"]
    assert result["stderr"] == "done\n"


@then("the task's job was answered by the model, not run as a shell command")
def answered_by_model(context):
    doc = _wait_result(context.gateway, context.user_headers, context.task["id"])
    assert doc["status"] == "completed" and doc["exit_code"] == 0 and doc["stdout"].strip(), doc
    assert doc.get("stderr", "") == "", doc  # as a shell command it would be "sh: Tell: not found", exit 127
    task = httpx.get(f"{context.gateway}/v1/tasks/{context.task['id']}", headers=context.user_headers,
                     timeout=30).json()
    assert task["input_mode"] == "prompt", task


# -- separate processes ----------------------------------------------------------------------------------------------

@given("an orchestrator and a worker started as separate processes")
def split_system(context):
    psk = "split-feature-psk-0123456789abcdef"
    orch = ServeProcess("orchestrator", name="orch", env={
        "CYNODE_NODE_REGISTRATION_PSK": psk, "CYNODE_ADMIN_PASSWORD": context.admin_password}).start()
    context.extra_processes.append(orch)
    context.tmp_dirs.append(str(orch.dir))
    orch.wait_accepting()
    worker = ServeProcess("worker", name="worker", env={
        "CYNODE_NODE_REGISTRATION_PSK": psk, "NODE_SLUG": "split-feature", "ORCHESTRATOR_URL": orch.url("controlplane"),
        "CYNODE_WORKER_INFERENCE_MODE": "disabled"}).start()
    context.extra_processes.insert(0, worker)  # stopped first
    context.tmp_dirs.append(str(worker.dir))
    worker.wait_ready(listener="worker", timeout=120)
    context.split_base = orch.url("gateway")
    context.split_headers = bearer(admin_token(context, context.split_base))


@when('I create a commands task there with the command "{command}"')
def create_there(context, command):
    _create(context, {"input_mode": "commands", "commands": [_unescape(command)]}, base=context.split_base,
            headers=context.split_headers)


@then('that task completes there with stdout "{stdout}"')
def completes_there(context, stdout):
    doc = _wait_result(context.split_base, context.split_headers, context.task["id"])
    assert doc["status"] == "completed" and doc["stdout"] == _unescape(stdout), doc


@given("a fresh system started with all roles")
def fresh_all(context):
    p = ServeProcess("all", name="fresh", env={"CYNODE_NODE_REGISTRATION_PSK": "fresh-feature-psk-0123456789",
                                               "NODE_SLUG": "fresh-node"}).start()
    context.extra_processes.append(p)
    context.tmp_dirs.append(str(p.dir))
    context.fresh = p


@then("its readiness is 503 at first with a reason")
def ready_503(context):
    r = httpx.get(context.fresh.url("gateway") + "/readyz", timeout=10)
    assert r.status_code == 503 and r.text.startswith("not ready: "), r.text


@then("its readiness turns 200 once the model is warm, naming the PM model")
def ready_200(context):
    context.fresh.wait_ready(timeout=180)
    doc = context.fresh.readiness()
    assert doc["status"] == "ready" and doc["pm_model"]["model_ref"], doc
    assert [c["name"] for c in doc["checks"]] == ["database", "inference_path", "pm_model_selection",
                                                  "pm_model_loaded", "pma"], doc
