"""Domain errors. One exception handler (cynode.http.problems) maps them to RFC 9457 problem+json."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FieldError:
    field: str
    message: str


@dataclass
class DomainError(Exception):
    """Base of every error a service may raise on purpose; `detail` is safe to show to the caller."""

    detail: str = ""
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    status = 500
    code = "internal"
    title = "Internal Server Error"

    def __str__(self) -> str:
        return self.detail or self.title


class Invalid(DomainError):
    status, code, title = 400, "validation", "Validation Failed"


class Unauthenticated(DomainError):
    status, code, title = 401, "authentication", "Unauthorized"


class Forbidden(DomainError):
    status, code, title = 403, "authorization", "Forbidden"


class NotFound(DomainError):
    status, code, title = 404, "not_found", "Not Found"


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(DomainError):
    status, code, title = 413, "payload_too_large", "Payload Too Large"


class UnsupportedMediaType(DomainError):
    status, code, title = 415, "unsupported_media_type", "Unsupported Media Type"


class RateLimited(DomainError):
    status, code, title = 429, "rate_limit", "Too Many Requests"


class Unavailable(DomainError):
    status, code, title = 503, "service_unavailable", "Service Unavailable"


class LocalConstraint(DomainError):
    """A worker-side policy refused the request (worker.md §5.1)."""

    status, code, title = 400, "local_constraint", "Local Constraint"


class LocalPolicyForbids(LocalConstraint):
    """The node's own policy forbids the whole operation (e.g. sandbox.mode = disabled)."""

    status = 403


class ConfigError(Exception):
    """Startup configuration is invalid; the CLI prints it on one line and exits 2."""
