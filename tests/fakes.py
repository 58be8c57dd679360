"""Small fakes for the fast in-process tests of LiveSession and Assistant (test_session_fast.py,
test_assistant_fast.py). They stand in for the edges only (the socket, the microphone, the speaker, the
wake-word engine), so the real LiveSession and Assistant code runs. They complement the end-to-end
tests (the real google-genai client against tests/standin.py, real ALSA, pivoice as a process); they
do not replace them.

What the fakes copy from the real parts (docs/live-api.md says how the SDK behaves):
- `client.aio.live.connect(model=, config=)` is an async context manager; entering it gives a session.
- `session.receive()` yields `google.genai.types.LiveServerMessage` objects and ends its iteration after
  each turnComplete; a dropped socket makes it raise `google.genai.errors.APIError` (1006 when the
  server vanished, 1011 for the service's trouble).
- `session.send_realtime_input(...)` after the socket went raises websockets' `ConnectionClosedError`.
- A capture's `frames()` yields (Frame, Detection | None) in order and runs until cancelled; the
  detection is only there while `scoring` is set (the real capture scores in its thread only then).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import ClassVar

from google.genai import errors, types
from websockets.exceptions import ConnectionClosedError

from pivoice.audio.ring import Frame
from pivoice.wake.detector import Detection

START = "activity_start"
END = "activity_end"
MIC_MIME = "audio/pcm;rate=16000"


async def until(cond, what: str, timeout: float = 5.0) -> None:
    """Wait (generously: the machine is shared) until `cond()` holds; fail naming `what` if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


