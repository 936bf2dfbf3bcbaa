"""`decode_json`: whatever bytes arrive, the only failure is msgspec.DecodeError (which every caller maps to bad
input), and what decodes is what msgspec itself gives."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cynode.utf8 import decode_json
from tests.test_gateway_fuzz import encode, json_values, splices


class Doc(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    tags: list[str] = []


docs = st.fixed_dictionaries({"name": st.text(max_size=20)}, optional={"tags": st.lists(st.text(max_size=5))})


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=64) | st.tuples(json_values | docs, splices).map(lambda t: encode(*t)))
def test_any_bytes_decode_or_fail_as_malformed_json(raw: bytes) -> None:
    for type_ in (None, Doc):
        try:
            value = decode_json(raw) if type_ is None else decode_json(raw, type_)
        except msgspec.DecodeError:  # ValidationError is one too
            continue
        assert value == (msgspec.json.decode(raw) if type_ is None else msgspec.json.decode(raw, type=type_))


@pytest.mark.parametrize("bad", [b"\x80", b"\xc3", b"\xed\xa0\x80", b"\xff", b"\xf4\x90\x80\x80", b"\xc0\xaf"])
def test_bytes_that_are_not_utf8_inside_a_string_are_malformed_json(bad: bytes) -> None:
    raw = b'{"name": "a' + bad + b'b"}'
    with pytest.raises(msgspec.DecodeError, match="invalid UTF-8"):
        decode_json(raw, Doc)
    assert decode_json(json.dumps({"name": "a\u00e9b"}).encode(), Doc).name == "a\u00e9b"
