"""One conversation's tool calls: each runs as its own task, so calls run concurrently and never hold up
audio in either direction; each is answered with its id, exactly once, by a result or an error."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ..logs import fields
from .registry import Tool

log = logging.getLogger("pivoice.tools")
MAX_LOGGED_ARGS = 300  # characters of a call's arguments in its journal line


class ToolRunner:
    def __init__(self, tools: list[Tool], respond: Callable[[list[dict[str, Any]]], None], session: int = 0):
        """`respond`: sends function responses (dicts for types.FunctionResponse) on the conversation."""
        self._tools = {t.name: t for t in tools}
        self._respond = respond
        self._session = session
        self._running: dict[str, asyncio.Task] = {}
        self._count = 0

    def call(self, calls) -> None:
        """A toolCall's function calls (google-genai FunctionCall objects): each starts at once."""
        for c in calls:
            self._count += 1
            call_id = c.id or f"call-{self._count}"
            self._running[call_id] = asyncio.create_task(self._run(call_id, c.name or "", c.args or {}),
                                                         name=f"tool {c.name}")

    def cancel(self, ids) -> None:
        """toolCallCancellation: the server no longer wants these results (the person spoke over them)."""
        for call_id in ids or []:
            task = self._running.pop(call_id, None)
            if task is not None and not task.done():
                task.cancel()

    def close(self) -> None:
        """The conversation ended: what still runs is cancelled, unanswered (nobody is listening)."""
        for task in self._running.values():
            task.cancel()
        self._running.clear()

    @property
    def busy(self) -> int:
        return sum(1 for t in self._running.values() if not t.done())

    async def _run(self, call_id: str, name: str, args: dict) -> None:
        started = time.monotonic()
        tool = self._tools.get(name)
        result: dict[str, Any]
        try:
            if tool is None:
                result = {"error": f"there is no tool named '{name}'"}
            elif (wrong := tool.check(args)) is not None:
                result = {"error": f"bad arguments: {wrong}"}
            else:
                result = await asyncio.wait_for(tool.handler(args), tool.timeout)
                if not isinstance(result, dict):
                    result = {"result": result}
        except asyncio.CancelledError:
            self._log(name, args, started, "cancelled")
            raise
        except TimeoutError:
            result = {"error": f"{name} did not finish within {tool.timeout:g} s" if tool else "timed out"}
        except Exception as e:  # noqa: BLE001 - a failing tool is an error result; the conversation goes on
            result = {"error": f"{name} failed: {type(e).__name__}: {str(e)[:200]}"}
        self._running.pop(call_id, None)
        self._log(name, args, started, "error" if "error" in result else "ok", result.get("error"))
        response: dict[str, Any] = {"id": call_id, "name": name, "response": result}
        if tool is not None and not tool.blocking:
            response["scheduling"] = tool.scheduling
        self._respond([response])

    def _log(self, name: str, args: dict, started: float, outcome: str, error: str | None = None) -> None:
        shown = json.dumps(args, ensure_ascii=False, default=str)
        if len(shown) > MAX_LOGGED_ARGS:
            shown = shown[:MAX_LOGGED_ARGS] + "..."
        ms = round((time.monotonic() - started) * 1000)
        (log.warning if outcome != "ok" else log.info)(
            "tool %s(%s): %s in %d ms%s", name, shown, outcome, ms, f" ({error})" if error else "",
            extra=fields(event="tool", session=self._session or None, tool=name, args=shown, result=outcome,
                         latency_ms=ms))
