"""The OpenAPI schema describes every answer as it is: the error answers every operation may give,
in DRF's error shape, are added to each operation (drf-spectacular documents successes only)."""

from __future__ import annotations

ERRORS = {
    "400": 'Bad input: `{field: [messages]}`, or `{"detail": message}` for a body that cannot be read.',
    "401": "No credentials, or a bad token.",
    "403": "The user's role does not allow it.",
    "404": "No such object.",
    "405": "The method is not allowed here.",
    "409": "It conflicts with the current state (a transition from the wrong state, a busy node).",
    "413": "The body is too large.",
    "414": "The URL is too long (refused by the web server).",
    "415": "The body's media type is not JSON.",
    "429": "Too many requests; `Retry-After` says when to try again.",
    "503": "The database is busy; `Retry-After` says when to try again.",
}
ERROR_SCHEMA = {
    "type": "object",
    "description": "DRF's error shape: field names (or `detail`, `non_field_errors`) to messages.",
    "additionalProperties": True,
}


def add_error_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    reference = {"$ref": "#/components/schemas/Error"}
    for path in result.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, description in ERRORS.items():
                media = "text/html" if status == "414" else "application/json"
                schema = {"type": "string"} if status == "414" else reference
                operation["responses"].setdefault(
                    status, {"description": description, "content": {media: {"schema": schema}}}
                )
    return result
