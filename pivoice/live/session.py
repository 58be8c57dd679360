"""One Gemini Live API conversation over google-genai's `client.aio.live.connect`.

The session sends what the assistant queues in `outgoing` (16 kHz mono s16le), in order, from the first
frame queued (the pre-roll and whatever was said while connecting) to the last, and reports what the
server says through `on_event`. It knows nothing of states, devices or timers.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import LiveSettings
from ..credentials import ApiKey

log = logging.getLogger("pivoice.live")

INPUT_MIME = "audio/pcm;rate=16000"


# What the server said, as the assistant needs it.
@dataclass(frozen=True)
class Connected:
    setup_ms: float


@dataclass(frozen=True)
class ModelAudio:
    pcm: bytes  # 24 kHz mono s16le


@dataclass(frozen=True)
class Interrupted:
    pass


@dataclass(frozen=True)
class TurnComplete:
    pass


@dataclass(frozen=True)
class Heard:
    """Input transcription: the server heard the user speak (text logged at debug only)."""

    text: str


LiveEvent = Connected | ModelAudio | Interrupted | TurnComplete | Heard


class SessionError(Exception):
    """The session could not be opened or broke; the message says why and what to do."""


def make_client(key: ApiKey, settings: LiveSettings):
    from google import genai
    from google.genai import types

    http = types.HttpOptions(
        base_url=settings.base_url or None,
        # Closing must not hold up a conversation's end or shutdown (websockets waits 10 s by default).
        async_client_args={"close_timeout": 1.0},
    )
    return genai.Client(api_key=key.value, http_options=http)


def connect_config(settings: LiveSettings):
    from google.genai import types

    speech = None
    if settings.voice:
        speech = types.SpeechConfig(
            voice_config=types.VoiceConfig(prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=settings.voice))
        )
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        system_instruction=settings.system_instruction or None,
        speech_config=speech,
        # The server's automatic voice activity detection decides when the user has finished.
        realtime_input_config=types.RealtimeInputConfig(
            automatic_activity_detection=types.AutomaticActivityDetection(disabled=False)
        ),
        # What the server hears: tells the assistant that someone is speaking (keeps the follow-up
        # window open while they do) and shows up in the debug log.
        input_audio_transcription=types.AudioTranscriptionConfig(),
    )


def describe_error(e: BaseException, settings: LiveSettings) -> str:
    """A one-line reason for a failed or broken session, with what to do about it."""
    from google.genai import errors as genai_errors
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    where = settings.base_url or "the Gemini Live API"
    if isinstance(e, TimeoutError):
        return f"{where} did not answer within {settings.connect_timeout_seconds:g} s (live.connect_timeout_seconds)"
    if isinstance(e, genai_errors.APIError):
        code, details = e.code, (e.details if isinstance(e.details, str) else e.message) or ""
        if code in (1007, 1008):
            return (f"the Live API refused the session ({code}: {details}). Check the API key, and that "
                    f"live.model '{settings.model}' exists and supports the Live API")
        if code == 1011:
            return f"the Live API had an internal error or is overloaded ({code}: {details})"
        return f"the Live API closed the connection ({code}: {details or 'no reason given'})"
    if isinstance(e, InvalidStatus):
        status = e.response.status_code
        hint = " (the API key was rejected)" if status in (401, 403) else ""
        return f"{where} refused the connection with HTTP {status}{hint}"
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"the TLS certificate of {where} could not be verified ({e.verify_message}); check the clock and CA store"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve the Live API's host name ({e.strerror}); is the network up?"
    if isinstance(e, ConnectionClosed):
        return f"the connection to {where} closed ({e})"
    if isinstance(e, OSError):
        return f"cannot reach {where} ({e.strerror or e}); is the network up?"
    return f"{type(e).__name__}: {e}"


class LiveSession:
    def __init__(self, client, settings: LiveSettings, on_event: Callable[[LiveEvent], None]):
        self._client = client
        self._settings = settings
        self._on_event = on_event
        self.outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self.sent_bytes = 0

    async def run(self) -> None:
        """Connect, then stream until cancelled or the connection ends. Raises SessionError on failure."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._settings.connect_timeout_seconds):
                cm = self._client.aio.live.connect(model=self._settings.model, config=connect_config(self._settings))
                session = await cm.__aenter__()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - every failure becomes one clear reason
            raise SessionError(describe_error(e, self._settings)) from None
        try:
            self._on_event(Connected((time.monotonic() - started) * 1000))
            await self._stream(session)
        finally:
            try:
                async with asyncio.timeout(1.5):
                    await cm.__aexit__(None, None, None)
            except (Exception, asyncio.CancelledError):  # noqa: BLE001 - closing is best effort
                pass

    async def _stream(self, session) -> None:
        sender = asyncio.create_task(self._send(session), name="live-send")
        receiver = asyncio.create_task(self._receive(session), name="live-receive")
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is not None:
                    raise SessionError(describe_error(exc, self._settings)) from None
            raise SessionError("the Live API ended the session")
        finally:
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)

    async def _send(self, session) -> None:
        from google.genai import types

        while True:
            pcm = await self.outgoing.get()
            await session.send_realtime_input(audio=types.Blob(data=pcm, mime_type=INPUT_MIME))
            self.sent_bytes += len(pcm)

    async def _receive(self, session) -> None:
        while True:
            try:
                async for msg in session.receive():
                    self._dispatch(msg)
            except (ValueError, TypeError) as e:
                # A frame the SDK cannot parse: skip it, keep the conversation.
                log.warning("skipped a malformed message from the Live API: %s", str(e)[:200])

    def _dispatch(self, msg) -> None:
        sc = msg.server_content
        if sc is None:
            return
        if sc.model_turn and sc.model_turn.parts:
            for part in sc.model_turn.parts:
                if part.inline_data and part.inline_data.data:
                    self._on_event(ModelAudio(part.inline_data.data))
        if sc.input_transcription and sc.input_transcription.text:
            self._on_event(Heard(sc.input_transcription.text))
        if sc.interrupted:
            self._on_event(Interrupted())
        if sc.turn_complete:
            self._on_event(TurnComplete())
