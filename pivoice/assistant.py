"""The assistant: owns the state, routes the microphone, runs conversations, and wires the parts.

One capture stream feeds everything. Every frame goes into the pre-roll ring; while IDLE it is scored by
the wake-word detector; in a conversation it is queued for the Live session. When the wake word is
heard, the session's queue starts with the ring's audio from `wake.pre_roll_seconds` before the
detection, and every later frame follows in order: what is said while the socket opens is sent once it
is open, so no word after the wake word is lost, however long the connect takes.

State changes happen only in `dispatch()`, through `states.next_state()`; side effects and listeners
(the log today; LEDs, sd_notify and sounds plug in the same way) follow the transition.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .audio.capture import RATE as CAPTURE_RATE
from .audio.capture import Capture, CaptureError
from .audio.playback import Playback
from .audio.ring import PreRoll
from .config import Settings
from .live.session import Connected, Heard, Interrupted, LiveEvent, LiveSession, ModelAudio, SessionError, TurnComplete
from .logs import fields
from .states import IN_CONVERSATION, Event, State, next_state
from .wake.detector import Detection, WakeDetector

log = logging.getLogger("pivoice.assistant")

PREROLL_RING_SECONDS = 3.0  # more than the pre-roll plus the detector's worst lag
PLAYOUT_POLL_SECONDS = 0.01


@dataclass
class Transition:
    old: State
    new: State
    event: Event
    session: int
    info: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[Transition], None]


class Assistant:
    def __init__(self, settings: Settings, capture: Capture, playback: Playback, detector: WakeDetector,
                 client: Any):
        self.settings = settings
        self.capture = capture
        self.playback = playback
        self.detector = detector
        self.client = client
        self.state = State.STARTING
        self.session_id = 0
        self.listeners: list[Listener] = [log_transition]
        self._preroll = PreRoll(max(PREROLL_RING_SECONDS, settings.wake.pre_roll_seconds + 1.0))
        self._session: LiveSession | None = None
        self._session_task: asyncio.Task | None = None
        self._playout_task: asyncio.Task | None = None
        self._follow_up: asyncio.TimerHandle | None = None
        self._max_duration: asyncio.TimerHandle | None = None
        self._stopped = asyncio.Event()

    # -- the one place that changes state ---------------------------------------------------------
    def dispatch(self, event: Event, **info: Any) -> None:
        new = next_state(self.state, event)
        if new is None:
            return
        t = Transition(self.state, new, event, self.session_id, info)
        self.state = new
        self._effects(t)
        for listener in self.listeners:
            try:
                listener(t)
            except Exception:  # noqa: BLE001 - a listener must never take the assistant down
                log.exception("state listener failed")

    def _effects(self, t: Transition) -> None:
        loop = asyncio.get_running_loop()
        conv = self.settings.conversation
        if t.event is Event.WAKE:
            self._open_session(t.info["detection"])
            t.session = self.session_id
            self._max_duration = loop.call_later(conv.max_seconds, self.dispatch, Event.MAX_DURATION)
        if t.old is State.RESPONDING:
            self._cancel(self._playout_task)
            if t.event is Event.INTERRUPTED:
                self.playback.stop()
        if t.new is State.LISTENING:
            self._restart_follow_up()
        elif self._follow_up is not None:
            self._follow_up.cancel()
        if t.new in (State.IDLE, State.STOPPED) and t.old in IN_CONVERSATION:
            self._end_conversation()
        if t.new is State.STOPPED:
            self._stopped.set()

    # -- conversations ----------------------------------------------------------------------------
    def _open_session(self, detection: Detection) -> None:
        self.session_id += 1
        session = LiveSession(self.client, self.settings.live, self._on_live_event)
        start = detection.end - int(self.settings.wake.pre_roll_seconds * CAPTURE_RATE)
        for frame in self._preroll.since(start):
            session.outgoing.put_nowait(frame.pcm)
        self._session = session
        self._session_task = asyncio.create_task(self._run_session(session, self.session_id), name="session")

    async def _run_session(self, session: LiveSession, session_id: int) -> None:
        try:
            await session.run()
            reason = "the session ended"
        except SessionError as e:
            reason = str(e)
        if self._session is session and self.state in IN_CONVERSATION:
            self.dispatch(Event.SESSION_ENDED, reason=reason)

    def _end_conversation(self) -> None:
        for handle in (self._follow_up, self._max_duration):
            if handle is not None:
                handle.cancel()
        self._cancel(self._playout_task)
        self._cancel(self._session_task)
        self._session = None
        self._session_task = None
        self.playback.stop()
        self.detector.reset()

    def _restart_follow_up(self) -> None:
        if self._follow_up is not None:
            self._follow_up.cancel()
        self._follow_up = asyncio.get_running_loop().call_later(
            self.settings.conversation.follow_up_seconds, self.dispatch, Event.FOLLOW_UP_TIMEOUT
        )

    def _on_live_event(self, ev: LiveEvent) -> None:
        if self.state not in IN_CONVERSATION:
            return
        if isinstance(ev, Connected):
            self.dispatch(Event.CONNECTED, setup_ms=round(ev.setup_ms))
        elif isinstance(ev, ModelAudio):
            if self.state is State.LISTENING:
                self.dispatch(Event.MODEL_AUDIO)
            if self.state is State.RESPONDING:
                self._cancel(self._playout_task)  # more audio: the turn goes on
                self.playback.play(ev.pcm)
        elif isinstance(ev, Interrupted):
            self.dispatch(Event.INTERRUPTED)
        elif isinstance(ev, TurnComplete):
            if self.state is State.RESPONDING:
                self._playout_task = asyncio.create_task(self._wait_played_out(), name="playout")
        elif isinstance(ev, Heard):
            log.debug("heard: %s", ev.text, extra=fields(event="transcript", session=self.session_id))
            if self.state is State.LISTENING:
                self._restart_follow_up()  # someone is speaking: keep the window open

    async def _wait_played_out(self) -> None:
        while not self.playback.idle:
            await asyncio.sleep(PLAYOUT_POLL_SECONDS)
        self.dispatch(Event.TURN_DONE)

    @staticmethod
    def _cancel(task: asyncio.Task | None) -> None:
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    # -- the microphone ---------------------------------------------------------------------------
    async def _route_audio(self) -> None:
        while True:
            item = await self.capture.queue.get()
            if isinstance(item, CaptureError):
                raise item
            self._preroll.append(item)
            if self.state is State.IDLE:
                hit = await self.detector.process(item)
                if hit is not None and self.state is State.IDLE:
                    self.dispatch(Event.WAKE, detection=hit)
            elif self.state in IN_CONVERSATION and self._session is not None:
                self._session.outgoing.put_nowait(item.pcm)

    # -- running ----------------------------------------------------------------------------------
    @property
    def wake_words(self) -> str:
        return " or ".join(f"'{n.replace('_', ' ')}'" for n in self.detector.names)

    async def run(self) -> None:
        """Open the devices, listen until SIGINT/SIGTERM. Device and config errors raise UserError."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.dispatch, Event.STOP)
        try:
            self.capture.open()
            self.playback.open()
            await self.detector.load()
            self.playback.start()
            self.capture.start(loop)
            self.dispatch(Event.READY, words=self.wake_words)
            router = asyncio.create_task(self._route_audio(), name="audio-router")
            stopped = asyncio.create_task(self._stopped.wait())
            await asyncio.wait({router, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if router.done():
                router.result()  # re-raises a capture failure
            router.cancel()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if self.state is not State.STOPPED:
                self.dispatch(Event.STOP)
            if self._session_task is not None:
                await asyncio.gather(self._session_task, return_exceptions=True)
            self.capture.close()
            self.playback.close()
            self.detector.close()


_MESSAGES: dict[Event, str] = {
    Event.READY: "ready: listening for {words}",
    Event.WAKE: "heard {name!r} (score {score:.2f}): connecting to the Live API",
    Event.CONNECTED: "session open in {setup_ms} ms: listening",
    Event.MODEL_AUDIO: "answering",
    Event.INTERRUPTED: "answer interrupted: listening",
    Event.TURN_DONE: "answer played: listening for a follow-up",
    Event.FOLLOW_UP_TIMEOUT: "no follow-up: conversation over, waiting for the wake word",
    Event.MAX_DURATION: "conversation reached conversation.max_seconds: ended",
    Event.SESSION_ENDED: "conversation ended: {reason}",
    Event.STOP: "stopping",
}


def log_transition(t: Transition) -> None:
    info = dict(t.info)
    det = info.pop("detection", None)
    if det is not None:
        info.update(name=det.name, score=det.score)
    level = logging.INFO
    if t.event is Event.SESSION_ENDED and info.get("reason") != "the session ended":
        level = logging.WARNING
    log.log(level, _MESSAGES[t.event].format(**info),
            extra=fields(event=t.event.value, state=t.new.value, session=t.session or None,
                         latency_ms=info.get("setup_ms")))
