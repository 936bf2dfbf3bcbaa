from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cynode.config import Secret, load_settings, parse_duration, parse_listen_addr
from cynode.errors import ConfigError


def test_defaults_are_a_working_single_host_setup(tmp_path: Path) -> None:
    s = load_settings(None, {"XDG_DATA_HOME": str(tmp_path)})
    assert s.gateway.listen_addr.endswith(":12080")
    assert s.controlplane.listen_addr.endswith(":12082")
    assert s.worker.listen_addr.endswith(":12090")
    assert s.db.url is None  # embedded PostgreSQL
    assert s.data_path == tmp_path / "cynode"


def test_toml_file_then_spec_env_then_cynode_env(tmp_path: Path) -> None:
    cfg = tmp_path / "cynode.toml"
    cfg.write_text('[gateway]\nlisten_addr = "127.0.0.1:1000"\n[scheduler]\npoll_interval_ms = 500\n'
                   '[worker.sandbox]\nmax_concurrency = 2\n')
    s = load_settings(cfg, {"USER_GATEWAY_LISTEN_ADDR": "127.0.0.1:2000"})
    assert s.gateway.listen_addr == "127.0.0.1:2000"
    assert s.scheduler.poll_interval_ms == 500
    assert s.worker.sandbox.max_concurrency == 2
    s = load_settings(cfg, {"USER_GATEWAY_LISTEN_ADDR": "127.0.0.1:2000", "CYNODE_GATEWAY_LISTEN_ADDR": "0.0.0.0:3000",
                            "CYNODE_WORKER_SANDBOX_MAX_CONCURRENCY": "7",
                            "CYNODE_GATEWAY_TRUSTED_PROXIES": '["10.0.0.1"]'})
    assert s.gateway.listen_addr == "0.0.0.0:3000"
    assert s.worker.sandbox.max_concurrency == 7
    assert s.gateway.trusted_proxies == ["10.0.0.1"]


def test_config_path_from_env(tmp_path: Path) -> None:
    cfg = tmp_path / "x.toml"
    cfg.write_text('data_dir = "/srv/cynode"\n')
    assert load_settings(None, {"CYNODE_CONFIG": str(cfg)}).data_dir == "/srv/cynode"


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[gateway]\nlisten_adr = \"x:1\"\n", "gateway.listen_adr: unknown key"),
        ("bogus = 1\n", "bogus: unknown key"),
        ("[gateway]\nlisten_addr = \"127.0.0.1:99999\"\n", "gateway.listen_addr: port 99999"),
        ("[worker.sandbox]\nmode = \"yolo\"\n", "worker.sandbox.mode: must be"),
        ("[scheduler]\npoll_interval_ms = \"fast\"\n", "scheduler.poll_interval_ms"),
        ("[auth]\naccess_ttl = \"soon\"\n", "auth.access_ttl: invalid duration"),
        ("[auth]\njwt_secret = \"short\"\n", "at least 32 bytes"),
        ("[worker.sandbox]\nuser = \"0:0\"\n", "must not be root"),
        ("[db]\nurl = \"mysql://x\"\n", "postgresql"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, toml: str, needle: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, {})
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_port_message_names_port(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[controlplane]\nlisten_addr = "0.0.0.0:70000"\n')
    with pytest.raises(ConfigError, match=r"controlplane\.listen_addr: port 70000 out of range"):
        load_settings(cfg, {})


def test_unparsable_or_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.toml"
    bad.write_text("[[[")
    with pytest.raises(ConfigError, match=r"x\.toml"):
        load_settings(bad, {})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", {})
    bad.write_bytes(b'[gateway]\nlisten_addr = "127.0.0.1:1\xff"\n')  # not UTF-8
    with pytest.raises(ConfigError, match=r"x\.toml: 'utf-8' codec can't decode"):
        load_settings(bad, {})


def test_cynode_toml_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cynode.toml").write_text('[gateway]\nlisten_addr = "127.0.0.1:4242"\n')
    assert load_settings(None, {}).gateway.listen_addr == "127.0.0.1:4242"
    (tmp_path / "cynode.toml").write_text("[[[")
    with pytest.raises(ConfigError, match=r"^cynode\.toml: "):  # named, not a traceback
        load_settings(None, {})


def test_secrets_never_show_in_repr() -> None:
    s = load_settings(None, {"CYNODE_JWT_SECRET": "s" * 40, "CYNODE_NODE_REGISTRATION_PSK": "psk-value-123",
                             "CYNODE_DATABASE_URL": "postgresql://u:hunter2@db/x"})
    text = repr(s)
    assert "s" * 40 not in text and "psk-value-123" not in text and "hunter2" not in text
    assert isinstance(s.auth.jwt_secret, Secret) and s.auth.jwt_secret == "s" * 40


def test_non_setting_cynode_env_is_ignored() -> None:
    s = load_settings(None, {"CYNODE_TOKEN": "x", "CYNODE_ADMIN_PASSWORD": "y", "CYNODE_NOT_A_KEY": "z"})
    assert s.gateway.listen_addr.endswith(":12080")


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["", "s", "m", "h", "d", "ms"]))
def test_parse_duration_units(n: int, unit: str) -> None:
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "ms": 0.001}[unit]
    assert parse_duration(f"{n}{unit}") == pytest.approx(n * factor)


@given(st.text(max_size=12))
def test_parse_duration_never_crashes_unexpectedly(text: str) -> None:
    with contextlib.suppress(ValueError):
        assert parse_duration(text) >= 0


@given(st.integers(min_value=0, max_value=65535))
def test_listen_addr_roundtrip(port: int) -> None:
    assert parse_listen_addr(f"127.0.0.1:{port}") == ("127.0.0.1", port)
    assert parse_listen_addr(f"[::1]:{port}") == ("::1", port)
    assert parse_listen_addr(f":{port}") == ("0.0.0.0", port)


@pytest.mark.parametrize("bad", ["localhost", "x:y", "1.2.3.4:65536", ""])
def test_listen_addr_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_listen_addr(bad)


def _leaf_keys(struct: type, prefix: str = "") -> dict[str, object]:
    import msgspec

    out: dict[str, object] = {}
    for f in msgspec.structs.fields(struct):
        if isinstance(f.type, type) and issubclass(f.type, msgspec.Struct):
            out.update(_leaf_keys(f.type, f"{prefix}{f.name}."))
        else:
            default = f.default if f.default is not msgspec.NODEFAULT else f.default_factory()
            out[prefix + f.name] = default
    return out


def test_example_config_documents_every_key_with_its_default() -> None:
    import re
    import tomllib

    from cynode.config import Settings

    text = (Path(__file__).resolve().parents[1] / "cynode.toml.example").read_text()
    section = ""
    documented: dict[str, object] = {}
    for line in text.splitlines():
        if m := re.match(r"^\[([a-z_.]+)\]$", line):
            section = m.group(1) + "."
        elif m := re.match(r"^# ([a-z_]+) = (.+?)(\s+#.*)?$", line):
            documented[section + m.group(1)] = tomllib.loads(f"v = {m.group(2)}")["v"]
        elif m := re.match(r"^# ([a-z_]+):", line):
            documented[section + m.group(1)] = None
    keys = _leaf_keys(Settings)
    assert sorted(set(keys) - set(documented)) == []
    assert sorted(set(documented) - set(keys)) == []
    for key, value in documented.items():
        if value is not None:
            assert value == keys[key], key
