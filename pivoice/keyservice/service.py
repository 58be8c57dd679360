"""The key service: `POST /token` with `Authorization: Bearer <device secret>` -> an ephemeral token.

Answers (JSON):
  200 {"token", "expires_in", "new_session_expires_in", "uses", "model"}   (seconds: no clock to agree on)
  401 the device secret is unknown (never was, or revoked)      429 the device's rate limit (Retry-After)
  502 the Gemini API refused the service's API key or request   503 the Gemini API could not be reached
`GET /health` says it runs and how many devices it knows, without a secret.

Served by uvicorn (pure Python on h11, which google-genai's HTTP stack already brings; it runs TLS from a
certificate and key file and is maintained and packaged for Debian). The handler is a bare ASGI function:
one route does not need a framework. SIGHUP (`systemctl reload pivoice-tokens`) reads the devices file
again: that is how a device is revoked. Every mint is one journal line with the device name.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import signal
import socket
import ssl
import time
import warnings
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from .. import logs
from ..credentials import ApiKey, find_api_key
from ..errors import ConfigError, UnavailableError, UserError
from ..systemd import Notifier
from . import devices
from .settings import KeyServiceSettings

log = logging.getLogger("pivoice.tokens")
# google-genai warns on every mint that its token support is experimental: once in the docs is enough.
warnings.filterwarnings("ignore", message=r"The SDK's token creation implementation is experimental")

MINT_TIMEOUT_MS = 8000  # under the speaker's own 10 s: it hears the key service's 503, not a timeout
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class KeyService:
    def __init__(self, settings: KeyServiceSettings, key: ApiKey):
        self.settings = settings
        self._key = key
        self._devices_file = Path(settings.service.devices_file)
        self.book = devices.load(self._devices_file)
        self.limit = devices.RateLimit(settings.rate_limit.burst, settings.rate_limit.per_hour)
        self._client: Any = None

    def reload(self) -> None:
        """SIGHUP: the devices file again (a removed line revokes that device at once)."""
        try:
            book = devices.load(self._devices_file)
        except UserError as e:
            log.error("reload failed, keeping the previous devices: %s", e.message, extra=logs.fields(event="reload"))
            return
        gone = sorted(set(self.book.values()) - set(book.values()))
        self.book = book
        log.info("reloaded: %d device(s)%s", len(book), f"; revoked: {', '.join(gone)}" if gone else "",
                 extra=logs.fields(event="reload"))

    def client(self):
        if self._client is None:
            from google import genai
            from google.genai import types

            # A timeout (ms): a stalled Gemini API must not hold a speaker's request (it waits 10 s) forever.
            http = types.HttpOptions(api_version="v1alpha", base_url=self.settings.service.base_url or None,
                                     timeout=MINT_TIMEOUT_MS)
            self._client = genai.Client(api_key=self._key.value, http_options=http)
        return self._client

    async def mint(self, device: str) -> dict:
        """A token for `device`, as the answer's JSON. Raises _Answer for the Gemini API's refusals."""
        from google.genai import errors, types

        t = self.settings.tokens
        now = datetime.datetime.now(tz=datetime.UTC)
        constraints = None
        if t.model or t.system_instruction:
            constraints = types.LiveConnectConstraints(
                model=t.model or None,
                config=types.LiveConnectConfig(system_instruction=t.system_instruction or None),
            )
        started = time.monotonic()
        try:
            token = await self.client().aio.auth_tokens.create(config=types.CreateAuthTokenConfig(
                uses=t.uses,
                expire_time=now + datetime.timedelta(minutes=t.expire_minutes),
                new_session_expire_time=now + datetime.timedelta(minutes=t.new_session_minutes),
                live_connect_constraints=constraints,
                lock_additional_fields=[] if constraints is not None else None,
            ))
        except errors.APIError as e:
            said = f"{e.code}: {str(e.message or e.status or '')[:200]}"
            log.error("no token for %s: the Gemini API refused (%s)", device, said,
                      extra=logs.fields(event="mint", device=device, result="refused"))
            raise _Answer(502, f"the Gemini API refused to make a token ({said})") from None
        except Exception as e:  # noqa: BLE001 - network trouble (httpx's errors are not OSErrors), a timeout
            why = f"{type(e).__name__}: {str(e)[:160]}" if str(e) else type(e).__name__
            log.error("no token for %s: cannot reach the Gemini API (%s)", device, why,
                      extra=logs.fields(event="mint", device=device, result="unreachable"))
            raise _Answer(503, "the key service cannot reach the Gemini API") from None
        logs.register_secret(str(token.name), lifetime=t.expire_minutes * 60 + 60)
        log.info("token for %s (%d uses, %g min, new sessions for %g min)", device, t.uses, t.expire_minutes,
                 t.new_session_minutes, extra=logs.fields(event="mint", device=device, result="ok",
                                                          latency_ms=round((time.monotonic() - started) * 1000)))
        return {"token": token.name, "expires_in": t.expire_minutes * 60,
                "new_session_expires_in": t.new_session_minutes * 60, "uses": t.uses, "model": t.model}

    # -- HTTP ------------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            status, doc, headers = 200, await self._route(scope), []
        except _Answer as a:
            status, doc, headers = a.status, {"error": a.message}, a.headers
        body = json.dumps(doc).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"), *headers]})
        await send({"type": "http.response.body", "body": body})

    async def _route(self, scope: Scope) -> dict:
        method, path = scope["method"], scope["path"]
        if path == "/health" and method == "GET":
            return {"ok": True, "devices": len(self.book)}
        if path != "/token":
            raise _Answer(404, "not found: POST /token")
        if method != "POST":
            raise _Answer(405, "use POST /token")
        auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        secret = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        device = self.book.get(devices.digest(secret)) if secret else None
        if device is None:
            peer = (scope.get("client") or ("?",))[0]
            log.warning("refused a token request from %s: unknown device secret", peer,
                        extra=logs.fields(event="mint", result="unknown device"))
            raise _Answer(401, "this device secret is not known here (revoked, or never added)")
        wait = self.limit.take(device)
        if wait:
            log.warning("refused a token for %s: rate limit (%d at once, %g an hour)", device,
                        self.settings.rate_limit.burst, self.settings.rate_limit.per_hour,
                        extra=logs.fields(event="mint", device=device, result="rate limited"))
            raise _Answer(429, f"rate limit for device {device}: try again in {wait:.0f} s",
                          [(b"retry-after", str(int(wait) + 1).encode())])
        return await self.mint(device)


class _Answer(Exception):
    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or []


async def serve(settings: KeyServiceSettings) -> None:
    """Run until SIGTERM/SIGINT; READY=1 once listening."""
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("the key service needs its extra: pip install 'pivoice[tokens]' (scripts/"
                          "install-token-service.sh installs it)") from None

    key = find_api_key(settings.service.api_key_file)
    logs.register_secret(key.value)
    service = KeyService(settings, key)
    await asyncio.to_thread(service.client)  # google-genai imported before READY: the first mint is quick
    s = settings.service
    if s.tls_cert_file:
        try:  # checked here: uvicorn would fail with a traceback from its task
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(s.tls_cert_file, s.tls_key_file)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"cannot use the TLS certificate {s.tls_cert_file} with the key {s.tls_key_file} "
                              f"({getattr(e, 'strerror', None) or e}): service.tls_cert_file and "
                              f"service.tls_key_file must name a PEM certificate and its private key, "
                              f"readable by the service") from None
    config = uvicorn.Config(service, host=s.listen, port=s.port, ssl_certfile=s.tls_cert_file or None,
                            ssl_keyfile=s.tls_key_file or None, lifespan="off", access_log=False,
                            log_config=None, server_header=False, timeout_graceful_shutdown=3)

    class Server(uvicorn.Server):
        def capture_signals(self):  # signals are the event loop's (below): uvicorn would re-raise them
            return nullcontext()

    server = Server(config)
    try:  # bound here, so that a port in use is one clear line (uvicorn would exit from its task)
        sock = socket.create_server((s.listen, s.port), family=socket.AF_INET6 if ":" in s.listen else socket.AF_INET)
    except OSError as e:
        raise UnavailableError(f"the key service cannot listen on {s.listen}:{s.port}: {e.strerror or e}"
                               f" (service.listen, service.port)") from None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    notifier = Notifier()

    def reload() -> None:
        notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        service.reload()
        notifier.send("READY=1", f"STATUS=serving {len(service.book)} device(s)")

    loop.add_signal_handler(signal.SIGHUP, reload)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="http")
    while not server.started and not task.done():
        await asyncio.sleep(0.02)
    if task.done():  # it could not start: its own error is above
        await task
        raise UnavailableError(f"the key service could not start on {s.listen}:{s.port}")
    scheme = "https" if s.tls_cert_file else "http"
    log.info("key service ready on %s://%s:%d/token for %d device(s); tokens for model '%s'", scheme, s.listen,
             s.port, len(service.book), settings.tokens.model or "(not locked)", extra=logs.fields(event="ready"))
    notifier.send("READY=1", f"STATUS=serving {len(service.book)} device(s)")
    await task
    notifier.send("STOPPING=1")
