"""One progress line on stderr for long commands: rewritten in place on a terminal, a line per
change otherwise (logs and CI)."""

from __future__ import annotations

import time


class ProgressLine:
    def __init__(self, stream, label: str):
        self.stream = stream
        self.label = label
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.started = time.monotonic()
        self.last = ""

    def show(self, text: str) -> None:
        line = f"{self.label}: {text} {time.monotonic() - self.started:.1f}s"
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self.last)))
        elif text != getattr(self, "_last_text", None):
            self.stream.write(line + "\n")
        self._last_text = text
        self.stream.flush()
        self.last = line

    def stage(self, stage: str, done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        self.show(f"{stage} {done}/{total} ({percent}%)")

    __call__ = stage

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
