"""One Gemini Live API conversation over google-genai's `client.aio.live.connect`.

The session sends what the assistant queues with `send_audio()` (16 kHz mono s16le) and the activity
markers, in order, from the first frame queued (the pre-roll and whatever was said while connecting) to
the last, and reports what the server says through `on_event`. It knows nothing of states, devices or timers.

One conversation may span several WebSocket connections: the session asks for resumption handles and,
when the server announces a GoAway (at the next turn boundary, or before its time runs out) or the
connection drops mid-conversation, closes the old socket and opens a new one with the newest handle.
Audio queued meanwhile waits in the send queue; after a drop the last RESEND_SECONDS already sent are sent
again, since what was in flight may not have arrived. The answer already received keeps playing.

When the service will not resume (a handle refused or expired, a drop before any handle came), the session
starts over on a new connection seeded with the conversation so far (record.Transcript, from the input
and output transcriptions), so the person can go on as if nothing happened.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from .. import narration
from ..audio.convert import AnswerAudio
from ..audio.format import IN_MIME
from ..config import LiveSettings
from ..logs import fields
from ..tools import Tool, ToolRunner, declarations
from .events import Connected, Handle, Heard, Interrupted, LiveEvent, ModelAudio, Said, Speaking, TurnComplete
from .failures import SessionError, classify, unreadable
from .outgoing import Activity, Outgoing, SendQueue, ToolResponses
from .record import Transcript, Usage
from .setup import connect_config, history_in_client_content

log = logging.getLogger("pivoice.live")

RESEND_SECONDS = 0.5  # audio sent again after a connection dropped (what may have been in flight)
GOAWAY_MARGIN = 1.0  # switch this long before a GoAway's time runs out, turn boundary or not
HANDLE_WAIT = 0.5  # after a GoAway, at a turn boundary: how long to wait for the turn's handle
MAX_RESUMES = 3  # reconnections in a row without a server message in between, before giving up
MAX_STARTS_OVER = 3  # new sessions for one conversation (resuming refused or impossible), before giving up


class _SwitchConnection(Exception):
    """GoAway: the current connection is closing; continue on a new one."""


class LiveSession:
    def __init__(self, clients, settings: LiveSettings, vad, on_event: Callable[[LiveEvent], None],
                 handle: str | None = None, transcript: Transcript | None = None, number: int = 0,
                 tools: list[Tool] | None = None, google_search: bool = False):
        """`clients`: where each connection's client comes from (setup.PreparedClient with an API key,
        tokens.TokenClients with live.token_url): `await clients.client(token)`.
        `handle` and `transcript`: the context of an earlier conversation to continue (resumed with the
        handle; seeded with the transcript when the handle is refused). `number`: for the log. `tools`: what the
        model may call (declared in the setup, run by a ToolRunner); `google_search`: grounding on."""
        self._declared = (tools or [], google_search)
        self._tools = ToolRunner(tools or [], self.send_tool_response, number)
        self._clients = clients
        self._token = None  # with live.token_url: the token of the current connection
        self._settings = settings
        self._vad = vad
        self._on_event = on_event
        self._outgoing = SendQueue()
        self.handle = handle  # the newest resumable handle
        self._recent: deque[tuple[float, bytes]] = deque()  # (when sent, pcm), for a resend
        self._activity_open = False  # activity_start sent on this connection, activity_end not yet
        self._sending = False  # a send is under way (cancelling it could leave half a frame)
        self._heard_from = False  # the current connection has had a message from the server
        self._in_turn = False
        self._generated = False  # the current turn's generationComplete came
        self._go_away_at: float | None = None  # monotonic deadline of a GoAway
        self._switch_at: float | None = None  # after a GoAway: when to switch, at a turn boundary
        self._audio = AnswerAudio()  # the model's audio, checked: whole samples at 24 kHz
        self.transcript = transcript if transcript is not None else Transcript()  # the turns, as text
        self._seed: Transcript | None = None  # the next connection starts a new session with these turns
        self.usage = Usage()
        self._number = number
        self._starts_over = 0

    # -- what the assistant sends: queued at once, sent in order on the current connection -------------
    def send_audio(self, pcm: bytes) -> None:
        """Microphone audio, 16 kHz mono s16le. Nothing queued is lost: what is queued while connecting
        (or reconnecting) is sent once the connection is open."""
        self._outgoing.put(pcm)

    def activity_start(self) -> None:
        """The person starts speaking (only when the server's activity detection is off)."""
        self._outgoing.put(Activity.START)

    def activity_end(self) -> None:
        """The person stopped speaking (only when the server's activity detection is off)."""
        self._outgoing.put(Activity.END)

    @property
    def tools_busy(self) -> bool:
        """A tool call is still being worked on (its result not yet sent)."""
        return self._tools.busy > 0

    def send_tool_response(self, responses: list[dict]) -> None:
        """Results of tool calls (id, name, response, scheduling), in order with the audio."""
        self._outgoing.put(ToolResponses(tuple(responses)))

    async def _connect(self):
        started = time.monotonic()
        for attempt in (1, 2):
            # With live.token_url: the conversation's token while it covers a resumption, else a new one.
            client, self._token = await self._clients.client(self._token)
            config = connect_config(self._settings, self._vad, self.handle, self._seed, declarations(*self._declared))
            cm = client.aio.live.connect(model=self._settings.model, config=config)
            try:
                async with asyncio.timeout(self._settings.connect_timeout_seconds):
                    session = await cm.__aenter__()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - every failure becomes one clear reason
                failure = classify(e, self._settings, token=self._token is not None)
                if failure.kind != "token" or attempt == 2:
                    raise failure from None
                log.warning("%s: trying once more with a new token", failure, extra=fields(event="token"))
                self._clients.discard(self._token)
                self._token = None
                continue
            return cm, session, (time.monotonic() - started) * 1000
        raise AssertionError("unreachable")

    async def run(self) -> None:
        """Connect and stream until cancelled; resumes across GoAways and drops, and starts over with the
        conversation so far when resuming is refused. Raises SessionError. Logs the usage at the end."""
        try:
            await self._run()
        finally:
            self._tools.close()
            u = self.usage
            if u.bytes_in or u.tokens_in:
                log.info("conversation used %d tokens in, %d out; %.1f s of audio sent, %.1f s received",
                         u.tokens_in, u.tokens_out, u.seconds_in, u.seconds_out,
                         extra=fields(event="usage", session=self._number or None, tokens_in=u.tokens_in,
                                      tokens_out=u.tokens_out, audio_in_seconds=round(u.seconds_in, 1),
                                      audio_out_seconds=round(u.seconds_out, 1)))

    async def _run(self) -> None:
        resumed = False
        attempts = 0
        while True:
            try:
                cm, session, setup_ms = await self._connect()
            except SessionError as e:
                if self.handle is None or e.kind in ("auth", "quota", "network", "keyservice", "device", "token"):
                    raise
                # The service would not resume (an expired or refused handle, a 1011 again): a new session,
                # told what was said so far. Nothing queued meanwhile is lost: it goes on the new one.
                self._start_over(f"the Live API would not resume the conversation ({e})", e)
                continue
            self._heard_from = False
            self._on_event(Connected(setup_ms, resumed))
            try:
                await self._stream(session)
            except _SwitchConnection:
                log.info("the Live API asked to reconnect (GoAway): resuming on a new connection",
                         extra=fields(event="go_away"))
                attempts = 0
            except SessionError as e:
                attempts = 1 if self._heard_from else attempts + 1  # in a row, without a message between
                if not e.resumable or attempts > MAX_RESUMES:
                    raise
                if self.handle is None:
                    self._start_over(f"connection lost ({e}) before the Live API gave a resumption handle", e)
                else:
                    log.warning("connection lost (%s): resuming the conversation", e,
                                extra=fields(event="resume"))
                self._resend_recent()
            finally:
                # Closed before resuming: the API refuses a resumption while the old socket is open.
                try:
                    async with asyncio.timeout(1.5):
                        await cm.__aexit__(None, None, None)
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
            resumed = True
            self._go_away_at = self._switch_at = None
            if self._activity_open:
                # The person is still speaking (push-to-talk held): the new connection hears that first.
                self._outgoing.put_front([Activity.START])
                self._activity_open = False
            if self._in_turn:
                # The answer was cut by the switch (a GoAway that ran out, or a drop): the new
                # connection does not continue it. What was received plays to its end.
                self._turn_complete()

    def _start_over(self, why: str, error: SessionError) -> None:
        self._starts_over += 1
        if self._starts_over > MAX_STARTS_OVER:
            raise error
        # A new session never issued the calls under way: their results would be for nothing it knows.
        self._tools.close()
        self._outgoing.drop(ToolResponses)
        self.handle = None
        self._seed = self.transcript if self.transcript else None
        log.warning("%s: a new session%s", why, " with the conversation so far" if self._seed else "",
                    extra=fields(event="restart", session=self._number or None))

    def _resend_recent(self) -> None:
        cutoff = time.monotonic() - RESEND_SECONDS
        again: list[Outgoing] = [pcm for t, pcm in self._recent if t >= cutoff]
        self._outgoing.put_front(again)
        self._recent.clear()

    async def _stream(self, session) -> None:
        if self._seed is not None:
            if history_in_client_content(self._settings):
                # Before any audio: the server takes client content as the initial history until a
                # turn_complete, without answering it (the setup's history_config said so).
                await session.send_client_content(turns=self._seed.contents(), turn_complete=True)
            self._seed = None  # (else it went in the system instruction)
        sender = asyncio.create_task(self._send(session), name="live-send")
        receiver = asyncio.create_task(self._receive(session), name="live-receive")
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if isinstance(exc, _SwitchConnection):
                    raise exc
                if exc is not None:
                    raise classify(exc, self._settings) from None
            raise SessionError("the Live API ended the session", "closed")
        finally:
            # Let a send under way finish (briefly) so a GoAway switch neither cuts nor repeats a frame.
            for _ in range(200):
                if not self._sending or sender.done():
                    break
                await asyncio.sleep(0.005)
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)

    async def _send(self, session) -> None:
        from google.genai import types

        while True:
            item = await self._outgoing.get()
            self._sending = True
            try:
                if item is Activity.START:
                    await session.send_realtime_input(activity_start=types.ActivityStart())
                    self._activity_open = True
                    continue
                if item is Activity.END:
                    await session.send_realtime_input(activity_end=types.ActivityEnd())
                    self._activity_open = False
                    continue
                if isinstance(item, ToolResponses):
                    await session.send_tool_response(
                        function_responses=[types.FunctionResponse(**r) for r in item.responses])
                    continue
                pcm = item
                await session.send_realtime_input(audio=types.Blob(data=pcm, mime_type=IN_MIME))
            except BaseException:
                self._outgoing.put_front([item])  # not sent: it goes on the next connection
                raise
            finally:
                self._sending = False
            now = time.monotonic()
            self.usage.bytes_in += len(pcm)
            self._recent.append((now, pcm))
            while self._recent and self._recent[0][0] < now - RESEND_SECONDS:
                self._recent.popleft()

    async def _receive(self, session) -> None:
        stall = self._settings.response_timeout_seconds
        while True:
            turn = session.receive().__aiter__()  # the SDK's iterator ends at each turnComplete
            while True:
                try:
                    msg = await asyncio.wait_for(turn.__anext__(), self._deadline(stall))
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    if self._go_away_at is not None and time.monotonic() >= self._switch_deadline() - 0.1:
                        raise _SwitchConnection() from None
                    raise SessionError(f"the Live API stopped answering mid-answer (nothing for {stall:g} s; "
                                       f"live.response_timeout_seconds)", "timeout") from None
                except (ValueError, TypeError) as e:
                    # A frame the SDK cannot parse: skip it, keep the conversation.
                    log.warning("skipped a message from the Live API: %s", unreadable(e),
                                extra=fields(event="malformed"))
                    break
                fresh = self._dispatch(msg)
                if self._go_away_at is not None and not self._in_turn:
                    # At a turn boundary: switch once the handle that covers the turn has come (the
                    # service sends it after the turn), or after a short wait for it.
                    if fresh:
                        raise _SwitchConnection()
                    if self._switch_at is None:
                        self._switch_at = time.monotonic() + HANDLE_WAIT

    def _deadline(self, stall: float) -> float | None:
        """Seconds until the receive wait must end: a stall (only inside a turn) or a GoAway."""
        waits = []
        if self._in_turn:
            waits.append(stall)
        if self._go_away_at is not None:
            waits.append(max(0.0, self._switch_deadline() - time.monotonic()))
        return min(waits) if waits else None

    def _switch_deadline(self) -> float:
        assert self._go_away_at is not None  # only asked after a GoAway
        return min(self._go_away_at, self._switch_at or self._go_away_at)

    def _dispatch(self, msg) -> bool:
        """Report what the message says; True when it brought a new resumption handle."""
        self._heard_from = True
        fresh = False
        if msg.go_away is not None:
            left = _seconds(msg.go_away.time_left)
            self._go_away_at = time.monotonic() + max(0.0, left - GOAWAY_MARGIN)
            log.info("GoAway from the Live API (%.0f s left)", left, extra=fields(event="go_away"))
        upd = msg.session_resumption_update
        if upd is not None and upd.resumable and upd.new_handle:
            self.handle = upd.new_handle
            self._on_event(Handle(upd.new_handle))
            fresh = True
        if msg.usage_metadata is not None:
            self.usage.add_metadata(msg.usage_metadata)
        if msg.tool_call is not None and msg.tool_call.function_calls:
            self._tools.call(msg.tool_call.function_calls)  # each in its own task: nothing waits for them
        if msg.tool_call_cancellation is not None and msg.tool_call_cancellation.ids:
            self._tools.cancel(msg.tool_call_cancellation.ids)
        va = msg.voice_activity
        if va is not None and va.voice_activity_type is not None and va.voice_activity_type.value == "ACTIVITY_START":
            self._on_event(Speaking())
        sc = msg.server_content
        if sc is None:
            return fresh
        # One message may carry several of these (audio, transcriptions, turn complete): each is handled,
        # in this order.
        if sc.model_turn and sc.model_turn.parts:
            for part in sc.model_turn.parts:
                if part.inline_data and part.inline_data.data:
                    self._in_turn = True
                    if pcm := self._audio.take(part.inline_data.data, part.inline_data.mime_type):
                        self.usage.bytes_out += len(pcm)
                        self._on_event(ModelAudio(pcm))
        if sc.input_transcription and sc.input_transcription.text:
            self.transcript.add("user", sc.input_transcription.text)
            if self._settings.transcripts:
                narration.transcript(self._number, heard=sc.input_transcription.text)
            self._on_event(Heard(sc.input_transcription.text))
        if sc.output_transcription and sc.output_transcription.text:
            self.transcript.add("model", sc.output_transcription.text)
            if self._settings.transcripts:
                narration.transcript(self._number, said=sc.output_transcription.text)
            self._on_event(Said(sc.output_transcription.text))
        _note(sc)
        self._generated |= bool(sc.generation_complete)
        if sc.interrupted:
            self._in_turn = self._generated = False
            self._audio.end_turn()  # the rest of an interrupted answer is not played
            self._on_event(Interrupted())
        if sc.turn_complete:
            self._turn_complete(self._generated)
        return fresh

    def _turn_complete(self, generated: bool = True) -> None:
        self._in_turn = self._generated = False
        if tail := self._audio.end_turn():
            self._on_event(ModelAudio(tail))
        self._on_event(TurnComplete(generated))


# Why a turn ended, when it is not the answer being done: said once in the log (debug for the rest).
_EXPECTED_ENDS = {None, "TURN_COMPLETE_REASON_UNSPECIFIED", "NEED_MORE_INPUT"}


def _note(sc) -> None:
    """The newer models' status fields: nothing to act on (turn_complete, interrupted and the audio
    decide), but what they say goes to the log for someone finding out why an answer ended."""
    reason = sc.turn_complete_reason.value if sc.turn_complete_reason is not None else None
    if reason not in _EXPECTED_ENDS:
        log.warning("the Live API ended the answer early: %s", reason, extra=fields(event="turn_reason"))
    for name in ("generation_complete", "waiting_for_input", "interaction_status"):
        value = getattr(sc, name, None)
        if value is not None and value is not False:
            log.debug("Live API: %s = %s", name, getattr(value, "value", value))


def _seconds(duration) -> float:
    """A protobuf Duration as the SDK gives it ("5s", a timedelta, or None)."""
    if duration is None:
        return 0.0
    if hasattr(duration, "total_seconds"):
        return duration.total_seconds()
    text = str(duration).strip().rstrip("s")
    try:
        return float(text)
    except ValueError:
        return 0.0
