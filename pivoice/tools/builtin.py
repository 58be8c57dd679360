"""The tools that need nothing but the Pi, each switched on or off in [tools]: the date and time here, ending
the conversation, turning the microphone off. The last two act once the answer being spoken has played
(the model says goodbye first), and only on the conversation that asked."""

from __future__ import annotations

import asyncio
import datetime
from typing import TYPE_CHECKING, Any

from ..config import ToolSettings
from ..states import IN_CONVERSATION, INTERRUPTIONS, Event, State
from .registry import Tool

if TYPE_CHECKING:
    from ..assistant import Assistant

AFTER_ANSWER_POLL = 0.05  # s
SAY_GOODBYE_SECONDS = 3.0  # after the call, how long the model has to start its last answer


def tools(settings: ToolSettings, assistant: Assistant, can_unmute: bool = True) -> list[Tool]:
    """`can_unmute`: a button can unmute (mute_microphone is offered only then: by voice, nothing could)."""
    out = []
    if settings.time:
        out.append(Tool("get_date_and_time", "The current date, time, weekday and time zone where this speaker "
                        "is. Use it for any question about the time or the date.", _now, timeout=2.0))
    if settings.end_conversation:
        out.append(Tool("end_conversation", "End the conversation after saying goodbye: the speaker goes back to "
                        "waiting for its wake word. Use it when the person says goodbye or is done.",
                        _after_answer(assistant, Event.SESSION_ENDED, reason="the model ended the conversation"),
                        timeout=2.0))
    if settings.mute and can_unmute:
        out.append(Tool("mute_microphone", "Turn this speaker's microphone off, so that it hears nothing at all "
                        "until someone unmutes it with its button. Use it only when the person explicitly asks to "
                        "mute the speaker or turn its microphone off.",
                        _after_answer(assistant, Event.MUTE_TOGGLE), timeout=2.0))
    return out


async def _now(args: dict[str, Any]) -> dict[str, Any]:
    now = datetime.datetime.now().astimezone()
    return {"date": now.date().isoformat(), "time": now.strftime("%H:%M"), "weekday": now.strftime("%A"),
            "time_zone": now.tzname() or "", "utc_offset": now.strftime("%z")}


def _after_answer(assistant: Assistant, event: Event, **info: Any):
    """A handler that answers at once and dispatches `event` once the answer under way has played."""

    async def handler(args: dict[str, Any]) -> dict[str, Any]:
        session, interrupted = assistant.session_id, []
        # Taken back when the person speaks up or presses the button before it happens ("wait, one more...").
        watch = (lambda t: interrupted.append(t.event)  # noqa: E731
                 if t.event in INTERRUPTIONS or t.event is Event.BUTTON_DOWN else None)
        assistant.listeners.append(watch)
        task = asyncio.get_running_loop().create_task(_when_played(assistant, session, event, info, interrupted))
        task.add_done_callback(lambda _: assistant.listeners.remove(watch))
        return {"ok": True, "note": "done once you have finished speaking"}

    return handler


async def _when_played(assistant: Assistant, session: int, event: Event, info: dict[str, Any],
                       interrupted: list) -> None:
    """Once the model's goodbye has played: the answer under way (or the one its result brings, if one
    starts within SAY_GOODBYE_SECONDS) is over and the speaker idle."""
    loop = asyncio.get_running_loop()
    started, answered = loop.time(), False
    while True:
        speaking = assistant.state is State.RESPONDING or not assistant.playback.idle
        answered |= speaking
        if interrupted or (not speaking and (answered or loop.time() - started > SAY_GOODBYE_SECONDS)):
            break
        await asyncio.sleep(AFTER_ANSWER_POLL)
    if not interrupted and assistant.session_id == session and assistant.state in IN_CONVERSATION:
        assistant.dispatch(event, **info)