async def settle(rounds: int = 20) -> None:
    """Let the tasks that can run, run (for asserting that something did NOT happen)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


# -- server messages, built with the SDK's own models --------------------------------------------------
def audio_msg(pcm: bytes) -> types.LiveServerMessage:
    part = types.Part(inline_data=types.Blob(data=pcm, mime_type="audio/pcm;rate=24000"))
    return types.LiveServerMessage(server_content=types.LiveServerContent(
        model_turn=types.Content(role="model", parts=[part])))


def turn_complete_msg(generated: bool = False) -> types.LiveServerMessage:
    """turnComplete; `generated`: with generationComplete in the same message (the model is done)."""
    return types.LiveServerMessage(server_content=types.LiveServerContent(
        turn_complete=True, generation_complete=True if generated else None))


def interrupted_msg() -> types.LiveServerMessage:
    return types.LiveServerMessage(server_content=types.LiveServerContent(interrupted=True))


def go_away_msg(time_left: str) -> types.LiveServerMessage:
    return types.LiveServerMessage(go_away=types.LiveServerGoAway(time_left=time_left))


def handle_msg(handle: str) -> types.LiveServerMessage:
    return types.LiveServerMessage(session_resumption_update=types.LiveServerSessionResumptionUpdate(
        new_handle=handle, resumable=True))


def transcript_msg(heard: str | None = None, said: str | None = None) -> types.LiveServerMessage:
    return types.LiveServerMessage(server_content=types.LiveServerContent(
        input_transcription=types.Transcription(text=heard) if heard else None,
        output_transcription=types.Transcription(text=said) if said else None))


def usage_msg(tokens_in: int, tokens_out: int) -> types.LiveServerMessage:
    return types.LiveServerMessage(usage_metadata=types.UsageMetadata(prompt_token_count=tokens_in,
                                                                      response_token_count=tokens_out))


def tool_call_msg(*calls: tuple[str, str, dict]) -> types.LiveServerMessage:
    """A toolCall: (id, name, args) for each function call."""
    return types.LiveServerMessage(tool_call=types.LiveServerToolCall(
        function_calls=[types.FunctionCall(id=i, name=n, args=a) for i, n, a in calls]))


def tool_cancel_msg(*ids: str) -> types.LiveServerMessage:
    return types.LiveServerMessage(tool_call_cancellation=types.LiveServerToolCallCancellation(ids=list(ids)))


def dropped(code: int = 1006, reason: str = "Abnormal closure.") -> errors.APIError:
    """What google-genai raises from receive() when the socket closes under it."""
    return errors.APIError(code, reason, None)


# -- the Live API ----------------------------------------------------------------------------------------
class FakeConnection:
    """One WebSocket connection: records what was sent, in order; receives what the test scripts."""

    def __init__(self, number: int, model: str, config: types.LiveConnectConfig):
        self.number = number
        self.model = model
        self.config = config
        self.sent: list[bytes | str] = []  # audio (bytes) and START / END, in the order sent
        self.history: list[tuple[str, str]] = []  # client content turns (role, text), sent before any audio
        self.tool_responses: list[types.FunctionResponse] = []  # in the order sent
        self.closed = False
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._broken = False  # the socket is gone

    @property
    def handle_in(self) -> str | None:
        """The resumption handle this connection's setup carried."""
        return self.config.session_resumption.handle if self.config.session_resumption else None

    @property
    def audio(self) -> list[bytes]:
        return [x for x in self.sent if isinstance(x, bytes)]

    # the test's side
    def push(self, *messages: types.LiveServerMessage) -> None:
        for m in messages:
            self._inbox.put_nowait(m)

    def drop(self, code: int = 1006, reason: str = "Abnormal closure.", silent: bool = False) -> None:
        """The socket breaks: sends raise ConnectionClosedError from now on, and receive() raises the
        SDK's APIError(code) once what was pushed before is received; `silent`: no close reached the
        client (yet), so receive() just waits and only a send finds out."""
        self._broken = True
        if not silent:
            self._inbox.put_nowait(dropped(code, reason))

    # the SDK session's side
    async def send_realtime_input(self, *, audio: types.Blob | None = None,
                                  activity_start: types.ActivityStart | None = None,
                                  activity_end: types.ActivityEnd | None = None) -> None:
        await asyncio.sleep(0)  # a send is I/O: other tasks run meanwhile
        if self.closed or self._broken:
            raise ConnectionClosedError(None, None)
        if audio is not None:
            assert audio.mime_type == MIC_MIME, audio.mime_type
            self.sent.append(audio.data)
        elif activity_start is not None:
            self.sent.append(START)
        elif activity_end is not None:
            self.sent.append(END)
        else:
            raise AssertionError("send_realtime_input without anything to send")

    async def send_tool_response(self, *, function_responses: list[types.FunctionResponse]) -> None:
        await asyncio.sleep(0)
        if self.closed or self._broken:
            raise ConnectionClosedError(None, None)
        self.tool_responses += function_responses

    async def send_client_content(self, *, turns: list[types.Content], turn_complete: bool) -> None:
        await asyncio.sleep(0)
        if self.closed or self._broken:
            raise ConnectionClosedError(None, None)
        assert not self.sent, "client content after realtime input"
        assert turn_complete
        self.history += [(t.role, "".join(p.text or "" for p in t.parts or [])) for t in turns]

    async def receive(self):
        while True:
            item = await self._inbox.get()
            if isinstance(item, BaseException):
                self._inbox.put_nowait(item)  # a dead socket keeps failing
                raise item
            yield item
            if item.server_content is not None and item.server_content.turn_complete:
                return  # as the SDK does: one turn per receive()


class _Connecting:
    def __init__(self, client: FakeLiveClient, model: str, config):
        self._client, self._model, self._config = client, model, config
        self._conn: FakeConnection | None = None

    async def __aenter__(self) -> FakeConnection:
        c = self._client
        await c.gate.wait()
        if c.refuse is not None:
            raise c.refuse
        if c.refuse_handles is not None and self._config.session_resumption.handle:
            raise c.refuse_handles
        self._conn = FakeConnection(len(c.connections) + 1, self._model, self._config)
        c.connections.append(self._conn)
        c.log.append(("open", self._conn.number))
        return self._conn

    async def __aexit__(self, *exc) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.closed = True
            self._client.log.append(("close", self._conn.number))


