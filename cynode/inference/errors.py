"""What can go wrong talking to an inference server, sorted by what the caller should do about it.

`retryable` errors are worth another attempt (later, or on another node): the server was unreachable, slow,
busy, still loading the model, or a proxy in front of it failed. The others will fail the same way again.
"""

from __future__ import annotations


class InferenceError(Exception):
    retryable = False


class InferenceConnectionError(InferenceError):
    """No connection, or it broke mid-answer (server down, socket missing, connection reset)."""

    retryable = True


class InferenceTimeout(InferenceError):
    retryable = True


class InferenceProtocolError(InferenceError):
    """The server answered something that is not the Ollama API (not JSON, wrong shape)."""


class InferenceHTTPError(InferenceError):
    """The server answered with an HTTP error (or an `{"error": ...}` line inside a stream: status 200)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status in (429, 502, 503, 504)


class ModelNotFound(InferenceHTTPError):
    """The model is not on that server (pull it, or pick another node)."""


class ModelLoading(InferenceHTTPError):
    """The server is still loading the model; try again shortly."""

    retryable = True


class InferenceBusy(InferenceHTTPError):
    """Too many queued requests (503/429): back off and retry."""

    retryable = True


class InferenceUnsupported(InferenceHTTPError):
    """The server does not offer this operation (e.g. pull on the built-in server: 501)."""


def http_error(status: int, message: str) -> InferenceHTTPError:
    """The typed error for an HTTP error answer."""
    text = message.lower()
    if status == 404 and "model" in text and "not found" in text:
        return ModelNotFound(status, message)
    if status == 503 and "loading" in text:
        return ModelLoading(status, message)
    if status in (429, 503):
        return InferenceBusy(status, message)
    if status in (405, 501):
        return InferenceUnsupported(status, message)
    return InferenceHTTPError(status, message)
