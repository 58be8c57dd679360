"""The assistant: owns the state, routes the microphone, runs conversations, and wires the parts.

One capture stream feeds everything. Every frame goes into the pre-roll ring; while IDLE it is scored by
the wake-word detector; in a conversation it is queued for the Live session. When the wake word is
heard, the session's queue starts with the ring's audio from `wake.pre_roll_seconds` before the
detection, and every later frame follows in order: what is said while the socket opens is sent once it
is open, so no word after the wake word is lost, however long the connect takes.

State changes happen only in `dispatch()`, through `states.next_state()`; side effects and listeners (the
log, LEDs, sd_notify, the alarm) follow the transition."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

from . import narration
from .audio.aec import EchoCanceller
from .audio.alsa import try_open
from .audio.capture import RETRY_MAX as CAPTURE_RETRY_MAX
from .audio.capture import Capture
from .audio.format import IN_RATE
from .audio.playback import Playback
from .audio.ring import PreRoll
from .audio.speech_end import SpeechEnd
from .button import Button
from .config import Settings
from .live import events as live
from .live.failures import FIX_KEY, SessionError
from .live.record import Context
from .live.session import LiveSession
from .logs import fields
from .states import IN_CONVERSATION, INTERRUPTIONS, Event, Listener, State, Transition, next_state
from .supervise import supervise
from .tools import Tool
from .wake.detector import WakeDetector
from .wake.self_trigger import SelfTriggerGuard

log = logging.getLogger("pivoice.assistant")

WAKE_STATES = frozenset({State.IDLE, State.RESPONDING, State.ERROR, State.RINGING})  # where the wake word counts
PREROLL_RING_SECONDS = 3.0  # more than the pre-roll plus the detector's worst lag
PLAYOUT_POLL_SECONDS = 0.01
# A turnComplete without generationComplete may be premature (python-genai#2117): audio of the same answer
LATE_AUDIO_SECONDS = 0.5  # can still come. The answer is over once the speaker has been idle this long after.
# A detection within this much audio after the last one is that phrase again, not a new one: a detector
# reset mid-phrase (a conversation ended at once) fires on the rest of it ("...Jarvis" alone fires the
# model). Counted in captured samples, not seconds of wall time, so a late capture thread changes nothing.
SAME_PHRASE_SAMPLES = IN_RATE


class Assistant:
    def __init__(self, settings: Settings, capture: Capture, playback: Playback, detector: WakeDetector,
                 client: Any, self_trigger: SelfTriggerGuard | None = None, aec: EchoCanceller | None = None):
        self.settings = settings
        self.capture = capture
        self.playback = playback
        self.detector = detector
        self.client = client
        self.tools: list[Tool] = []  # what the model may call (daemon.build: tools/builtin.py)
        self.session_class: Any = LiveSession  # (live/echo.py's EchoSession for `pivoice run --echo`)
        self.self_trigger = self_trigger
        self.aec = aec
        self.state = State.STARTING
        self.session_id = 0
        self.listeners: list[Listener] = []  # called in order on every transition
        self._preroll = PreRoll(max(PREROLL_RING_SECONDS, settings.wake.pre_roll_seconds + 1.0))
        self._pre_roll = int(settings.wake.pre_roll_seconds * IN_RATE)  # samples
        self._session: LiveSession | None = None
        self._session_task: asyncio.Task | None = None
        self._playout_task: asyncio.Task | None = None
        self._follow_up: asyncio.TimerHandle | None = None
        self._max_duration: asyncio.TimerHandle | None = None
        self._stopped = asyncio.Event()
        self._closing: set[asyncio.Task] = set()  # sessions closing their sockets
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sent_to = 0  # sample index up to which the session has the microphone's audio
        self._released = False  # a wake word since the last answer: the frames read during it may go
        self._last_wake = -SAME_PHRASE_SAMPLES  # sample index of the end of the last wake word acted on
        self.button = Button(self)  # what a press means, in the state it comes in
        self._speech = SpeechEnd(settings.vad.silence_duration_ms or 800) if not settings.vad.automatic else None
        self._by_wake = False  # this conversation began with the wake word (not push-to-talk)
        self._discard_turn = False  # after a local interruption: drop the rest of that turn's audio
        # The last conversation's context, for a wake word soon after: its newest resumption handle and its
        # transcript (to start over with when the handle is refused). Memory only, dropped after the window.
        self._context = Context(settings.conversation.resume_context_seconds)
        self._failures = 0  # failed conversations in a row (for the backoff)
        self._retry: asyncio.TimerHandle | None = None
        self.problem = ""  # what the ERROR state is about, in words

    # -- the one place that changes state ---------------------------------------------------------
    def dispatch(self, event: Event, **info: Any) -> None:
        """Feed an event in. When it changes the state: the steps for the state left, then for the state
        entered, then the event's own, then the listeners (log, sd_notify, LED), each given the same
        Transition, which carries all that they read."""
        new = next_state(self.state, event)
        if new is None:
            return
        t = Transition(self.state, new, event, self.session_id, info)
        self.state = new
        self.capture.scoring = new in WAKE_STATES
        self.capture.cancelling = new in (State.RESPONDING, State.RINGING)  # (the wake word stops an alarm)
        self.capture.answering = new is State.RESPONDING
        self.capture.idle = new not in IN_CONVERSATION
        self._leave(t)
        t = self._enter(t)
        self._after_event(t)
        for listener in self.listeners:
            try:
                listener(t)
            except Exception:  # a listener must never take the assistant down
                log.exception("state listener failed")

    def _leave(self, t: Transition) -> None:
        """Steps for the state left (none runs for an event that keeps the state, such as a refused wake word)."""
        left = t.old is not t.new
        if t.old is State.RESPONDING:
            self._leave_responding(t.event)
        if t.old is State.LISTENING and self._follow_up is not None:
            self._follow_up.cancel()
        if t.old in IN_CONVERSATION and t.new not in IN_CONVERSATION:
            self._end_conversation()
        if left and t.old is State.ERROR and self._retry is not None:
            self._retry.cancel()
        if left and t.old is State.MUTED:
            self.detector.reset()

    def _enter(self, t: Transition) -> Transition:
        """Steps for the state entered; returns the transition with what they decided for the listeners
        (the new conversation's number, what the ERROR is about and what happens next)."""
        entered = t.old is not t.new
        if entered and t.new is State.CONNECTING:
            self._start_conversation(t)
            t = replace(t, session=self.session_id)
        elif t.new is State.RESPONDING:
            self.detector.reset()  # barge-in listens afresh
            if self.self_trigger is not None:
                self.self_trigger.reset()  # a new answer: a new reference stream
        elif t.new is State.LISTENING:
            self._restart_follow_up()
        elif t.new is State.ERROR:
            if entered or t.event is Event.MIC_LOST:
                if self._retry is not None:
                    self._retry.cancel()
                self.problem, then = self._failed(t)
                return replace(t, problem=self.problem, then=then)
            return replace(t, problem=self.problem)
        elif entered and t.new is State.MUTED:
            self._preroll.clear()  # nothing heard before the mute may leave after it
        elif t.new is State.STOPPED:
            self._stopped.set()
        return t

    def _after_event(self, t: Transition) -> None:
        """Steps that belong to the event itself, whatever the states."""
        self._released = self._released or t.event in (Event.WAKE, Event.BARGE_IN)  # (sent from the pre-roll on)
        if t.event is Event.CONNECTED:
            self._failures = 0
        elif t.event is Event.BARGE_IN and self._session is not None:  # (barge_in "voice": all sent already)
            self._send_ring(self._session, max(self._sent_to, t.info["detection"].end - self._pre_roll))
        elif t.event is Event.WAKE and t.old is State.ERROR:
            self.detector.reset()  # refused: once per wake word, not once per frame that scores high
        elif t.event is Event.TURN_DONE and self._speech is not None and self._by_wake and self._session:
            self._session.activity_start()  # no server VAD: the follow-up is a new activity
            self._speech.start()
        elif t.event is Event.TALK and t.old is not State.IDLE and self._session is not None:
            self._session.activity_start()
            self.button.talking = True

    def _leave_responding(self, event: Event) -> None:
        self._cancel(self._playout_task)
        self._released = False
        if self.aec is not None and (report := self.aec.report()):
            log.debug(report)
        if event in INTERRUPTIONS:
            self._stop_playback()
            # The server goes on with a turn it was not told was interrupted: drop the rest of it.
            self._discard_turn = event is not Event.INTERRUPTED

    # -- conversations ----------------------------------------------------------------------------
    def _start_conversation(self, t: Transition) -> None:
        """From the wake word: sent from the pre-roll before the detection; from the button: from the press."""
        det = t.info.get("detection")
        start = det.end - self._pre_roll if det is not None else t.info["from_index"]
        self._open_session(start, talk=t.event is Event.TALK, wake=det is not None)
        self._max_duration = asyncio.get_running_loop().call_later(
            self.settings.conversation.max_seconds, self.dispatch, Event.MAX_DURATION)

    def _failed(self, t: Transition) -> tuple[str, str]:
        """ERROR: what it is about and what happens next. A rejected key waits for the key to be fixed;
        anything else for a backoff, then a retry."""
        if t.event is Event.MIC_LOST:
            return "the microphone is unavailable", "waiting for it to come back"
        failure: SessionError = t.info["failure"]
        problem = failure.problem(self.settings.live.model)
        if failure.kind == "auth":
            return problem, FIX_KEY
        self._failures += 1
        wait = failure.retry_wait(self._failures, self.settings.live.retry_max_seconds)
        self._retry = asyncio.get_running_loop().call_later(wait, self.dispatch, Event.RETRY)
        return problem, f"trying again in {wait:.0f} s"

    def _open_session(self, start: int, talk: bool = False, wake: bool = False) -> None:
        self.session_id += 1
        self._discard_turn = False
        handle, transcript = self._context.take()
        session = self.session_class(self.client, self.settings.live, self.settings.vad, self._on_live_event,
                                     handle=handle, transcript=transcript, number=self.session_id, tools=self.tools,
                                     google_search=self.settings.tools.google_search)
        if not self.settings.vad.automatic and (talk or wake):
            # No server VAD: pivoice says when speech starts (and ends: button released, or silence).
            session.activity_start()
            self.button.talking = talk
            if wake and self._speech is not None:
                self._speech.start()
        self._by_wake = wake
        self._sent_to = start
        self._send_ring(session, start)
        self._session = session
        self._session_task = asyncio.create_task(self._run_session(session, self.session_id), name="session")

    def _send_ring(self, session: LiveSession, start: int) -> None:
        """The ring's audio from sample `start` on, to the session."""
        for frame in self._preroll.since(start):
            session.send_audio(frame.pcm)
            self._sent_to = frame.end

    async def _run_session(self, session: LiveSession, session_id: int) -> None:
        try:
            await session.run()
            failure = None
        except SessionError as e:
            failure = e
        if self._session is session and self.state in IN_CONVERSATION:
            if failure is None:
                self.dispatch(Event.SESSION_ENDED, reason="the session ended")
            else:
                self.dispatch(Event.SESSION_FAILED, reason=str(failure), kind=failure.kind, failure=failure)

    def _end_conversation(self) -> None:
        for handle in (self._follow_up, self._max_duration):
            if handle is not None:
                handle.cancel()
        self._cancel(self._playout_task)
        if self._session_task is not None:
            self._session_task.cancel()  # it closes its socket on the way out: let it finish that
            self._closing.add(self._session_task)
            self._session_task.add_done_callback(self._closing.discard)
        self._session = None
        self._session_task = None
        self._stop_playback()
        self.detector.reset()

    def _stop_playback(self) -> None:
        self.playback.stop()
        if self.self_trigger is not None:
            self.self_trigger.reset()

    def _restart_follow_up(self) -> None:
        if self._follow_up is not None:
            self._follow_up.cancel()
        self._follow_up = asyncio.get_running_loop().call_later(self.settings.conversation.follow_up_seconds,
                                                                self._follow_up_over)

    def _follow_up_over(self) -> None:
        """Nobody spoke: the conversation is over, unless a tool it called is still at work."""
        busy = self._session is not None and self._session.tools_busy
        self._restart_follow_up() if busy else self.dispatch(Event.FOLLOW_UP_TIMEOUT)

    def _on_live_event(self, ev: live.LiveEvent) -> None:
        if self.state not in IN_CONVERSATION:
            return
        if isinstance(ev, live.Connected):
            if ev.resumed:
                narration.resumed(self.session_id, ev.setup_ms)
            else:
                self.dispatch(Event.CONNECTED, setup_ms=round(ev.setup_ms))
        elif isinstance(ev, live.Handle) and self._session is not None:
            self._context.keep(ev.value, self._session.transcript)
        elif isinstance(ev, live.ModelAudio):
            if self._discard_turn:
                return
            if self.state is State.LISTENING:
                self.dispatch(Event.MODEL_AUDIO)
            if self.state is State.RESPONDING:
                self._cancel(self._playout_task)  # more audio: the turn goes on
                offset = self.playback.play(ev.pcm)
                if self.self_trigger is not None:
                    self.self_trigger.reference(offset, ev.pcm)
        elif isinstance(ev, live.Interrupted):
            self._discard_turn = False
            self.dispatch(Event.INTERRUPTED)
        elif isinstance(ev, live.TurnComplete):
            self._discard_turn = False
            if self.state is State.RESPONDING:
                grace = 0.0 if ev.generated else LATE_AUDIO_SECONDS
                self._playout_task = asyncio.create_task(self._wait_played_out(grace), name="playout")
        elif isinstance(ev, live.Heard | live.Speaking) and self.state is State.LISTENING:
            self._restart_follow_up()  # someone is speaking: keep the window open

    async def _wait_played_out(self, grace: float) -> None:
        """TURN_DONE once the speaker is done (more audio of the turn cancels this task)."""
        while not self.playback.idle:
            await asyncio.sleep(PLAYOUT_POLL_SECONDS)
        await asyncio.sleep(grace)
        self.dispatch(Event.TURN_DONE)

    @staticmethod
    def _cancel(task: asyncio.Task | None) -> None:
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    # -- the microphone ---------------------------------------------------------------------------
    async def _route_audio(self) -> None:
        async for item, hit in self.capture.frames():
            if self.state is State.MUTED:
                continue  # the microphone is off: the audio goes nowhere, not even into the ring
            self._preroll.append(item)
            # audio.barge_in = "wake_word": nothing of the microphone while an answer plays, also when its frames
            # come after it ended (they stay in the ring: a wake word over it sends from its pre-roll on).
            held = self.settings.audio.barge_in == "wake_word" and (
                self.state is State.RESPONDING or (item.answering and not self._released))
            if self.state in IN_CONVERSATION and self._session is not None and item.end > self._sent_to and not held:
                # (A frame that reaches the loop after the conversation began from the ring: its part
                # after what the ring gave.)
                self._session.send_audio(item.pcm[max(0, self._sent_to - item.index) * 2 :])
                self._sent_to = item.end
                if self._speech is not None and self._speech.ended(item.pcm):
                    self._session.activity_end()
            if self.state in WAKE_STATES:
                if hit is None:
                    continue
                if self.state in (State.IDLE, State.ERROR, State.RINGING):
                    if hit.end - self._last_wake < SAME_PHRASE_SAMPLES:
                        continue
                    self._last_wake = hit.end
                    self.dispatch(Event.WAKE, detection=hit)
                elif self.state is State.RESPONDING:
                    if self.self_trigger is not None and await self.self_trigger.is_echo(item.at):
                        self.detector.reset()
                        continue
                    self.dispatch(Event.BARGE_IN, detection=hit)

    def _crashed(self, name: str) -> None:
        """A part failed (a bug) and is being restarted: the conversation it served cannot go on."""
        if self.state in IN_CONVERSATION:
            self.dispatch(Event.SESSION_FAILED, reason=f"{name} failed", kind="closed",
                          failure=SessionError(f"{name} failed"))

    # -- running ----------------------------------------------------------------------------------
    @property
    def session(self) -> LiveSession | None:
        """The conversation's Live session (None outside one)."""
        return self._session

    @property
    def wake_words(self) -> str:
        return " or ".join(f"'{n.replace('_', ' ')}'" for n in self.detector.names)

    async def run(self) -> None:
        """Open the devices, listen until SIGINT/SIGTERM. Device and config errors raise UserError."""
        loop = self._loop = asyncio.get_running_loop()
        try:
            # A device that is named right but absent or busy (a USB microphone not plugged in, a HAT whose
            # driver starts late, a sound server holding the card) is waited for, not given up on: its
            # thread keeps trying to open it. Only a name that can never work stops pivoice (78).
            mic_trouble = try_open(self.capture)
            speaker_trouble = try_open(self.playback)
            await self.detector.load()
            self.playback.start()
            self.capture.start(loop, on_lost=lambda message: self.dispatch(Event.MIC_LOST, reason=message),
                               on_back=lambda: self.dispatch(Event.MIC_BACK), lost=mic_trouble is not None)
            self.dispatch(Event.READY, words=self.wake_words)
            if speaker_trouble is not None:
                log.error("%s Answers are not heard until it is there; pivoice keeps trying to open it.",
                          speaker_trouble, extra=fields(event="speaker_failed", state=self.state.value))
            if mic_trouble is not None:
                self.dispatch(Event.MIC_LOST, reason=f"{mic_trouble} pivoice keeps trying to open it (every "
                                                     f"{CAPTURE_RETRY_MAX:g} s at most) and listens once it is there.")
            router = asyncio.create_task(supervise(self._route_audio, "the audio router", self._crashed),
                                         name="audio-router")
            stopped = asyncio.create_task(self._stopped.wait())
            await asyncio.wait({router, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if router.done():
                router.result()  # re-raises when it kept failing
            router.cancel()
        finally:
            if self.state is not State.STOPPED:
                self.dispatch(Event.STOP)
            if self._closing:
                await asyncio.wait(self._closing, timeout=1.8)
            self.capture.close()
            self.playback.close()
            self.detector.close()
            if self.self_trigger is not None:
                self.self_trigger.close()

    # -- entry points for other threads (GPIO callbacks) and signal handlers ------------------------
    def _from_thread(self, fn, *args) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        self._from_thread(self.dispatch, Event.STOP)

    def button_down(self) -> None:
        self._from_thread(self.button.down)

    def button_up(self, held: bool) -> None:
        self._from_thread(self.button.up, held)

    def mute_toggle(self) -> None:
        self._from_thread(self.dispatch, Event.MUTE_TOGGLE)

    def reloaded(self) -> None:
        self._from_thread(self.dispatch, Event.RELOADED)
