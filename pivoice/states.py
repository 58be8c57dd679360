"""The assistant's states and events, and the one function that decides transitions.

Pure: no audio, sockets or clocks here, so every transition is testable on its own. The Assistant feeds
events in and runs the side effects (open or close a session, stop playback, reset the detector) that
belong to the transition it gets back; LEDs, sounds, sd_notify STATUS= and log lines follow it too.

    STARTING --ready--> IDLE --wake / tap--> CONNECTING --connected--> LISTENING <--> RESPONDING
                          ^                                                 |
                          +-- follow-up window passes, press, max duration, session ends or fails

    Any state but STARTING/STOPPED --hold (long press) / mute button--> MUTED --hold--> IDLE
    CONNECTING/LISTENING/RESPONDING --session failed--> ERROR --retry (after a backoff) / reload--> IDLE
    IDLE/ERROR/MUTED/in a conversation --a timer fires--> RINGING --press / wake word / ring time over--> IDLE

Interruptions (RESPONDING -> LISTENING): the server's `interrupted`, a button press, or the wake word
said by a person over the answer (barge-in).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class State(str, Enum):
    STARTING = "starting"  # opening the devices and loading the wake-word models
    IDLE = "idle"  # listening for the wake word only; nothing leaves the device
    CONNECTING = "connecting"  # wake word heard; the Live session is being opened, audio is buffered
    LISTENING = "listening"  # in a conversation; the microphone streams to the Live API
    RESPONDING = "responding"  # the model's answer is playing (the microphone still streams)
    MUTED = "muted"  # microphone off: no audio leaves the device, the wake word is not listened for
    ERROR = "error"  # the API cannot be used now (key rejected, network down...): see the log
    RINGING = "ringing"  # a timer or alarm rings: the button or the wake word stops it
    STOPPED = "stopped"  # shutting down


class Event(str, Enum):
    READY = "ready"  # devices open, models loaded: listening for the wake word
    WAKE = "wake"  # the wake word was heard
    CONNECTED = "connected"  # the Live session is set up
    MODEL_AUDIO = "model_audio"  # the model started (or continued) speaking
    INTERRUPTED = "interrupted"  # the server says the user talked over the answer
    TURN_DONE = "turn_done"  # the model's turn is complete and its audio has played out
    FOLLOW_UP_TIMEOUT = "follow_up_timeout"  # nobody spoke within the follow-up window
    MAX_DURATION = "max_duration"  # the conversation reached conversation.max_seconds
    SESSION_ENDED = "session_ended"  # the session closed
    SESSION_FAILED = "session_failed"  # the session could not be opened or broke (reason and kind logged)
    RETRY = "retry"  # the wait after a failure is over: try again on the next wake word
    RELOADED = "reloaded"  # the API key was read again (SIGHUP / systemctl reload)
    MIC_LOST = "mic_lost"  # the microphone failed (unplugged...): pivoice keeps trying to reopen it
    MIC_BACK = "mic_back"  # the microphone works again
    BARGE_IN = "barge_in"  # a person said the wake word over the answer
    BUTTON_DOWN = "button_down"  # the talk button went down (interrupts, or ends a conversation)
    TAP = "tap"  # the talk button was pressed and released (not held) while idle: push-to-talk
    TALK = "talk"  # push-to-talk (vad.automatic = false): the button went down, speaking starts
    MUTE_TOGGLE = "mute_toggle"  # the talk button held (long press), or the mute button pressed
    TIMER_FIRED = "timer_fired"  # a timer or alarm came due (info: name, kind, late)
    RING_TIMEOUT = "ring_timeout"  # it rang for timers.ring_seconds and nobody stopped it
    STOP = "stop"  # SIGINT / SIGTERM


#: the interruptions: playback stops at once and the session keeps listening
INTERRUPTIONS = frozenset({Event.INTERRUPTED, Event.BUTTON_DOWN, Event.BARGE_IN, Event.TALK})

IN_CONVERSATION = frozenset({State.CONNECTING, State.LISTENING, State.RESPONDING})

_TABLE: dict[tuple[State, Event], State] = {
    (State.STARTING, Event.READY): State.IDLE,
    (State.IDLE, Event.WAKE): State.CONNECTING,
    (State.IDLE, Event.TAP): State.CONNECTING,
    (State.CONNECTING, Event.BUTTON_DOWN): State.IDLE,
    (State.LISTENING, Event.BUTTON_DOWN): State.IDLE,
    (State.RESPONDING, Event.BUTTON_DOWN): State.LISTENING,
    (State.RESPONDING, Event.BARGE_IN): State.LISTENING,
    (State.MUTED, Event.MUTE_TOGGLE): State.IDLE,
    (State.IDLE, Event.TALK): State.CONNECTING,
    (State.CONNECTING, Event.TALK): State.CONNECTING,
    (State.LISTENING, Event.TALK): State.LISTENING,
    (State.RESPONDING, Event.TALK): State.LISTENING,
    (State.ERROR, Event.RETRY): State.IDLE,
    (State.ERROR, Event.RELOADED): State.IDLE,
    (State.ERROR, Event.MIC_BACK): State.IDLE,
    # A wake word or a tap that cannot be served: the state stays, its light and log say why.
    (State.ERROR, Event.WAKE): State.ERROR,
    (State.ERROR, Event.TAP): State.ERROR,
    (State.CONNECTING, Event.CONNECTED): State.LISTENING,
    (State.LISTENING, Event.MODEL_AUDIO): State.RESPONDING,
    (State.RESPONDING, Event.INTERRUPTED): State.LISTENING,
    (State.RESPONDING, Event.TURN_DONE): State.LISTENING,
    (State.LISTENING, Event.FOLLOW_UP_TIMEOUT): State.IDLE,
    (State.RINGING, Event.BUTTON_DOWN): State.IDLE,
    (State.RINGING, Event.WAKE): State.IDLE,
    (State.RINGING, Event.RING_TIMEOUT): State.IDLE,
    (State.RINGING, Event.TIMER_FIRED): State.RINGING,  # another one: it keeps ringing
    (State.RINGING, Event.MIC_LOST): State.RINGING,  # it keeps ringing; the microphone's trouble after it
    (State.RINGING, Event.MIC_BACK): State.RINGING,
}


def next_state(state: State, event: Event) -> State | None:
    """The state after `event` in `state`, or None when the event changes nothing there."""
    if event is Event.STOP:
        return State.STOPPED if state is not State.STOPPED else None
    if state in IN_CONVERSATION and event in (Event.MAX_DURATION, Event.SESSION_ENDED):
        return State.IDLE
    if state in IN_CONVERSATION and event is Event.SESSION_FAILED:
        return State.ERROR
    if event is Event.MIC_LOST and (state in (State.IDLE, State.ERROR) or state in IN_CONVERSATION):
        return State.ERROR
    if event is Event.MUTE_TOGGLE and (state in (State.IDLE, State.ERROR, State.RINGING) or state in IN_CONVERSATION):
        return State.MUTED
    if event is Event.TIMER_FIRED and (state in (State.IDLE, State.ERROR, State.MUTED) or state in IN_CONVERSATION):
        return State.RINGING  # (a conversation ends for it; a muted speaker is muted again afterwards)
    return _TABLE.get((state, event))


@dataclass(frozen=True)
class Transition:
    """What `Assistant.dispatch()` hands every listener (the log, LEDs, sd_notify): the state before and
    after, the event, the conversation's number, what the event carried (`info`, e.g. the detection or
    the failure's reason) and, in ERROR, what it is about and what happens next. Listeners only read it."""

    old: State
    new: State
    event: Event
    session: int
    info: dict[str, Any] = field(default_factory=dict)
    problem: str = ""  # ERROR: what is wrong, in words ("the microphone is unavailable")
    then: str = ""  # ERROR: what happens next ("trying again in 4 s", "fix the key, then: ...")


Listener = Callable[[Transition], None]
