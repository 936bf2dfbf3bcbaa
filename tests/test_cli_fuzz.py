"""Fuzzing the `cynode` command line (every client command, random options and values, awkward files) with the
gateway unreachable: it never ends in a traceback, only in one of cli.md's exit codes with a one-line error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cynode.cli.main import cli

EXIT_CODES = {0, 1, 2, 3, 4, 5, 6, 7, 8}  # 1: `task result --strict` on a task that did not succeed
COMMANDS = [["status"], ["version"], ["auth", "login"], ["auth", "logout"], ["auth", "whoami"],
            ["auth", "token", "create"], ["auth", "token", "list"], ["auth", "token", "revoke"],
            ["task", "create"], ["task", "list"], ["task", "get"], ["task", "watch"], ["task", "result"],
            ["task", "logs"], ["task", "cancel"], ["task", "artifacts", "list"], ["task", "artifacts", "get"],
            ["chat"], ["node", "list"], ["node", "get"], ["node", "drain"], ["node", "enable"]]
OPTIONS = ["-p", "-f", "-s", "-a", "--input-mode", "--command", "--name", "-w", "-l", "--cursor", "--status",
           "--stream", "-y", "--strict", "-m", "--model", "--project", "-u", "--password-stdin", "--json", "-F",
           "--out", "--use-inference", "-o", "-q", "--no-color", "--", "-x"]
words = st.sampled_from(["", "x", "-", "json", "table", "0", "-1", "99999999999", "prompt", "script", "commands",
                         "stdout", "all", "\x00", "é✓", "a\nb", "../../etc/passwd", "FILE_BINARY", "FILE_TEXT",
                         "FILE_MISSING", "DIR"]) | st.text(max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(command=st.sampled_from(COMMANDS), args=st.lists(st.sampled_from(OPTIONS) | words, max_size=5),
       globals_=st.lists(st.sampled_from(["-o", "json", "-q", "--no-color", "-c", "FILE_BINARY"]), max_size=2),
       stdin=st.sampled_from(["", "pw\n", "hello\n/exit\n", "\xff"]))
@example(command=["task", "create"], args=["-s", "FILE_BINARY"], globals_=[], stdin="")
@example(command=["auth", "whoami"], args=[], globals_=["-c", "FILE_BINARY"], stdin="")
def test_the_cli_never_ends_in_a_traceback(tmp_path_factory: Any, command: list[str], args: list[str],
                                           globals_: list[str], stdin: str) -> None:
    home = tmp_path_factory.mktemp("cli")
    files = {"FILE_BINARY": home / "binary", "FILE_TEXT": home / "text.txt", "FILE_MISSING": home / "missing",
             "DIR": home}
    files["FILE_BINARY"].write_bytes(b"\xff\xfe not text \x00")
    files["FILE_TEXT"].write_text("echo hi\n")
    argv = [str(files.get(a, a)) for a in [*globals_, *command, *args]]
    env = {"XDG_CONFIG_HOME": str(home / "xdg"), "CYNODE_GATEWAY_URL": "http://127.0.0.1:9", "CYNODE_TOKEN": "t",
           "HOME": str(home)}
    result = CliRunner().invoke(cli, argv, input=stdin, env=env, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"cynode {argv!r} raised {result.exception!r}") from result.exception
    assert result.exit_code in EXIT_CODES, (argv, result.exit_code, result.output)
    assert "Traceback" not in result.output, (argv, result.output)
    assert not (Path(home) / "xdg" / "cynode" / "config.toml").exists() or command[0] != "version"
