"""The pure parts of inference: stop sequences, keep_alive durations, Gemma turns, GGUF headers, base URLs,
error classification, option mapping. No model, no sockets."""

from __future__ import annotations

import contextlib
import io
import struct
import subprocess
import sys
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cynode.contracts.inference import ModelOptions
from cynode.inference.client import Endpoint, parse_base_url
from cynode.inference.durations import FOREVER, parse_keep_alive
from cynode.inference.errors import (
    InferenceBusy,
    InferenceHTTPError,
    InferenceUnsupported,
    ModelLoading,
    ModelNotFound,
    http_error,
)
from cynode.inference.generation import (
    Grammar,
    InvalidRequest,
    Sampling,
    grammar_from_format,
    max_tokens_from,
    sampling_from_options,
)
from cynode.inference.gguf import GGUFError, parse_metadata
from cynode.inference.prompt import Turn, gemma_prompt, template_prompt
from cynode.inference.registry import canonical
from cynode.inference.stops import StopScanner

# ------------------------------------------------------------------------------------------------ stop sequences


def _run(scanner: StopScanner, pieces: list[str]) -> str:
    return "".join(scanner.feed(p) for p in pieces) + scanner.flush()


@given(st.text(alphabet="ab<>x", max_size=40), st.lists(st.text(alphabet="ab<>", min_size=1, max_size=4), max_size=3),
       st.data())
def test_stop_scanner_cuts_at_the_first_completed_stop_however_the_text_is_split(text: str, stops: list[str],
                                                                                  data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    # Reference: grow the text one character at a time and stop at the first prefix that ends with a stop.
    expected = text
    for end in range(1, len(text) + 1):
        done = [end - len(s) for s in stops if text[:end].endswith(s)]
        if done:
            expected = text[: min(done)]
            break
    hits = [s for s in stops if s in text]
    scanner = StopScanner(stops)
    assert _run(scanner, pieces) == expected
    assert scanner.stopped == bool(hits)


def test_stop_scanner_releases_text_as_soon_as_it_cannot_start_a_stop() -> None:
    s = StopScanner(["<end>"])
    assert s.feed("hello <") == "hello "  # "<" might begin "<end>": held back
    assert s.feed("b") == "<b"
    assert s.feed(" <en") == " "
    assert s.feed("d> tail") == ""
    assert s.stopped and s.flush() == ""


# ------------------------------------------------------------------------------------------------ keep_alive


@pytest.mark.parametrize(("value", "seconds"), [
    (None, 300.0), ("", 300.0), (0, 0.0), (30, 30.0), (2.5, 2.5), ("10s", 10.0), ("5m", 300.0),
    ("1h30m", 5400.0), ("1.5h", 5400.0), ("500ms", 0.5), ("300", 300.0), ("-1", FOREVER), (-1, FOREVER),
    ("-5m", FOREVER),
])
def test_keep_alive_parses_like_ollama(value: float | str | None, seconds: float) -> None:
    assert parse_keep_alive(value, 300.0) == seconds


@pytest.mark.parametrize("bad", ["soon", "5 minutes", "m", "1x", "--1"])
def test_keep_alive_rejects_nonsense(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_keep_alive(bad, 300.0)


@given(st.integers(0, 10**6), st.sampled_from(["s", "m", "h", "ms"]))
def test_keep_alive_units(n: int, unit: str) -> None:
    assert parse_keep_alive(f"{n}{unit}", 0) == pytest.approx(n * {"s": 1, "m": 60, "h": 3600, "ms": 0.001}[unit])


# ------------------------------------------------------------------------------------------------ Gemma turns


def test_gemma_prompt_puts_system_text_into_the_first_user_turn() -> None:
    prompt = gemma_prompt([Turn("system", "Be brief."), Turn("user", "Hi"), Turn("assistant", "Hello!"),
                           Turn("user", " Bye ")])
    assert prompt == (
        "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_gemma_prompt_with_only_a_system_message_still_says_it() -> None:
    assert gemma_prompt([Turn("system", "Rules")]) == (
        "<start_of_turn>user\nRules<end_of_turn>\n<start_of_turn>model\n")


def test_a_gguf_chat_template_is_rendered_with_the_generation_prompt_open() -> None:
    chatml = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    out = template_prompt(chatml, [Turn("system", "S"), Turn("user", "U")], bos_token="<s>", eos_token="</s>")
    assert out == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"


@given(st.lists(st.tuples(st.sampled_from(["system", "user", "assistant", "tool"]), st.text(max_size=20)),
                max_size=6))
def test_gemma_prompt_always_ends_with_an_open_model_turn(turns: list[tuple[str, str]]) -> None:
    prompt = gemma_prompt([Turn(r, c) for r, c in turns])
    assert prompt.endswith("<start_of_turn>model\n")
    assert prompt.count("<start_of_turn>") == prompt.count("<end_of_turn>") + 1


# ------------------------------------------------------------------------------------------------ GGUF header


def _gguf(meta: dict[str, int | float | bool | str], arrays: int = 1) -> bytes:
    """A minimal GGUF v3 header writer (test-side), with string arrays the reader must skip."""
    def s(x: str) -> bytes:
        raw = x.encode()
        return struct.pack("<Q", len(raw)) + raw

    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(meta) + arrays)
    for i in range(arrays):
        out += s(f"tokenizer.list{i}") + struct.pack("<IIQ", 9, 8, 3) + s("a") + s("bb") + s("")
    for key, value in meta.items():
        if isinstance(value, bool):
            out += s(key) + struct.pack("<I?", 7, value)
        elif isinstance(value, int):
            out += s(key) + struct.pack("<Iq", 11, value)
        elif isinstance(value, float):
            out += s(key) + struct.pack("<Id", 12, value)
        else:
            out += s(key) + struct.pack("<I", 8) + s(value)
    return out


scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False), st.text())


