"""The client side of the CLI: its config file, token precedence, auto-refresh and exit codes, run as a user would
(a `cynode` subprocess) against a real `cynode serve --role orchestrator`."""

from __future__ import annotations

import json
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from cynode.cli.config_file import ClientConfig, ConfigFileError, load, save
from cynode.cli.main import cli as cynode_main
from tests.conftest import TEMPLATE, _with_db
from tests.support.system import ServeProcess, cynode_cli

ADMIN_PW = "cli-admin-password"
NODE_PSK = "cli-node-psk-0123456789abcdef"


@pytest.fixture(scope="module")
def server(pg_root_uri: str, pg_template: str) -> Iterator[ServeProcess]:
    name = "cli_" + uuid.uuid4().hex[:12]
    with psycopg.connect(pg_root_uri, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    p = ServeProcess("orchestrator", name="cli", env={
        "CYNODE_DATABASE_URL": _with_db(pg_root_uri, name), "CYNODE_ADMIN_PASSWORD": ADMIN_PW,
        "CYNODE_NODE_REGISTRATION_PSK": NODE_PSK}).start()
    try:
        p.wait_accepting(120)
        yield p
    finally:
        p.stop()
        with psycopg.connect(pg_root_uri, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def home(tmp_path: Path, server: ServeProcess) -> dict[str, str]:
    """A user's environment: its own XDG config dir, pointed at the server."""
    return {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "CYNODE_GATEWAY_URL": server.url("gateway"),
            "CYNODE_TOKEN": ""}


def cli(env: dict[str, str], *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return cynode_cli(*args, env=env, input=input)


def login(env: dict[str, str]) -> None:
    r = cli(env, "auth", "login", "-u", "admin", "--password-stdin", input=ADMIN_PW + "\n")
    assert r.returncode == 0, r.stderr


def config_of(env: dict[str, str]) -> Path:
    return Path(env["XDG_CONFIG_HOME"]) / "cynode" / "config.toml"


# -- the config file (in-process) --------------------------------------------------------------------------------------

def test_config_file_location_permissions_and_unknown_keys(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    cfg = load(None, env)
    assert cfg.path == tmp_path / "cynode" / "config.toml" and not cfg.path.parent.exists()  # never made on read
    cfg.path.parent.mkdir(mode=0o755)
    cfg.path.write_text('gateway_url = "http://gw:12080"\ncolour = "blue"\n[extra]\nx = 1\n')
    cfg = load(None, env)
    assert cfg.url == "http://gw:12080" and cfg.extra["colour"] == "blue"
    cfg.token, cfg.refresh_token = "tok-value", "ref-value"
    save(cfg)
    assert stat.S_IMODE(cfg.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.path.parent.stat().st_mode) == 0o700
    again = load(None, env)
    assert (again.token, again.refresh_token, again.extra["colour"]) == ("tok-value", "ref-value", "blue")
    assert "tok-value" not in repr(again) and "ref-value" not in repr(again)
    assert [p.name for p in cfg.path.parent.iterdir()] == ["config.toml"]  # no temp file left behind


def test_token_precedence_env_file_helper(tmp_path: Path) -> None:
    helper = tmp_path / "helper.sh"
    helper.write_text("#!/bin/sh\necho helper-token\n")
    helper.chmod(0o755)
    cfg = ClientConfig(path=tmp_path / "c.toml", credential_helper=str(helper), environ={})
    assert cfg.resolve_token() == ("helper-token", "helper")
    cfg.token = "file-token"
    assert cfg.resolve_token() == ("file-token", "file")
    cfg.environ = {"CYNODE_TOKEN": "env-token", "CYNODE_GATEWAY_URL": "http://override:1/"}
    assert cfg.resolve_token() == ("env-token", "env") and cfg.url == "http://override:1"


def test_bad_config_file_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("gateway_url = [unclosed\n")
    with pytest.raises(ConfigFileError):
        load(str(bad), {})
    r = cynode_cli("-c", str(bad), "auth", "whoami")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "bad.toml" in r.stderr
    bad.write_text("token = 5\n")
    assert cynode_cli("-c", str(bad), "task", "list").returncode == 2


# -- against the server -----------------------------------------------------------------------------------------------

def test_round_trip_login_create_list_get_result_logout(home: dict[str, str]) -> None:
    login(home)
    text = config_of(home).read_text()
    assert "token" in text and "refresh_token" in text
    r = cli(home, "-o", "json", "task", "create", "-p", "say hello", "--name", "Hello Task")
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    assert created["task_name"] == "hello-task" and created["status"] == "queued"
    listed = json.loads(cli(home, "-o", "json", "task", "list", "-l", "5").stdout)
    assert created["id"] in [t["id"] for t in listed["tasks"]]
    got = json.loads(cli(home, "-o", "json", "task", "get", "hello-task").stdout)
    assert got["id"] == created["id"] and got["prompt"] == "say hello"
    assert json.loads(cli(home, "task", "get", "hello-task", "--json").stdout) == got  # --json after the command
    result = json.loads(cli(home, "-o", "json", "task", "result", created["id"]).stdout)
    assert result["task_id"] == created["id"] and result["jobs"][0]["status"] in ("queued", "running", "completed")
    table = cli(home, "task", "list")
    assert table.returncode == 0 and "hello-task" in table.stdout
    second = json.loads(cli(home, "-o", "json", "task", "create", "-p", "again").stdout)
    first_page = cli(home, "task", "list", "-l", "1")  # the table, and on stderr the command for the next page
    assert second["task_name"] in first_page.stdout and "hello-task" not in first_page.stdout
    hint = first_page.stderr.strip()
    assert hint.startswith("more: cynode task list --cursor ")
    rest = cli(home, "task", "list", "-l", "1", "--cursor", hint.rsplit(" ", 1)[1])
    assert "hello-task" in rest.stdout and rest.stderr.strip() == ""
    assert cli(home, "-q", "task", "list", "-l", "1").stderr.strip() == ""
    r = cli(home, "auth", "logout")
    assert r.returncode == 0
    assert "token" not in config_of(home).read_text()
    r = cli(home, "task", "list")
    assert r.returncode == 3 and "cynode auth login" in r.stderr


def test_attachments_and_artifact_download(home: dict[str, str], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    login(home)
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(3000))
    r = cli(home, "-o", "json", "task", "create", "--input-mode", "script", "-p", "ls /job/inputs", "-a", str(data))
    assert r.returncode == 0, r.stderr
    task = json.loads(r.stdout)
    assert task["attachments"] == ["upload/data.bin"]
    arts = json.loads(cli(home, "-o", "json", "task", "artifacts", "list", task["id"]).stdout)["artifacts"]
    out = tmp_path / "copy.bin"
    r = cli(home, "task", "artifacts", "get", task["id"], arts[0]["artifact_id"], "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == data.read_bytes()
    # Without --out: a file named after the artifact, in the current directory.
    # (In this process: a `cynode` subprocess started elsewhere than the repo would not find the coverage config.)
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    r = CliRunner().invoke(cynode_main, ["task", "artifacts", "get", task["id"], arts[0]["artifact_id"]], env=home)
    assert r.exit_code == 0, r.output
    assert os.listdir(here) == ["data.bin"] and (here / "data.bin").read_bytes() == data.read_bytes()
    r = cli(home, "task", "artifacts", "get", task["id"], arts[0]["artifact_id"], "--out", str(tmp_path / "no/x"))
    assert r.returncode == 2 and r.stderr.startswith("error: cannot write") and r.stderr.count("\n") == 1


def test_exit_codes(home: dict[str, str], server: ServeProcess) -> None:
    r = cli(home, "auth", "whoami")
    assert r.returncode == 3 and r.stderr.count("\n") == 1
    login(home)
    assert cli(home, "task", "get", "no-such-task").returncode == 4
    # An id is one path segment: this is no task (4), not a POST to /v1/auth/logout.
    assert cli(home, "task", "cancel", "-y", "x/../../auth/logout?").returncode == 4
    assert cli(home, "task", "get", "..").returncode == 4 and cli(home, "auth", "whoami").returncode == 0
    r = cli(home, "task", "create", "-p", "x", "--name", "!!!")
    assert r.returncode == 6 and "task_name" in r.stderr and r.stderr.count("\n") == 1
    assert cli(home, "task", "create", "-p", "a", "-s", __file__).returncode == 2  # two prompt sources
    binary = Path(home["XDG_CONFIG_HOME"]).parent / "binary.sh"
    binary.write_bytes(b"echo \xff\n")
    r = cli(home, "task", "create", "-s", str(binary))
    assert r.returncode == 2 and r.stderr == f"error: --script {binary}: not UTF-8 text\n"
    assert cli(home, "task", "list", "-l", "0").returncode == 2
    t = json.loads(cli(home, "-o", "json", "task", "create", "-p", "finish me").stdout)
    with psycopg.connect(server.env["CYNODE_DATABASE_URL"], autocommit=True) as conn:
        conn.execute("UPDATE tasks SET status = 'completed', closed = true WHERE id = %s", (t["id"],))
    assert cli(home, "task", "cancel", "-y", t["id"]).returncode == 5
    down = {**home, "CYNODE_GATEWAY_URL": "http://127.0.0.1:9"}
    r = cli(down, "task", "list")
    assert r.returncode == 7 and "cannot reach" in r.stderr
    r = cli(down, "auth", "logout")  # clears local state even with the gateway down
    assert r.returncode == 0 and "token" not in config_of(home).read_text()


def test_expired_access_token_is_refreshed_automatically(home: dict[str, str]) -> None:
    login(home)
    path = config_of(home)
    before = load(None, {"XDG_CONFIG_HOME": home["XDG_CONFIG_HOME"]})
    assert before.token and before.refresh_token
    before.token = before.token[:-4] + "AAAA"  # an access token the gateway rejects (bad signature)
    save(before)
    r = cli(home, "-o", "json", "auth", "whoami")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["handle"] == "admin"
    after = load(None, {"XDG_CONFIG_HOME": home["XDG_CONFIG_HOME"]})
    assert after.token != before.token and after.refresh_token != before.refresh_token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_env_token_wins_and_api_tokens_work(home: dict[str, str]) -> None:
    login(home)
    r = cli(home, "-o", "json", "auth", "token", "create", "cli-test")
    pat = json.loads(r.stdout)["token"]
    assert pat.startswith("cyn_pat_")
    listed = cli(home, "auth", "token", "list")
    assert listed.returncode == 0 and pat not in listed.stdout
    anon = {**home, "XDG_CONFIG_HOME": home["XDG_CONFIG_HOME"] + "-empty", "CYNODE_TOKEN": pat}
    r = cli(anon, "-o", "json", "auth", "whoami")
    assert r.returncode == 0 and json.loads(r.stdout)["handle"] == "admin"
    token_id = json.loads(cli(home, "-o", "json", "auth", "token", "list").stdout)["tokens"][0]["id"]
    assert cli(home, "auth", "token", "revoke", token_id).returncode == 0
    assert cli(anon, "auth", "whoami").returncode == 3


def test_status_reports_reachability_readiness_and_user(home: dict[str, str]) -> None:
    r = cli(home, "-o", "json", "status")
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["healthy"] is True and "user" not in doc
    assert isinstance(doc["ready"], bool) and doc["readiness"]["status"] in ("ready", "not_ready")
    login(home)
    doc = json.loads(cli(home, "-o", "json", "status").stdout)
    assert doc["user"]["handle"] == "admin"
    r = cli({**home, "CYNODE_GATEWAY_URL": "http://127.0.0.1:9"}, "status")
    assert r.returncode == 7


def test_node_commands_for_admins(home: dict[str, str], server: ServeProcess) -> None:
    import httpx
    import msgspec

    from tests.support.nodes import capability

    r = httpx.post(server.url("controlplane") + "/v1/nodes/register", timeout=30,
                   json={"psk": NODE_PSK, "capability": msgspec.to_builtins(capability("cli-node", inference=False))})
    assert r.status_code in (200, 201), r.text
    login(home)
    listed = json.loads(cli(home, "-o", "json", "node", "list").stdout)
    assert [n["node_slug"] for n in listed["nodes"]] == ["cli-node"]
    table = cli(home, "node", "list")
    assert table.returncode == 0 and "cli-node" in table.stdout
    drained = json.loads(cli(home, "-o", "json", "node", "drain", "cli-node").stdout)
    assert drained["status"] == "drained"
    assert json.loads(cli(home, "-o", "json", "node", "enable", "cli-node").stdout)["status"] == "active"
    assert json.loads(cli(home, "-o", "json", "node", "get", "cli-node").stdout)["node_slug"] == "cli-node"
    assert cli(home, "node", "refresh-config", "cli-node").returncode == 0
    assert cli(home, "node", "disable", "cli-node").returncode == 0
    missing = cli(home, "node", "get", "no-such-node")
    assert missing.returncode == 4 and len(missing.stderr.strip().splitlines()) == 1


def test_task_inputs_cancel_watch_and_logs(home: dict[str, str], tmp_path: Path) -> None:
    """No worker serves this orchestrator, so tasks stay queued until canceled."""
    login(home)
    script = tmp_path / "job.sh"
    script.write_text("echo from-a-script\n")
    prompt = tmp_path / "prompt.md"
    prompt.write_text("Summarise this file, please")
    made = json.loads(cli(home, "-o", "json", "task", "create", "-s", str(script)).stdout)
    assert made["input_mode"] == "script"
    made = json.loads(cli(home, "-o", "json", "task", "create", "-f", str(prompt)).stdout)
    assert made["input_mode"] == "prompt" and made["task_name"] == "summarise-this-file-please"
    r = cli(home, "-o", "json", "task", "create", "--command", "echo a", "--command", "echo b", "--name", "two")
    made = json.loads(r.stdout)
    assert made["input_mode"] == "commands" and made["task_name"] == "two"

    r = cli(home, "task", "cancel", "two", "-y")
    assert r.returncode == 0, r.stderr
    again = json.loads(cli(home, "-o", "json", "task", "cancel", "two", "-y").stdout)
    assert again["status"] == "canceled"  # idempotent
    watch = cli(home, "task", "watch", "two")
    assert watch.returncode == 0 and "canceled" in watch.stdout
    logs = json.loads(cli(home, "-o", "json", "task", "logs", "two", "--stream", "stdout").stdout)
    assert logs["stream"] == "stdout" and logs["lines"] in ([], [""])
    assert cli(home, "task", "logs", "two").returncode == 0
    listed = json.loads(cli(home, "-o", "json", "task", "list", "--status", "canceled").stdout)
    assert [t["task_name"] for t in listed["tasks"]] == ["two"]
    assert cli(home, "task", "create").returncode == 2  # nothing to run: a usage error
    assert cli(home, "task", "result", "two", "--strict").returncode == 1
