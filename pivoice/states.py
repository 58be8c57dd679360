"""The assistant's states and events, and the one function that decides transitions.

Pure: no audio, sockets or clocks here, so every transition is testable on its own. The Assistant feeds
events in and runs the side effects (open or close a session, stop playback, reset the detector) that
belong to the transition it gets back; LEDs, sounds, sd_notify STATUS= and log lines follow it too.

    STARTING --ready--> IDLE --wake / button--> CONNECTING --connected--> LISTENING <--> RESPONDING
      ^                                                   |
      +---- follow-up window passes, max duration, session ends or fails, stop ---+
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    STARTING = "starting"  # opening the devices and loading the wake-word models
    IDLE = "idle"  # listening for the wake word only; nothing leaves the device
    CONNECTING = "connecting"  # wake word heard; the Live session is being opened, audio is buffered
    LISTENING = "listening"  # in a conversation; the microphone streams to the Live API
    RESPONDING = "responding"  # the model's answer is playing (the microphone still streams)
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
    SESSION_ENDED = "session_ended"  # the session closed or failed (the reason is logged with it)
    STOP = "stop"  # SIGINT / SIGTERM


IN_CONVERSATION = frozenset({State.CONNECTING, State.LISTENING, State.RESPONDING})

_TABLE: dict[tuple[State, Event], State] = {
    (State.STARTING, Event.READY): State.IDLE,
    (State.IDLE, Event.WAKE): State.CONNECTING,
    (State.CONNECTING, Event.CONNECTED): State.LISTENING,
    (State.LISTENING, Event.MODEL_AUDIO): State.RESPONDING,
    (State.RESPONDING, Event.INTERRUPTED): State.LISTENING,
    (State.RESPONDING, Event.TURN_DONE): State.LISTENING,
    (State.LISTENING, Event.FOLLOW_UP_TIMEOUT): State.IDLE,
}


def next_state(state: State, event: Event) -> State | None:
    """The state after `event` in `state`, or None when the event changes nothing there."""
    if event is Event.STOP:
        return State.STOPPED if state is not State.STOPPED else None
    if state in IN_CONVERSATION and event in (Event.MAX_DURATION, Event.SESSION_ENDED):
        return State.IDLE
    return _TABLE.get((state, event))
