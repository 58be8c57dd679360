"""What a session sends, in order: the microphone's audio, activity markers, tool responses."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Activity(Enum):
    """Activity markers, sent when the server's activity detection is off (push-to-talk, energy end)."""

    START = "start"
    END = "end"


@dataclass(frozen=True)
class ToolResponses:
    """Results of tool calls (dicts for types.FunctionResponse), sent after what was queued before them."""

    responses: tuple[dict[str, Any], ...]


Outgoing = bytes | Activity | ToolResponses  # audio (16 kHz mono s16le), a marker, or tool results


class SendQueue:
    """What waits to be sent, in order. An item whose send failed goes back to the front."""

    def __init__(self) -> None:
        self._q: deque[Outgoing] = deque()
        self._ready = asyncio.Event()

    def put(self, item: Outgoing) -> None:
        self._q.append(item)
        self._ready.set()

    def put_front(self, items: list[Outgoing]) -> None:
        self._q.extendleft(reversed(items))
        if self._q:
            self._ready.set()

    def drop(self, kind: type) -> None:
        """Leave out what waits of this kind."""
        self._q = deque(x for x in self._q if not isinstance(x, kind))

    async def get(self) -> Outgoing:
        while not self._q:
            self._ready.clear()
            await self._ready.wait()
        return self._q.popleft()
