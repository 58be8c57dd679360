"""The Live API client and each connection's setup: what pivoice asks of the model.

The setup follows live.model's entry in models.py: settings the model does not take were refused at
start (config.py), so what is sent here is what the model accepts.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import time
import warnings

from .. import heap
from ..config import LiveSettings, VadSettings
from ..credentials import ApiKey
from . import models
from .failures import MAX_MESSAGE_BYTES
from .record import Transcript

log = logging.getLogger("pivoice.live")
# google-genai warns at every connection with an ephemeral token that its token support is experimental.
warnings.filterwarnings("ignore", message=r"The SDK's ephemeral token support is experimental")


def make_client(key: str, settings: LiveSettings, api_version: str | None = None):
    """A google-genai client for `key`: an API key, or an ephemeral token (with api_version "v1alpha")."""
    from google import genai
    from google.genai import types

    tls = tls_context()
    http = types.HttpOptions(
        base_url=settings.base_url or None,
        api_version=api_version,
        async_client_args={
            # One TLS context for the Live connection and the two HTTP clients google-genai also makes
            # (pivoice makes no HTTP call with them; one would set the context's ALPN to http/1.1, what a
            # WebSocket speaks anyway), shared by every client: see tls_context().
            "ssl": tls,
            "verify": tls,
            # Closing must not hold up a conversation's end or shutdown (websockets waits 10 s).
            "close_timeout": 1.0,
            # The service's pongs are reported to take up to 30 s: the default 20 s timeout would
            # close healthy connections ("keepalive ping timeout").
            "ping_interval": 20.0,
            "ping_timeout": 60.0,
            "max_size": MAX_MESSAGE_BYTES,  # websockets' default, named: failures.py reports it
        },
    )
    return genai.Client(api_key=key, http_options=http)


def tls_context() -> ssl.SSLContext:
    """The TLS context of the Live clients, trusting what google-genai's own Live connection trusts: the
    file in SSL_CERT_FILE (and the folder in SSL_CERT_DIR) if set, else certifi's bundle. One for every
    client in the process, read once: a changed CA bundle is read at the next start. Left to itself,
    each google-genai client makes two, one of them from the system's store through truststore for the
    HTTP clients pivoice never calls: the first client cost the daemon 0.6 MiB and a worker thread 22 ms
    more here, each later one (an ephemeral token's) 1.6 MiB and 44 ms (BENCHMARKS.md, section 2d)."""
    return _tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _tls_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    import certifi  # (a google-genai dependency)

    # As google-genai's: an empty SSL_CERT_FILE means OpenSSL's default places, an unset one certifi's.
    return ssl.create_default_context(cafile=certifi.where() if cafile is None else cafile, capath=capath)


def load_genai() -> None:
    """Import google-genai (the largest part of pivoice's heap) and what a connection imports, build the
    models a Live session uses, then freeze the heap (pivoice/heap.py): in a worker thread right after
    READY=1, before any conversation needs it."""
    import encodings.idna  # noqa: F401 - the TLS handshake encodes the host's name with it (1.4 ms here)

    import google.genai  # noqa: F401

    _build_session_models()
    heap.settle("google-genai loaded")


# The models of google-genai (3.6) whose validators a Live session builds, found by running sessions against
# the tests' stand-in: its setup (with the tools pivoice declares and Google Search, on by default), the audio
# it sends, the messages it receives (the server's content, transcriptions, tool calls, resumption handles,
# GoAway). A name a later release drops is skipped; a model it adds is built where it is first used, as all
# were before.
SESSION_MODELS = (
    "AudioTranscriptionConfig", "AutomaticActivityDetection", "Blob", "BlobImageUnion", "Content",
    "ContextWindowCompressionConfig", "LiveConnectConfig", "LiveConnectParameters",
    "LiveSendRealtimeInputParameters", "LiveServerContent", "LiveServerMessage", "LiveServerSetupComplete",
    "Part", "RealtimeInputConfig", "SessionResumptionConfig", "SlidingWindow", "UsageMetadata", "UserContent",
    "FunctionCall", "FunctionResponse", "LiveClientToolResponse", "LiveServerGoAway",
    "LiveServerSessionResumptionUpdate", "LiveServerToolCall", "Transcription", "VoiceActivity",
    "Tool", "FunctionDeclaration", "GoogleSearch",
)


def _build_session_models() -> None:
    """google-genai's pydantic models build their validators the first time each is used (defer_build):
    for those of a Live session, 35 ms and 3 MiB here (several times that on a Pi), which the first
    conversation's connection would wait for."""
    from google.genai import types

    for name in SESSION_MODELS:
        try:
            getattr(types, name).model_rebuild()
        except Exception as e:  # noqa: BLE001 - only a head start: such a model is built (or fails) where used
            log.debug("google-genai's %s not built in advance: %s", name, e)


class PreparedClient:
    """google-genai's client, made in a thread once asked. Importing google-genai is about half of
    pivoice's start, and listening for the wake word does not need it: the daemon asks right after
    READY=1, so the wake word is heard sooner and the first conversation does not wait for it either
    (a session that starts before it is ready waits for it, its audio queued)."""

    def __init__(self, key: ApiKey, settings: LiveSettings):
        self._key, self._settings = key, settings
        self._made: asyncio.Future | None = None

    def prepare(self) -> None:
        """Start making the client (on the event loop; the import runs in a worker thread)."""
        if self._made is None:
            self._made = asyncio.ensure_future(asyncio.to_thread(self._make))

    def _make(self):
        started = time.monotonic()
        load_genai()
        client = make_client(self._key.value, self._settings)
        log.debug("Live API client ready in %.0f ms (google-genai loaded)", (time.monotonic() - started) * 1000)
        return client

    async def get(self):
        self.prepare()
        assert self._made is not None
        return await asyncio.shield(self._made)  # a conversation cancelled while waiting leaves it to finish

    async def client(self, token: None) -> tuple[object, None]:
        """What a session connects with (the same client each time; no token with an API key)."""
        return await self.get(), None


def history_in_client_content(settings: LiveSettings) -> bool:
    """A reseed goes as initial turns in client content (else: in the system instruction)."""
    m = models.lookup(settings.model)
    return m is not None and m.history_in_client_content


def connect_config(settings: LiveSettings, vad: VadSettings, handle: str | None = None,
                   seed: Transcript | None = None, tools: list | None = None):
    """The setup of one connection: resuming with `handle`, or a new session seeded with `seed`; `tools`:
    tools.declarations() of the enabled tools."""
    from google.genai import types

    speech = None
    if settings.voice or settings.language:
        voice = (types.VoiceConfig(prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=settings.voice))
                 if settings.voice else None)
        speech = types.SpeechConfig(voice_config=voice, language_code=settings.language or None)
    # What the person says: tells the assistant someone is speaking (keeps the follow-up window open),
    # is logged with live.transcripts, and with what the model says is kept to reseed a session.
    heard = types.AudioTranscriptionConfig(language_codes=[settings.language] if settings.language else None)
    instruction = settings.instruction
    history = None
    if seed:
        if history_in_client_content(settings):
            history = types.HistoryConfig(initial_history_in_client_content=True)
        else:
            instruction += seed.as_instruction()
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        system_instruction=instruction or None,
        speech_config=speech,
        realtime_input_config=types.RealtimeInputConfig(automatic_activity_detection=_detection(vad)),
        input_audio_transcription=heard,
        output_audio_transcription=types.AudioTranscriptionConfig(),
        session_resumption=types.SessionResumptionConfig(handle=handle),
        # Long conversations: drop the oldest context instead of hitting the limit (and the 15 min
        # cap of audio sessions without compression).
        context_window_compression=types.ContextWindowCompressionConfig(
            sliding_window=types.SlidingWindow(), trigger_tokens=settings.compression_trigger_tokens
        ),
        history_config=history,
        tools=tools or None,
        # Only what the config sets: a model's own default is left to it (3.8 refuses proactive_audio=false).
        proactivity=(types.ProactivityConfig(proactive_audio=settings.proactive_audio)
                     if settings.proactive_audio is not None else None),
        enable_affective_dialog=settings.affective_dialog,
        thinking_config=(types.ThinkingConfig(thinking_level=settings.thinking_level.upper())
                         if settings.thinking_level else None),
    )


def _detection(vad: VadSettings):
    from google.genai import types

    if not vad.automatic:
        return types.AutomaticActivityDetection(disabled=True)
    sensitivity = {"high": "HIGH", "low": "LOW"}
    return types.AutomaticActivityDetection(
        disabled=False,
        start_of_speech_sensitivity=(f"START_SENSITIVITY_{sensitivity[vad.start_sensitivity]}"
                                     if vad.start_sensitivity != "default" else None),
        end_of_speech_sensitivity=(f"END_SENSITIVITY_{sensitivity[vad.end_sensitivity]}"
                                   if vad.end_sensitivity != "default" else None),
        prefix_padding_ms=vad.prefix_padding_ms,
        silence_duration_ms=vad.silence_duration_ms,
    )
