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


def test_a_text_line_cannot_be_split_or_forged_by_request_values() -> None:
    # An unmatched path is logged as it came (URL-decoded): %0A in it must not start a forged line.
    forged = "/x\n12:00:00 INFO    cynode.auth: login ok [user=admin]\r\x1b[2K"
    rec = logging.LogRecord("cynode.http", logging.INFO, __file__, 1, "request %s", (forged,), None)
    rec.route = forged
    line = TextFormatter().format(rec)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line.count("login ok") == 2 and "\\n12:00:00" in line  # still readable, escaped
    assert json.loads(JsonFormatter().format(rec))["route"] == forged  # JSON escapes on its own