@given(st.dictionaries(st.text(min_size=1, max_size=30), scalars, max_size=10))
def test_gguf_metadata_round_trips(meta: dict[str, int | float | bool | str]) -> None:
    assert parse_metadata(io.BytesIO(_gguf(meta))) == meta


@given(st.binary(max_size=200))
def test_gguf_reader_refuses_garbage_cleanly(junk: bytes) -> None:
    with contextlib.suppress(GGUFError):
        parse_metadata(io.BytesIO(junk))


@given(st.integers(0, 200))
def test_gguf_reader_refuses_a_truncated_header(cut: int) -> None:
    blob = _gguf({"general.architecture": "gemma3", "general.file_type": 15})
    if cut < len(blob):
        with pytest.raises(GGUFError):
            parse_metadata(io.BytesIO(blob[:cut]))


# ------------------------------------------------------------------------------------------------ base URLs


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1,
               max_size=80))
def test_http_unix_urls_carry_any_socket_path(path: str) -> None:
    socket_path = "/" + path
    assert parse_base_url("http+unix://" + quote(socket_path, safe="")) == Endpoint("http://localhost", socket_path)


@pytest.mark.parametrize(("url", "endpoint"), [
    ("http://127.0.0.1:11434", Endpoint("http://127.0.0.1:11434")),
    ("http://127.0.0.1:11434/", Endpoint("http://127.0.0.1:11434")),
    ("https://ollama.example/prefix/", Endpoint("https://ollama.example/prefix")),
    ("http+unix://%2Frun%2Fcynode%2Finference-proxy.sock",
     Endpoint("http://localhost", "/run/cynode/inference-proxy.sock")),
    ("unix:///run/ollama.sock", Endpoint("http://localhost", "/run/ollama.sock")),
])
def test_base_urls(url: str, endpoint: Endpoint) -> None:
    assert parse_base_url(url) == endpoint


@pytest.mark.parametrize("url", ["ftp://x", "http://", "http+unix://", "localhost:11434"])
def test_bad_base_urls(url: str) -> None:
    with pytest.raises(ValueError, match="invalid inference URL"):
        parse_base_url(url)


# ------------------------------------------------------------------------------------------------ errors


def test_http_errors_are_typed_by_what_the_caller_should_do() -> None:
    assert isinstance(http_error(404, "model 'x' not found"), ModelNotFound)
    assert isinstance(http_error(404, 'model "x" not found, try pulling it first'), ModelNotFound)
    assert type(http_error(404, "404 page not found")) is InferenceHTTPError  # a wrong URL is not a missing model
    assert isinstance(http_error(503, "model is loading"), ModelLoading)
    assert isinstance(http_error(503, "server busy"), InferenceBusy)
    assert isinstance(http_error(501, "pull not supported"), InferenceUnsupported)
    retry = {status: http_error(status, "x").retryable for status in (400, 403, 404, 413, 500, 501, 502, 503, 504)}
    assert [s for s, r in retry.items() if r] == [502, 503, 504]
    assert http_error(503, "loading").retryable and not http_error(404, "model x not found").retryable


# ------------------------------------------------------------------------------------------------ options


def test_ollama_options_override_only_what_they_set() -> None:
    s = sampling_from_options(ModelOptions(temperature=0.1, seed=5, top_k=3))
    assert (s.temperature, s.seed, s.top_k, s.top_p) == (0.1, 5, 3, Sampling().top_p)
    assert sampling_from_options(None) == Sampling()


def test_num_predict_and_format() -> None:
    assert [max_tokens_from(v) for v in (None, -1, -2, 0, 7)] == [-1, -1, -1, 0, 7]
    with pytest.raises(InvalidRequest):
        max_tokens_from(-3)
    assert grammar_from_format("json") == Grammar("json")
    assert grammar_from_format({"type": "object"}) == Grammar("schema", {"type": "object"})
    assert grammar_from_format("") is None and grammar_from_format(None) is None
    with pytest.raises(InvalidRequest):
        grammar_from_format("yaml")


def test_model_names_follow_ollamas_latest_rule() -> None:
    assert canonical("llama3") == "llama3:latest" == canonical("llama3:latest")
    assert canonical("gemma3:270m") == "gemma3:270m"
    assert canonical("ns/model") == "ns/model:latest"


def test_importing_the_server_does_not_load_llama_cpp() -> None:
    code = ("import sys, cynode.inference.server, cynode.inference.client, cynode.worker.inference_proxy; "
            "print('llama_cpp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
