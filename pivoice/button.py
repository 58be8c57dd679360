"""What a press of the talk button means, in the state the assistant is in when it comes (in the event
loop; gpio.py turns the pin's edges into `down()` and `up(held)`, a long hold into MUTE_TOGGLE).

- Server VAD (the default): a tap while idle or in error starts a conversation with what was said from
  the moment the button went down; a press while an answer plays or an alarm rings stops it.
- No server VAD (vad.automatic = false): push-to-talk; held is speaking, released is the end of it.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from .logs import fields
from .states import Event, State

log = logging.getLogger("pivoice.assistant")


class _Assistant(Protocol):  # what of the assistant a press needs (assistant.py)
    state: State
    settings: Any
    capture: Any

    @property
    def session(self) -> Any: ...

    def dispatch(self, event: Event, **info: Any) -> None: ...


class Button:
    def __init__(self, assistant: _Assistant):
        self.a = assistant
        self.press: tuple[State, int] | None = None  # state and capture index when the button went down
        self.talking = False  # push-to-talk: the button is held, activity started

    def down(self) -> None:
        a = self.a
        self.press = (a.state, a.capture.newest)
        if not a.settings.vad.automatic and a.state not in (State.MUTED, State.RINGING):
            a.dispatch(Event.TALK, from_index=a.capture.newest)  # push-to-talk: held = speaking
            return
        a.dispatch(Event.BUTTON_DOWN)

    def up(self, held: bool) -> None:
        a = self.a
        press, self.press = self.press, None
        if self.talking:
            self.talking = False
            if a.session is not None:
                a.session.activity_end()
            return
        if held or press is None:
            return  # a long press: MUTE_TOGGLE did the work
        if press[0] in (State.IDLE, State.ERROR):
            # Push-to-talk: what was said from the moment the button went down is sent.
            a.dispatch(Event.TAP, from_index=press[1])
        elif press[0] is State.MUTED:
            log.info("muted: hold the button to unmute", extra=fields(event="button", state=a.state.value))
