"""Steps shared by every feature: raw HTTP against a listener, the CLI as a subprocess, what a user sees."""

from __future__ import annotations

import json
import tempfile

import httpx
from behave import given, then, when

from tests.support.system import cynode_cli


def _get(context, url, headers=None):
    context.response = httpx.get(url, headers=headers or {}, timeout=30)


@given("the system has finished starting")
def system_started(context):
    context.system.wait_ready(timeout=180)


@when('I GET "{path}" on every listener')
def get_every_listener(context, path):
    context.responses = [httpx.get(u + path, timeout=10) for u in context.system.urls.values()]


@then('each answers {status:d} with the body "{body}"')
def each_answers(context, status, body):
    assert context.responses, "no listener answered"
    for r in context.responses:
        assert r.status_code == status and r.text == body, (r.url, r.status_code, r.text)


@when('I GET "{path}" on the gateway')
def get_gateway(context, path):
    _get(context, context.gateway + path)


@when('I GET "{path}" on the gateway as JSON')
def get_gateway_json(context, path):
    _get(context, context.gateway + path, {"Accept": "application/json"})


@when('I GET "{path}" on the gateway with request id "{rid}"')
def get_gateway_rid(context, path, rid):
    _get(context, context.gateway + path, {"X-Request-Id": rid})


@then("the status is {status:d}")
def status_is(context, status):
    assert context.response.status_code == status, (context.response.status_code, context.response.text[:500])


@then('the body starts with "{prefix}"')
def body_starts(context, prefix):
    assert context.response.text.startswith(prefix), context.response.text


@then('the JSON field "{field}" is "{value}"')
def json_field(context, field, value):
    assert str(context.response.json()[field]) == value, context.response.json()


@then('the readiness check "{name}" is ok')
def readiness_check_ok(context, name):
    checks = {c["name"]: c["ok"] for c in context.response.json()["checks"]}
    assert checks.get(name) is True, checks


@then('the response is a problem of type "{code}" with instance "{rid}"')
def problem_of_type(context, code, rid):
    r = context.response
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["type"] == f"urn:cynodeai:error:{code}" and body["instance"] == rid, body


@given("a fresh database directory")
def fresh_data_dir(context):
    context.data_dir = tempfile.mkdtemp(prefix="cynode-feat-db-")
    context.tmp_dirs.append(context.data_dir)


@when('I run "cynode {args}" there')
def run_there(context, args):
    context.result = cynode_cli(*args.split(), env={"CYNODE_DATA_DIR": context.data_dir})
    assert context.result.returncode == 0, context.result.stderr
    if "status" in args:
        context.migrations = json.loads(context.result.stdout)


@then("every migration is listed as applied")
def all_applied(context):
    rows = json.loads(cynode_cli("-o", "json", "db", "status", env={"CYNODE_DATA_DIR": context.data_dir}).stdout)
    assert rows and all(r["applied"] for r in rows), rows
    context.migrations = rows


@then("the last migration is no longer applied")
def last_unapplied(context):
    rows = json.loads(cynode_cli("-o", "json", "db", "status", env={"CYNODE_DATA_DIR": context.data_dir}).stdout)
    assert [r["id"] for r in rows if not r["applied"]] == [context.migrations[-1]["id"]], rows


@given('a server config file containing "{text}"')
def config_file(context, text):
    d = tempfile.mkdtemp(prefix="cynode-feat-cfg-")
    context.tmp_dirs.append(d)
    context.config_path = f"{d}/cynode.toml"
    with open(context.config_path, "w") as f:
        f.write(text.replace("\\n", "\n"))
    context.data_dir = d


@when('I run "cynode {args}" with that config')
def run_with_config(context, args):
    context.result = cynode_cli(*args.split(), "--config", context.config_path,
                                env={"CYNODE_DATA_DIR": context.data_dir})


@then("the exit code is {code:d}")
def exit_code(context, code):
    assert context.result.returncode == code, (context.result.returncode, context.result.stderr)


@then('stderr names "{text}"')
def stderr_names(context, text):
    assert text in context.result.stderr, context.result.stderr
    assert len(context.result.stderr.strip().splitlines()) == 1, context.result.stderr
