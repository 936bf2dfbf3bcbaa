from __future__ import annotations

import json
import logging

from cynode.logs import JsonFormatter, TextFormatter, scrub


def test_scrub_masks_token_shaped_values() -> None:
    text = ("Authorization: Bearer abcdefghijklmnop password=hunter2 token: xyz123456 "
            "postgresql://u:pw@host/db eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmnop "
            "cyn_pat_ABCDEFGHIJKLMNOP")
    out = scrub(text)
    for secret in ("abcdefghijklmnop", "hunter2", "xyz123456", ":pw@", "eyJhbGciOiJIUzI1NiJ9", "ABCDEFGHIJKLMNOP"):
        assert secret not in out


def test_json_lines_carry_extras_and_are_scrubbed() -> None:
    rec = logging.LogRecord("cynode.x", logging.INFO, __file__, 1, "login with password=%s", ("s3cret",), None)
    rec.request_id = "r1"
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["level"] == "info" and doc["request_id"] == "r1" and "s3cret" not in doc["msg"]
    line = TextFormatter().format(rec)
    assert "request_id=r1" in line and "s3cret" not in line
