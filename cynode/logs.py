"""Process logging: text or JSON lines on stderr, with a last-line scrubber for anything token-shaped.

Code never logs secrets on purpose (they are Secret or kept out of log calls); the scrubber is the safety net for
what slips through a third-party message (an exception text quoting a URL with a password, a bearer header).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

_SCRUB = [
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1***"),
    (re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), "***jwt***"),
    (re.compile(r"(?i)\b(password|passwd|secret|token|psk|api_key)(\"?\s*[=:]\s*\"?)[^\s\"',}]+"), r"\1\2***"),
    (re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]+@"), r"\1***@"),
    (re.compile(r"\bcyn_(?:pat|rt)_[A-Za-z0-9_-]{8,}"), "***token***"),
]

_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def scrub(text: str) -> str:
    for pattern, repl in _SCRUB:
        text = pattern.sub(repl, text)
    return text


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_extras(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(doc, default=str))


# Control characters as escapes: a logged value (an unmatched path is logged as the client sent it, URL-decoded)
# must not end the line and start a forged one, nor drive the terminal.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)} | {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%H:%M:%S", time.localtime(record.created))
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()}" + (f" [{extras}]" if extras else "")
        line = line.translate(_CONTROL)  # the traceback below keeps its own line breaks
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return scrub(line)


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Our own request log replaces the servers' access logs; keep their errors.
    for name in ("uvicorn.access", "uvicorn.error", "httpx", "docker", "urllib3", "pgserver", "yoyo", "psycopg.pool"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True
