"""A local stand-in for the Gemini Live API: a TLS WebSocket server speaking the messages in
docs/live-api.md, for the real google-genai client to talk to.

It behaves as the model the setup names (MODELS): `gemini-3.8-live` (the default) refuses what 3.8 refuses
(`proactive_audio: false`, affective dialog, thinking settings), takes initial history in client content,
and sends the newer fields (voiceActivity, usageMetadata, waitingForInput); the 2.5 and 3.1 models behave as
before 3.8. A model it does not know is refused as the API does ("not found ... bidiGenerateContent").

It runs its own event loop in a thread. Tests script it through `Behaviour` and the methods below, and
read what it received from `sessions`. Pure test code; nothing here is imported by pivoice.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import trustme
from websockets.asyncio.server import serve


def _get(d: dict, *names):
    """A key in snake_case or camelCase."""
    for n in names:
        if n in d:
            return d[n]
        parts = n.split("_")
        camel = parts[0] + "".join(p.title() for p in parts[1:])
        if camel in d:
            return d[camel]
    return None


def _loud(pcm: bytes) -> bool:
    samples = memoryview(pcm).cast("h") if len(pcm) % 2 == 0 else []
    return any(abs(x) > 500 for x in samples)


# The models the stand-in serves, by family (what pivoice/live/models.py describes, from the model pages).
MODELS = {
    "gemini-3.8-live": "3.8",
    "gemini-3.8-live-extended-thinking": "3.8",
    "gemini-3.1-flash-live-preview": "3.1",
    "gemini-2.5-flash-native-audio-preview-12-2025": "2.5",
    "gemini-2.5-flash-native-audio-preview-09-2025": "2.5",
}
INVALID = (1007, "Request contains an invalid argument.")
TOKENS_PER_SECOND = 32  # audio tokens per second, each way (usageMetadata)


def _refusal(setup: dict) -> tuple[int, str] | None:
    """The close the API sends for this setup, or None when it accepts it."""
    name = str(_get(setup, "model") or "").removeprefix("models/")
    family = MODELS.get(name)
    if family is None:
        # (A close reason is at most 123 bytes: the API's own text, cut as the service cuts it.)
        return (1008, f"models/{name} is not found for API version v1, or is not supported for "
                      f"bidiGenerateContent."[:123])
    gen = _get(setup, "generation_config") or {}
    proactivity = _get(setup, "proactivity") or _get(gen, "proactivity") or {}
    if family == "3.8" and (_get(proactivity, "proactive_audio") is False
                            or _get(setup, "enable_affective_dialog") is not None
                            or _get(gen, "enable_affective_dialog") is not None
                            or _get(gen, "thinking_config") is not None):
        return INVALID
    return None


def _b64(data: str) -> bytes:
    data = data.replace("-", "+").replace("_", "/")
    return base64.b64decode(data + "=" * (-len(data) % 4))


@dataclass
class Behaviour:
    setup_delay: float = 0.0  # seconds before setupComplete
    # Answer once this much audio (seconds, 16 kHz) has arrived in the current turn; None: never.
    reply_after_seconds: float | None = 2.0
    reply_pcm: bytes = b""  # 24 kHz s16le mono
    reply_chunk_bytes: int = 9600  # 200 ms per message
    reply_pace: float = 0.0  # seconds between reply messages (0: as fast as the socket takes them)
    input_transcripts: bool = False  # send inputTranscription while speech arrives
    heard_text: str = "..."  # ...this text, for each loud chunk
    said_text: str = ""  # outputTranscription sent with each reply's first audio (none when empty)
    premature_turn_complete_after: int | None = None  # a turnComplete after this many reply messages, then
    #                                                   the rest of the reply (python-genai#2117)
    combined_end: bool = False  # the reply's last message: two audio parts, its transcription and turnComplete
    refuse_handles: tuple[int, str] | None = None  # close a setup that carries a handle with (code, reason)
    max_replies: int = 1  # replies per session
    max_replies_in_all: int | None = None  # replies over all sessions (a resumed conversation's too)
    handles: bool = False  # send sessionResumptionUpdate (a new handle after setup and each turn)
    valid_key: str | None = None  # refuse other keys with close 1008, as the service does
    go_away_after_bytes: int | None = None  # send goAway once this much audio arrived on a connection
    go_away_time_left: float = 3.0  # ...and close it this long after (if the client has not)
    drop_after_bytes: int | None = None  # abort the TCP connection (no close frame) after this much audio
    close_after_bytes: int | None = None  # close with close_code/close_reason after this much audio
    close_code: int = 1008
    close_reason: str = ""
    refuse_setup: tuple[int, str] | None = None  # close with (code, reason) instead of setupComplete
    stall_after_chunks: int | None = None  # stop sending mid-reply after this many audio messages
    # send a non-JSON frame, an {"error": ...} frame and one with an unknown field before each reply
    garbage: bool = False
    reply_on_activity_end: bool = False  # answer when the client ends an activity (VAD off)
    faults_once: bool = True  # go_away/drop/stall only on the first connection
    reply_mime: str = "audio/pcm;rate=24000"  # the inlineData mimeType of each reply message
    stray_byte_in_chunk: int | None = None  # this reply message (0-based) gets one byte too many at its end
    tool_calls: list = field(default_factory=list)  # (id, name, args): one toolCall sent before each reply
    forget_tokens: bool = False  # refuse every token on the constrained method as not issued (a new API key...)


@dataclass
class Minted:
    """An ephemeral token the stand-in made (`POST /v1alpha/auth_tokens`), as the API keeps it."""

    expires: float  # time.time()
    new_sessions_until: float
    uses_left: int
    locked: dict  # bidiGenerateContentSetup: what the token fixes, whatever the client's setup says
    connections: int = 0


# How the stand-in refuses a token on the constrained Live method. The wording is the stand-in's own: the API
# documents the checks (minted, expiry, new-session window, uses), not its messages, except "used too many
# times" (reported by other clients for a resumption with a single-use token).
TOKEN_UNKNOWN = (1008, "Auth token is invalid: it was not issued by this service.")
TOKEN_EXPIRED = (1008, "Auth token has expired.")
TOKEN_NO_NEW_SESSIONS = (1008, "Auth token can no longer start new sessions.")
TOKEN_USED_UP = (1008, "Auth token has been used too many times.")


@dataclass
class Session:
    headers: dict
    path: str = ""
    token: str | None = None  # the ephemeral token it was opened with (the constrained method)
    handle_in: str | None = None  # the resumption handle the client's setup carried
    handles_out: list = field(default_factory=list)
    activity: list = field(default_factory=list)  # ("start"|"end", bytes of audio received before it)
    setup: dict | None = None
    audio: bytearray = field(default_factory=bytearray)
    messages: list = field(default_factory=list)
    opened_at: float = 0.0
    closed_at: float | None = None
    replies_started: list = field(default_factory=list)  # time.monotonic() of each reply's first chunk
    family: str = ""  # the model family it behaved as
    history: list = field(default_factory=list)  # initial history: (role, text) from client content
    audio_before_history: bool = False  # realtime input came before the initial history was complete
    usage_sent: list = field(default_factory=list)  # (promptTokenCount, responseTokenCount) of each turn

    @property
    def tool_responses(self) -> list[dict]:
        """The functionResponses received, in order."""
        return [r for m in self.messages for r in (_get(_get(m, "tool_response") or {}, "function_responses") or [])]


class LiveStandIn:
    def __init__(self, tmp_path):
        self.ca = trustme.CA()
        self.cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = tmp_path / "standin-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.behaviour = Behaviour()
        self.sessions: list[Session] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve_forever, daemon=True)
        self._server = None
        self._conns: dict[int, object] = {}
        self._stop_reply = False
        self.port = 0
        self.tokens: dict[str, Minted] = {}
        self.mint_requests: list[dict] = []  # the body of every POST /v1alpha/auth_tokens
        self._rest: ThreadingHTTPServer | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> LiveStandIn:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("stand-in did not start")
        self._rest = ThreadingHTTPServer(("127.0.0.1", 0), _rest_handler(self))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(ctx)
        self._rest.socket = ctx.wrap_socket(self._rest.socket, server_side=True)
        threading.Thread(target=self._rest.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._rest is not None:
            self._rest.shutdown()
            self._rest.server_close()

        async def _close():
            self._server.close()
            await self._server.wait_closed()

        if self._server is not None:
            asyncio.run_coroutine_threadsafe(_close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        """The REST side (the token endpoint): a base_url for a client that mints tokens."""
        assert self._rest is not None
        return f"https://127.0.0.1:{self._rest.server_address[1]}"

    def mint(self, body: dict) -> str:
        """A new token from the body google-genai's `auth_tokens.create` sends."""
        def when(key: str, default: float) -> float:
            v = body.get(key)
            return datetime.datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() if v else default

        now = time.time()
        name = f"auth_tokens/{secrets.token_hex(16)}"
        self.tokens[name] = Minted(when("expireTime", now + 1800), when("newSessionExpireTime", now + 60),
                                   int(body.get("uses", 1)), body.get("bidiGenerateContentSetup") or {})
        return name

    def _token_refusal(self, sess: Session) -> tuple[int, str] | None:
        """The close for a connection on the constrained method with sess.token, or None to accept it
        (then it counts one use, and the token's locked fields replace the client's)."""
        minted = None if self.behaviour.forget_tokens else self.tokens.get(sess.token or "")
        now = time.time()
        if minted is None:
            return TOKEN_UNKNOWN
        if now >= minted.expires:
            return TOKEN_EXPIRED
        if not sess.handle_in and now >= minted.new_sessions_until:
            return TOKEN_NO_NEW_SESSIONS
        if minted.uses_left <= 0:
            return TOKEN_USED_UP
        minted.uses_left -= 1
        minted.connections += 1
        assert sess.setup is not None
        for key, value in minted.locked.items():  # (one level deep, as the token's field mask goes)
            mine = sess.setup.get(key)
            sess.setup[key] = {**mine, **value} if isinstance(mine, dict) and isinstance(value, dict) else value
        return None

    def env(self) -> dict[str, str]:
        """Environment for a pivoice process that should reach this stand-in."""
        return {"GOOGLE_GEMINI_BASE_URL": self.base_url, "SSL_CERT_FILE": str(self.ca_file)}

    def _serve_forever(self) -> None:
        asyncio.set_event_loop(self._loop)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(ctx)

        async def _start():
            self._server = await serve(self._handle, "127.0.0.1", 0, ssl=ctx, max_size=None)
            self.port = self._server.sockets[0].getsockname()[1]

        self._loop.run_until_complete(_start())
        self._ready.set()
        self._loop.run_forever()

    # -- control from the test thread -------------------------------------------------------------
    def interrupt_now(self) -> float:
        """Send `interrupted` on the newest open session now; returns when it was sent (monotonic)."""
        return asyncio.run_coroutine_threadsafe(self._interrupt(), self._loop).result(5)

    def send_now(self, frames: list[str]) -> None:
        """Send these text frames on the newest open session, in order, as fast as the socket takes them."""
        async def _send():
            ws = self._conns[len(self.sessions) - 1]
            for f in frames:
                await ws.send(f)

        asyncio.run_coroutine_threadsafe(_send(), self._loop).result(60)

    async def _interrupt(self) -> float:
        ws = self._conns[len(self.sessions) - 1]
        self._stop_reply = True
        await ws.send(json.dumps({"serverContent": {"interrupted": True}}))
        return time.monotonic()

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    # -- the protocol -----------------------------------------------------------------------------
    async def _handle(self, ws) -> None:
        sess = Session(headers=dict(ws.request.headers), path=ws.request.path, opened_at=time.monotonic())
        if sess.path.endswith(".BidiGenerateContentConstrained"):  # known before the setup message comes
            sess.token = ws.request.headers.get("Authorization", "").removeprefix("Token ")
        self.sessions.append(sess)
        idx = len(self.sessions) - 1
        self._conns[idx] = ws
        b = self.behaviour
        turn_bytes = 0
        reply_task = None
        faults = idx == 0 or not b.faults_once
        go_away_sent = False
        speaking = False
        try:
            first = json.loads(await ws.recv())
            sess.setup = _get(first, "setup")
            resumption = _get(sess.setup, "session_resumption") or {}
            sess.handle_in = _get(resumption, "handle")
            if sess.token is not None:
                if (refused := self._token_refusal(sess)) is not None:
                    await ws.close(*refused)
                    return
            elif b.valid_key is not None and sess.headers.get("x-goog-api-key") != b.valid_key:
                await ws.close(1008, "API key not valid. Please pass a valid API key.")
                return
            if b.refuse_setup is not None:
                await ws.close(*b.refuse_setup)
                return
            if (refused := _refusal(sess.setup)) is not None:
                await ws.close(*refused)
                return
            if b.refuse_handles is not None and sess.handle_in:
                await ws.close(*b.refuse_handles)
                return
            sess.family = MODELS[str(_get(sess.setup, "model")).removeprefix("models/")]
            history = _get(sess.setup, "history_config") or {}
            history_open = bool(_get(history, "initial_history_in_client_content"))
            if b.setup_delay:
                await asyncio.sleep(b.setup_delay)
            await ws.send(json.dumps({"setupComplete": {}}))
            await self._new_handle(ws, sess)
            async for raw in ws:
                msg = json.loads(raw)
                sess.messages.append(msg)
                cc = _get(msg, "client_content")
                if cc is not None and history_open:
                    for turn in _get(cc, "turns") or []:
                        text = "".join(str(_get(p, "text") or "") for p in _get(turn, "parts") or [])
                        sess.history.append((_get(turn, "role"), text))
                    history_open = not _get(cc, "turn_complete")
                rt = _get(msg, "realtime_input")
                if rt is None:
                    continue
                sess.audio_before_history |= history_open
                for kind in ("start", "end"):
                    if _get(rt, f"activity_{kind}") is not None:
                        sess.activity.append((kind, len(sess.audio)))
                        if kind == "end" and b.reply_on_activity_end and reply_task is None:
                            reply_task = asyncio.create_task(self._reply(ws, sess, faults))
                audio = _get(rt, "audio")
                if audio is None:
                    continue
                pcm = _b64(_get(audio, "data"))
                sess.audio += pcm
                turn_bytes += len(pcm)
                if faults and b.drop_after_bytes is not None and len(sess.audio) >= b.drop_after_bytes:
                    ws.transport.abort()  # the network is gone: no close frame
                    return
                if faults and b.close_after_bytes is not None and len(sess.audio) >= b.close_after_bytes:
                    await ws.close(b.close_code, b.close_reason)
                    return
                if faults and b.go_away_after_bytes is not None and not go_away_sent \
                        and len(sess.audio) >= b.go_away_after_bytes:
                    go_away_sent = True
                    await ws.send(json.dumps({"goAway": {"timeLeft": f"{b.go_away_time_left:g}s"}}))
                    asyncio.get_running_loop().call_later(
                        b.go_away_time_left, lambda: asyncio.ensure_future(
                            ws.close(1011, "Deadline expired before operation could complete.")))
                loud = _loud(pcm)
                if loud and not speaking and sess.family == "3.8":
                    await ws.send(json.dumps({"voiceActivity": {"type": "ACTIVITY_START"}}))
                speaking = loud
                if b.input_transcripts and loud:  # as the real service: only while speech comes
                    await ws.send(json.dumps({"serverContent": {"inputTranscription": {"text": b.heard_text}}}))
                if (b.reply_after_seconds is not None and reply_task is None
                        and len(sess.replies_started) < b.max_replies
                        and (b.max_replies_in_all is None
                             or sum(len(x.replies_started) for x in self.sessions) < b.max_replies_in_all)
                        and turn_bytes >= b.reply_after_seconds * 32000):
                    reply_task = asyncio.create_task(self._reply(ws, sess, faults))
                if reply_task is not None and reply_task.done():
                    reply_task = None
                    if sess.family == "3.8":  # what the turn cost
                        tokens = (round(turn_bytes / 32000 * TOKENS_PER_SECOND),
                                  round(len(b.reply_pcm) / 48000 * TOKENS_PER_SECOND))
                        sess.usage_sent.append(tokens)
                        await ws.send(json.dumps({"usageMetadata": {
                            "promptTokenCount": tokens[0], "responseTokenCount": tokens[1],
                            "totalTokenCount": sum(tokens)}}))
                    turn_bytes = 0
        except Exception:
            pass
        finally:
            sess.closed_at = time.monotonic()
            if reply_task is not None:
                reply_task.cancel()

    async def _new_handle(self, ws, sess: Session) -> None:
        if self.behaviour.handles:
            handle = f"handle-{len(self.sessions)}-{len(sess.handles_out) + 1}"
            sess.handles_out.append(handle)
            await ws.send(json.dumps({"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}))

    async def _reply(self, ws, sess: Session, faults: bool) -> None:
        b = self.behaviour
        self._stop_reply = False
        pcm = b.reply_pcm
        sess.replies_started.append(time.monotonic())
        if b.garbage:
            await ws.send("this is not JSON {")
            await ws.send(json.dumps({"error": {"code": 500, "message": "something odd"}}))
            await ws.send(json.dumps({"futureThing": {"x": 1}}))
        if b.tool_calls:  # as the API: a toolCall message of its own, the answer after it
            await ws.send(json.dumps({"toolCall": {"functionCalls": [
                {"id": i, "name": n, "args": a} for i, n, a in b.tool_calls]}}))
        starts = list(range(0, len(pcm), b.reply_chunk_bytes))
        for n, i in enumerate(starts):
            if self._stop_reply:
                return
            if faults and b.stall_after_chunks is not None and n >= b.stall_after_chunks:
                await asyncio.sleep(3600)  # stalled: the socket stays open, nothing more comes
            chunk = pcm[i : i + b.reply_chunk_bytes] + (b"\x5a" if n == b.stray_byte_in_chunk else b"")
            content: dict = {"modelTurn": {"parts": [{"inlineData": {"mimeType": b.reply_mime,
                                                                     "data": base64.b64encode(chunk).decode()}}]}}
            if n == 0 and b.said_text:
                content["outputTranscription"] = {"text": b.said_text}
            if b.combined_end and n == len(starts) - 1:  # two parts, the transcription and the end, in one
                half = len(chunk) // 4 * 2
                content["modelTurn"]["parts"] = [{"inlineData": {"mimeType": b.reply_mime,
                                                                 "data": base64.b64encode(x).decode()}}
                                                 for x in (chunk[:half], chunk[half:])]
                content["outputTranscription"] = {"text": " The end."}
                content["turnComplete"] = True
                content["aFieldFromTheFuture"] = {"x": 1}  # unknown fields must not break anything
            await ws.send(json.dumps({"serverContent": content}))
            if n + 1 == b.premature_turn_complete_after:
                await ws.send(json.dumps({"serverContent": {"turnComplete": True}}))
            if b.reply_pace:
                await asyncio.sleep(b.reply_pace)
        if not self._stop_reply:
            if not b.combined_end:
                await ws.send(json.dumps({"serverContent": {"generationComplete": True}}))
                await ws.send(json.dumps({"serverContent": {"turnComplete": True}}))
            if sess.family == "3.8":
                await ws.send(json.dumps({"serverContent": {"waitingForInput": True}}))
            await self._new_handle(ws, sess)


def _rest_handler(standin: LiveStandIn):
    """The REST side: `POST /v1alpha/auth_tokens` (what `client.auth_tokens.create` calls)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            valid = standin.behaviour.valid_key
            if self.path.split("?")[0] != "/v1alpha/auth_tokens":
                self._answer(404, {"error": {"code": 404, "message": "Not found.", "status": "NOT_FOUND"}})
            elif valid is not None and self.headers.get("x-goog-api-key") != valid:
                self._answer(400, {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                                             "status": "INVALID_ARGUMENT"}})
            else:
                standin.mint_requests.append(body)
                self._answer(200, {"name": standin.mint(body)})

        def _answer(self, status: int, doc: dict) -> None:
            out = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args) -> None:  # quiet
            pass

    return Handler
