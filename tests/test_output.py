"""Bounded stdout/stderr capture: whatever the bytes and however they arrive, the result is the spec's truncation."""

from __future__ import annotations

import itertools

from hypothesis import example, given, settings
from hypothesis import strategies as st

from cynode.worker.output import LOOKAHEAD, BoundedCapture, cut_utf8


def reference(data: bytes, limit: int) -> tuple[str, bool]:
    """worker.md §5.5 computed the obvious way, with the whole output in memory."""
    full = data.decode("utf-8", errors="replace")
    text = ""
    for ch in full:  # the longest character prefix that fits
        if len((text + ch).encode()) > limit:
            break
        text += ch
    return text, text != full


def capture(chunks: list[bytes], limit: int) -> tuple[str, bool]:
    cap = BoundedCapture(limit)
    for c in chunks:
        cap.feed(c)
    return cap.result()


# Bytes biased towards UTF-8 edge cases: multi-byte characters, lone continuation bytes, truncated sequences.
utf8ish = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=40).map(lambda s: s.encode("utf-8")),
    st.lists(st.sampled_from([b"a", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\x80", b"\xff", b"\xe2\x82",
                              b"\xf0\x9f", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\xf4\x90\x80", b"\n"]),
             max_size=40).map(b"".join),
)


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    data = b"".join(draw(st.lists(utf8ish, max_size=6)))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return data, [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=1500, deadline=None)
@given(chunked(), st.integers(min_value=1, max_value=40))
@example((b"\xe2\x82\xac", [b"\xe2", b"\x82\xac"]), 3)  # exactly at the limit: not truncated
@example((b"\xe2\x82\xac!", [b"\xe2\x82\xac!"]), 3)
@example((b"\xff\xff", [b"\xff\xff"]), 3)  # invalid bytes grow to 3 bytes each when replaced
@example((b"\xf0\x9f\x98A", [b"\xf0\x9f\x98A"]), 3)  # a cut-off sequence at the limit is one U+FFFD that fits
def test_capture_matches_the_spec_for_any_bytes_and_chunking(data_chunks: tuple[bytes, list[bytes]],
                                                              limit: int) -> None:
    data, chunks = data_chunks
    text, truncated = capture(chunks, limit)
    assert (text, truncated) == reference(data, limit)
    encoded = text.encode("utf-8")  # valid UTF-8 (encode would fail on lone surrogates)
    assert len(encoded) <= limit


def test_memory_stays_bounded_however_much_is_printed() -> None:
    cap = BoundedCapture(1000)
    for _ in range(10_000):
        cap.feed(b"x" * 1000)
    assert len(cap._head) == 1000 + LOOKAHEAD
    assert cap.total == 10_000_000
    assert cap.result() == ("x" * 1000, True)


def test_output_exactly_at_the_limit_is_not_truncated() -> None:
    assert capture([b"a" * 262144], 262144) == ("a" * 262144, False)
    assert capture([b"a" * 262145], 262144) == ("a" * 262144, True)


def test_a_character_straddling_the_limit_is_dropped_whole() -> None:
    assert capture([b"ab\xe2\x82\xac"], 4) == ("ab", True)
    assert cut_utf8("ab€", 4) == "ab"


def test_empty_stream() -> None:
    assert capture([], 10) == ("", False)
