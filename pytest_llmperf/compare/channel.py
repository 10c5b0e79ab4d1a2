"""JSON messages, one per line, over a pair of pipes between the controller and a worker.

Pipes of their own rather than stdin/stdout, which the worker's pytest prints to.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any


class ChannelClosed(Exception):
    """The other side went away (its process ended)."""


class Channel:
    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._r = os.fdopen(read_fd, "r", encoding="utf-8")
        self._w = os.fdopen(write_fd, "w", encoding="utf-8")

    def send(self, **message: Any) -> None:
        try:
            self._w.write(json.dumps(message) + "\n")
            self._w.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise ChannelClosed(str(exc)) from None

    def recv(self) -> dict[str, Any]:
        try:
            line = self._r.readline()
        except ValueError as exc:  # closed
            raise ChannelClosed(str(exc)) from None
        if not line:
            raise ChannelClosed("end of stream")
        return json.loads(line)

    def close(self) -> None:
        for f in (self._r, self._w):
            with contextlib.suppress(OSError):
                f.close()
