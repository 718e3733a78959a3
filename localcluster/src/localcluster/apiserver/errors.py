"""Kubernetes `metav1.Status` errors."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An error answered as a `Status` object with Kubernetes' code and reason."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        """The Status as the real server writes it: metav1.Status's field order (details before
        code) and its omitempty fields left out."""
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            out["details"] = status_details(self.details)
        out["code"] = self.code
        return out


_DETAIL_FIELDS = ("name", "group", "kind", "uid")
_CAUSE_FIELDS = ("reason", "message", "field")


def status_details(details: dict[str, Any]) -> dict[str, Any]:
    """metav1.StatusDetails in its field order, empty strings omitted (every field is omitempty)."""
    out: dict[str, Any] = {k: details[k] for k in _DETAIL_FIELDS if details.get(k)}
    causes = [{k: c[k] for k in _CAUSE_FIELDS if c.get(k)} for c in details.get("causes") or []]
    if causes:
        out["causes"] = causes
    if details.get("retryAfterSeconds"):
        out["retryAfterSeconds"] = details["retryAfterSeconds"]
    return out


def qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> APIError:
    return APIError(
        404,
        "NotFound",
        f'{qualified(resource, group)} "{name}" not found',
        {"name": name, "group": group, "kind": resource},
    )


def already_exists(resource: str, group: str, name: str) -> APIError:
    return APIError(
        409,
        "AlreadyExists",
        f'{qualified(resource, group)} "{name}" already exists',
        {"name": name, "group": group, "kind": resource},
    )


def conflict(resource: str, group: str, name: str, why: str) -> APIError:
    return APIError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
        {"name": name, "group": group, "kind": resource},
    )


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> APIError:
    return APIError(405, "MethodNotAllowed", message)


def gone(message: str) -> APIError:
    return APIError(410, "Expired", message)


def unsupported_media_type(content_type: str, accepted: list[str]) -> APIError:
    return APIError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def unauthorized() -> APIError:
    return APIError(401, "Unauthorized", "Unauthorized")


def invalid(kind: str, group: str, name: str, causes: list[dict[str, str]]) -> APIError:
    """422 Invalid; each cause is {"field", "reason", "message"} as Kubernetes writes them."""
    qualified_kind = f"{kind}.{group}" if group else kind
    parts = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    body = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return APIError(
        422,
        "Invalid",
        f'{qualified_kind} "{name}" is invalid: {body}',
        {"name": name, "group": group, "kind": kind, "causes": causes},
    )