class FakeLiveClient:
    """Stands in for `genai.Client`: `client.aio.live.connect(model=, config=)`."""

    def __init__(self):
        self.aio = SimpleNamespace(live=self)
        self.connections: list[FakeConnection] = []
        self.attempts = 0  # connect() calls, opened or not (yet)
        self.log: list[tuple[str, int]] = []  # ("open", n) / ("close", n), in order
        self.gate = asyncio.Event()  # cleared: connections wait to open until the test sets it
        self.gate.set()
        self.refuse: BaseException | None = None  # raised when a connection opens
        self.refuse_handles: BaseException | None = None  # raised when a connection resuming with a handle opens

    async def client(self, token: None) -> tuple[FakeLiveClient, None]:
        """As setup.PreparedClient: the client each connection uses."""
        return self, None

    def connect(self, *, model: str, config: types.LiveConnectConfig) -> _Connecting:
        self.attempts += 1
        return _Connecting(self, model, config)


# -- the devices ---------------------------------------------------------------------------------------
class FakeCapture:
    """The microphone: the test says frames; `frames()` yields them in order, as the real Capture does."""

    def __init__(self, frame_samples: int = 1280):
        self.frame_samples = frame_samples
        self.scoring = False
        self.cancelling = False
        self.answering = False
        self.idle = False  # (the real capture hands idle frames over in batches; here each at once)
        self.opened = self.started = self.closed = False
        self.said: list[Frame] = []
        self._index = 0
        self._queue: asyncio.Queue | None = None
        self._late: list[tuple[Frame, Detection | None]] = []

    def open(self) -> None:
        self.opened = True

    def start(self, loop, on_lost=None, on_back=None, lost: bool = False) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True

    @property
    def queue(self) -> asyncio.Queue:
        if self._queue is None:
            self._queue = asyncio.Queue()
        return self._queue

    @property
    def newest(self) -> int:
        """The end of the newest frame captured (said)."""
        return self._index

    def say(self, wake: str | None = None, late: bool = False) -> Frame:
        """Capture one frame of distinct audio; `wake`: the detector fires on it (if scoring is on).
        `late`: read now, handed over at `deliver()` (the capture thread behind the event loop)."""
        n = len(self.said)
        pcm = bytes([n % 251, n // 251 % 251]) * self.frame_samples
        frame = Frame(self._index, pcm, 0.0, self.answering)
        self._index = frame.end
        self.said.append(frame)
        hit = Detection(wake, 0.9, frame.end) if wake is not None and self.scoring else None
        if late:
            self._late.append((frame, hit))
        else:
            self.deliver()
            self.queue.put_nowait((frame, hit))
        return frame

    def deliver(self) -> None:
        """Hand over the frames read `late`."""
        for item in self._late:
            self.queue.put_nowait(item)
        self._late.clear()

    async def heard(self) -> None:
        """Wait until the assistant has handled every frame said so far."""
        await self.queue.join()

    async def frames(self):
        while True:
            item = await self.queue.get()
            try:
                yield item
            finally:
                self.queue.task_done()  # the consumer came back for more: the frame is handled


class FakePlayback:
    """The speaker: records play()/stop(); busy from a play() until stopped."""

    def __init__(self):
        self.calls: list[tuple[str, bytes] | str] = []  # ("play", pcm) and "stop", in order
        self.idle = True
        self.queued = 0
        self.gain = 1.0
        self.opened = self.started = self.closed = False

    @property
    def played(self) -> list[bytes]:
        return [c[1] for c in self.calls if isinstance(c, tuple)]

    def open(self) -> None:
        self.opened = True

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True

    def play(self, pcm: bytes) -> int:
        self.calls.append(("play", pcm))
        offset, self.queued = self.queued, self.queued + len(pcm) // 2
        self.idle = False
        return offset

    def stop(self) -> None:
        self.calls.append("stop")
        self.idle = True


class FakeDetector:
    """The wake-word detector as the assistant uses it (scoring itself is FakeCapture's `wake=`)."""

    names: ClassVar[list[str]] = ["hey_jarvis"]

    def __init__(self):
        self.resets = 0
        self.loaded = self.closed = False

    async def load(self) -> None:
        self.loaded = True

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        self.closed = True
