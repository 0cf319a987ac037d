"""The API's JSON parser: bounded before parsing, checked after.

A body larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is refused before it is read whole; JSON nested
deeper than the parser can follow, or than :data:`core.hostile.MAX_DEPTH`, and text no database can
store (NUL, lone surrogates) are refused with a 400 that says where.
"""

from __future__ import annotations

import json
import re

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from .hostile import MAX_DEPTH, HostileInput, check_structure


class RequestTooLarge(ParseError):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "too_large"


class SafeJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if limit is not None and len(raw) > limit:
            raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            data = json.loads(raw.decode(encoding))
        except UnicodeDecodeError:
            raise ParseError(f"The request body is not valid {encoding} text.") from None
        except RecursionError:
            raise ParseError(f"JSON parse error - nested more than {MAX_DEPTH} levels deep.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        try:
            check_structure(data)
        except HostileInput as exc:
            raise ParseError(_by_field(exc)) from None
        return data


def _by_field(exc: HostileInput) -> dict[str, list[str]]:
    """The error keyed by the top-level field it is in, as serializer errors are:
    ``{"labels": ["pool: is not valid Unicode text ..."]}``."""
    problem = str(exc).removeprefix(f"{exc.path}: ")
    match = re.match(r"^([^.\[]+)(.*)$", exc.path)
    if not match or exc.path == "body":
        return {"non_field_errors": [f"{exc.path}: {problem}" if exc.path != "body" else problem]}
    field, rest = match.group(1), match.group(2).lstrip(".")
    return {field: [f"{rest}: {problem}" if rest else problem]}
