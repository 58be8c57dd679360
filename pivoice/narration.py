"""The log line for each state change: a transition listener, registered by daemon.build().

One line per transition, with its level and structured fields (event, state, session, latency); the
words say what happened and, for an error, what happens next. The logger is "pivoice.assistant": the
lines are the assistant's story, and README shows them under that name.
"""

from __future__ import annotations

import logging

from .logs import fields
from .states import Event, State, Transition

log = logging.getLogger("pivoice.assistant")

_MESSAGES: dict[Event, str] = {
    Event.READY: "ready: listening for {words}",
    Event.WAKE: "heard {name!r} (score {score:.2f}): connecting to the Live API",
    Event.CONNECTED: "session open in {setup_ms} ms: listening",
    Event.MODEL_AUDIO: "answering",
    Event.INTERRUPTED: "answer interrupted: listening",
    Event.BARGE_IN: "heard {name!r} over the answer (score {score:.2f}): answer stopped, listening",
    Event.BUTTON_DOWN: "button pressed: {what}",
    Event.TAP: "button tapped: connecting to the Live API",
    Event.TALK: "push-to-talk: speaking",
    Event.MUTE_TOGGLE: "{what}",
    Event.TURN_DONE: "answer played: listening for a follow-up",
    Event.FOLLOW_UP_TIMEOUT: "no follow-up: conversation over, waiting for the wake word",
    Event.MAX_DURATION: "conversation reached conversation.max_seconds: ended",
    Event.SESSION_ENDED: "conversation ended: {reason}",
    Event.SESSION_FAILED: "conversation failed: {reason}; {then}",
    Event.RETRY: "ready to try the Gemini API again",
    Event.RELOADED: "credentials reloaded: ready",
    Event.MIC_LOST: "{reason}",
    Event.MIC_BACK: "the microphone is back: listening for the wake word",
    Event.STOP: "stopping",
    Event.TIMER_FIRED: "{kind} '{name}' rings{late}",
    Event.RING_TIMEOUT: "stopped ringing after {seconds:g} s (timers.ring_seconds): nobody stopped it",
}


def log_transition(t: Transition) -> None:
    info = dict(t.info)
    det = info.pop("detection", None)
    if det is not None:
        info.update(name=det.name, score=det.score)
    if t.old is State.RINGING and t.new is not State.RINGING and t.event in (Event.BUTTON_DOWN, Event.WAKE):
        log.info("alarm stopped by the %s", "button" if t.event is Event.BUTTON_DOWN else "wake word",
                 extra=fields(event="ring_stopped", state=t.new.value))
        return
    if t.event is Event.TIMER_FIRED:
        info["late"] = f" (it came due at {info['due']} while pivoice was not running)" if info.get("late") else ""
    if t.event is Event.BUTTON_DOWN:
        info["what"] = {State.LISTENING: "answer stopped, listening", State.IDLE: "conversation ended"}[t.new]
    if t.event is Event.MUTE_TOGGLE:
        info["what"] = ("muted: the microphone is off" if t.new is State.MUTED
                        else "unmuted: listening for the wake word")
    level = logging.INFO
    if t.event is Event.SESSION_FAILED:
        level = logging.ERROR if info.get("kind") in ("auth", "model", "device") else logging.WARNING
    if t.event is Event.MIC_LOST:
        level = logging.ERROR
    if t.old is State.ERROR and t.new is State.ERROR and t.event is not Event.MIC_LOST:
        # a wake word or tap that cannot be served
        log.warning("heard you, but cannot answer: %s", t.problem or "the Gemini API is unavailable",
                    extra=fields(event="refused", state=t.new.value))
        return
    log.log(level, _MESSAGES[t.event].format(then=t.then, **info),
            extra={**fields(event=t.event.value, state=t.new.value, session=t.session or None,
                            latency_ms=info.get("setup_ms")),
                   "template": _MESSAGES[t.event]})  # repeats of it are rate-limited (logs.Flood)


def resumed(session: int, setup_ms: float) -> None:
    """The conversation goes on over a new connection (a GoAway, or a drop)."""
    log.info("conversation resumed on a new connection in %d ms", setup_ms,
             extra=fields(event="resumed", session=session, latency_ms=round(setup_ms)))


def transcript(session: int, heard: str | None = None, said: str | None = None) -> None:
    """What the Live API heard the person say, or what the model said (live.transcripts)."""
    if heard is not None:
        log.info("heard: %s", heard, extra=fields(event="transcript", session=session, heard=heard))
    if said is not None:
        log.info("said: %s", said, extra=fields(event="transcript", session=session, said=said))
