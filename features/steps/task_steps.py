"""Steps for tasks: the HTTP API and the `cynode` CLI as a user would use them."""

from __future__ import annotations

import json
import tempfile

import httpx
from behave import given, then, when

from features.steps.auth_steps import admin_token, bearer, create_user, unique_handle, user_token
from tests.support.system import cynode_cli


def _as(context, who: str) -> dict[str, str]:
    return bearer(admin_token(context) if who == "the admin" else context.tokens_by_user[who])


@given('two fresh users "{a}" and "{b}"')
def two_users(context, a, b):
    context.tokens_by_user = {}
    context.aliases = {}
    for alias in (a, b):
        handle = unique_handle(alias)
        create_user(context, handle)
        context.aliases[alias] = handle
        context.tokens_by_user[alias] = user_token(context, handle)


@when('"{who}" creates the task "{prompt}"')
def creates_task(context, who, prompt):
    context.response = httpx.post(context.gateway + "/v1/tasks", json={"prompt": prompt}, headers=_as(context, who),
                                  timeout=30)
    assert context.response.status_code == 201, context.response.text
    context.task = context.response.json()


@then('the task is queued with the name "{name}"')
def queued_with_name(context, name):
    t = context.task
    assert t["status"] == "queued" and t["closed"] is False and t["task_name"] == name, t


@then('"{who}" can read the task by id and by name')
def read_by_id_and_name(context, who):
    h = _as(context, who)
    by_id = httpx.get(f"{context.gateway}/v1/tasks/{context.task['id']}", headers=h, timeout=30)
    by_name = httpx.get(f"{context.gateway}/v1/tasks/{context.task['task_name']}", headers=h, timeout=30)
    assert by_id.status_code == by_name.status_code == 200 and by_id.json() == by_name.json(), by_name.text


@then('"{who}" gets 404 for the task, its result and its cancel')
def gets_404(context, who):
    h = _as(context, who)
    tid = context.task["id"]
    for method, path in (("GET", ""), ("GET", "/result"), ("GET", "/logs"), ("POST", "/cancel")):
        r = httpx.request(method, f"{context.gateway}/v1/tasks/{tid}{path}", headers=h, timeout=30)
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")


@then('the admin can read the task')
def admin_reads(context):
    r = httpx.get(f"{context.gateway}/v1/tasks/{context.task['id']}", headers=bearer(admin_token(context)), timeout=30)
    assert r.status_code == 200 and r.json()["id"] == context.task["id"], r.text


@then('"{who}" sees the task in their list and "{other}" does not')
def lists(context, who, other):
    mine = httpx.get(context.gateway + "/v1/tasks", headers=_as(context, who), timeout=30).json()
    theirs = httpx.get(context.gateway + "/v1/tasks", headers=_as(context, other), timeout=30).json()
    assert context.task["id"] in [t["id"] for t in mine["tasks"]]
    assert context.task["id"] not in [t["id"] for t in theirs["tasks"]]


@when('"{who}" posts a task with the unknown field "{field}"')
def unknown_field(context, who, field):
    context.response = httpx.post(context.gateway + "/v1/tasks", json={"prompt": "hi", field: 1},
                                  headers=_as(context, who), timeout=30)


@then('the problem names the field "{field}"')
def names_field(context, field):
    body = context.response.json()
    assert context.response.headers["content-type"].startswith("application/problem+json")
    assert body["type"] == "urn:cynodeai:error:validation" and body["instance"] == context.response.headers[
        "x-request-id"]
    assert [e["field"] for e in body["errors"]] == [field], body


@when('"{who}" posts a task body of {mib:d} MiB')
def big_body(context, who, mib):
    body = json.dumps({"prompt": "x" * (mib * 1024 * 1024)}).encode()
    context.response = httpx.post(context.gateway + "/v1/tasks", content=body,
                                  headers={**_as(context, who), "content-type": "application/json"}, timeout=60)


@then('"{who}" has no tasks')
def has_no_tasks(context, who):
    r = httpx.get(context.gateway + "/v1/tasks", headers=_as(context, who), timeout=30)
    assert r.status_code == 200 and r.json()["tasks"] == [], r.text


@when('"{who}" creates a script task with the attachment "{name}" containing "{text}"')
def multipart_task(context, who, name, text):
    files = [("task", (None, json.dumps({"prompt": f"cat /job/inputs/{name}", "input_mode": "script"}),
                       "application/json")),
             ("attachment", (name, text.encode(), "text/plain"))]
    context.response = httpx.post(context.gateway + "/v1/tasks", files=files, headers=_as(context, who), timeout=30)
    assert context.response.status_code == 201, context.response.text
    context.task = context.response.json()


@then('"{who}" downloads the attachment "{name}" and gets "{text}"')
def download(context, who, name, text):
    h = _as(context, who)
    listing = httpx.get(f"{context.gateway}/v1/tasks/{context.task['id']}/artifacts", headers=h, timeout=30).json()
    [art] = [a for a in listing["artifacts"] if a["name"] == name]
    r = httpx.get(f"{context.gateway}/v1/tasks/{context.task['id']}/artifacts/{art['artifact_id']}", headers=h,
                  timeout=30)
    assert r.status_code == 200 and r.text == text, r.text
    assert r.headers["x-content-type-options"] == "nosniff" and name in r.headers["content-disposition"]


# -- the CLI ---------------------------------------------------------------------------------------------------------

@given("a CLI user with an empty configuration")
def cli_user(context):
    d = tempfile.mkdtemp(prefix="cynode-feat-cli-")
    context.tmp_dirs.append(d)
    context.cli_env = {"XDG_CONFIG_HOME": d, "CYNODE_GATEWAY_URL": context.gateway, "CYNODE_TOKEN": ""}


@when('I run the CLI "{args}"')
def run_cli(context, args):
    context.result = cynode_cli(*args.split(), env=context.cli_env)


@when('I run the CLI "{args}" with the admin password on stdin')
def run_cli_stdin(context, args):
    context.result = cynode_cli(*args.split(), env=context.cli_env, input=context.admin_password + "\n")


@when('I run the CLI "{args}" on the last task')
def run_cli_on_task(context, args):
    context.result = cynode_cli(*args.split(), context.cli_task["id"], env=context.cli_env)


@then("the CLI succeeds")
def cli_ok(context):
    assert context.result.returncode == 0, (context.result.returncode, context.result.stderr)


@then("the CLI exits with {code:d}")
def cli_code(context, code):
    assert context.result.returncode == code, (context.result.returncode, context.result.stderr)
    assert len(context.result.stderr.strip().splitlines()) == 1, context.result.stderr


@then("its output is one JSON task")
def one_json_task(context):
    context.cli_task = json.loads(context.result.stdout)
    assert context.cli_task["status"] == "queued", context.cli_task


@then('its output is one JSON value with "{field}"')
def one_json_value(context, field):
    doc = json.loads(context.result.stdout)
    assert field in doc, doc


@then("its output lists the task")
def lists_the_task(context):
    assert context.cli_task["task_name"] in context.result.stdout, context.result.stdout
