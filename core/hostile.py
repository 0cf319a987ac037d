"""Input no one should be able to store: checks shared by the API's parser, the import files and the
forms. Pure module: no Django import.

Text must be Unicode a database and a JSON encoder accept later: no lone surrogate (``"\\ud800"``
parses from JSON but cannot be encoded as UTF-8), no NUL (PostgreSQL refuses it). Structures are
bounded in depth, so no parser or walker recurses without end.
"""

from __future__ import annotations

from typing import Any

from gates.facts import ECHO, echo  # noqa: F401 (echo is used from here too)

MAX_DEPTH = 32


class HostileInput(ValueError):
    """Input refused before it reaches the services; ``path`` says where (``nodes[3].labels``)."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None."""
    if "\x00" in text:
        return "must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (it holds a lone surrogate)"
    return None


def check_structure(data: Any, *, max_depth: int = MAX_DEPTH, root: str = "") -> None:
    """Walk parsed JSON-like data (without recursion) and raise :class:`HostileInput` at the first
    string key or value that cannot be stored, or past ``max_depth`` levels of nesting."""
    stack: list[tuple[Any, str, int]] = [(data, root, 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                raise HostileInput(path or "body", problem)
        elif isinstance(value, dict):
            if depth >= max_depth:
                raise HostileInput(path or "body", f"nested more than {max_depth} levels deep")
            for key, item in value.items():
                key_text = str(key)
                problem = text_problem(key_text)
                if problem:
                    raise HostileInput(path or "body", f"a key {problem}")
                stack.append((item, f"{path}.{key_text[:ECHO]}" if path else key_text[:ECHO], depth + 1))
        elif isinstance(value, list):
            if depth >= max_depth:
                raise HostileInput(path or "body", f"nested more than {max_depth} levels deep")
            stack.extend((item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value))


def checked_arguments(options: dict[str, Any]) -> None:
    """Refuse command-line text no database can store (a command line may carry any bytes: Python
    turns what is not UTF-8 into lone surrogates). Raises :class:`HostileInput` naming the option."""
    for name, value in options.items():
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if isinstance(item, str):
                problem = text_problem(item)
                if problem:
                    raise HostileInput(f"--{name.replace('_', '-')}", problem)
