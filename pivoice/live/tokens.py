"""Ephemeral tokens from the household's key service (`live.token_url`), so the speaker holds no API key.

The speaker holds a device secret (a systemd credential or `live.device_secret_file`) and asks the key
service (`pivoice token-service`, pivoice/keyservice/) for a token: short-lived, limited-use, often locked
to one model and setup. google-genai connects with a token to the constrained Live method.

When tokens come from (TokenClients):
- one is fetched right after READY=1 and kept *in hand*: conversations start on it while it may start
  sessions and has uses to spare, and it is renewed in the background a minute before its window for new
  sessions closes (or when its uses run low), so a wake word never waits for the key service, and the key
  service is asked about once per window, not once per conversation;
- a resumption (GoAway, a drop) goes on with the conversation's token while that token can cover it (not
  about to expire, a use left), else with the token in hand or a fresh one;
- only when there is no usable token in hand (the key service was down) is one fetched while the person
  waits.

What failed is said in words: the key service unreachable ("keyservice"), this speaker's device secret
refused, e.g. revoked ("device"), or the Gemini API refusing the token ("token"). The background refresh
backs off after a failure and logs each new reason once, not each try.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import math
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from .. import logs
from ..config import LiveSettings
from ..credentials import DeviceSecret
from ..errors import ConfigError
from .failures import SessionError

log = logging.getLogger("pivoice.live")

REFRESH_MARGIN = 60.0  # s: renew the token in hand this long before its window for new sessions closes
RESERVE_USES = 2  # uses of the token in hand kept for its conversations' resumptions (fewer left: renewed)
COVER_MARGIN = 30.0  # s: a token this close to expiring does not start a resumption
FETCH_TIMEOUT = 10.0  # s: one request to the key service
BACKOFF_MAX = 300.0  # s: the longest wait between background tries after failures

@dataclass
class Token:
    name: str = field(repr=False)  # "auth_tokens/...": a secret
    expires: float  # time.monotonic() after which it is refused
    new_sessions_until: float  # ...after which it starts no new session
    uses_left: int
    uses: int = 0  # as minted
    model: str = ""  # the model it is locked to, if any
    client: object = field(default=None, repr=False, compare=False)  # the genai.Client made with it

    def can_start(self, now: float) -> bool:
        """It may start a conversation at `now`, and keep uses for that conversation's resumptions."""
        reserve = min(RESERVE_USES, max(0, self.uses - 1))
        return now < self.new_sessions_until - 1.0 and self.uses_left > reserve

    def renew_at(self, window: float) -> float:
        """When the keeper replaces it: REFRESH_MARGIN (at most a fifth of its window) before it closes."""
        return self.new_sessions_until - min(REFRESH_MARGIN, window / 5)

    def can_resume(self, now: float) -> bool:
        return now < self.expires - COVER_MARGIN and self.uses_left > 0


def tls_context(ca_file: str) -> ssl.SSLContext:
    """The context that checks the key service's certificate: the system's CAs, or live.token_ca_file's."""
    try:
        return ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"live.token_ca_file {ca_file} cannot be used ({getattr(e, 'strerror', None) or e}): "
                          f"give the PEM file of the CA that signed the key service's certificate") from None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would send the device secret on to wherever it points (urllib copies the header)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise SessionError(f"the key service at {req.full_url} answered with a redirect (HTTP {code}) to "
                           f"{newurl.split('?')[0]}; set live.token_url to the URL that answers", "keyservice")


def fetch(url: str, secret: DeviceSecret, ca_file: str = "", timeout: float = FETCH_TIMEOUT) -> Token:
    """One token from the key service (blocking: call it in a thread). Raises SessionError (a ConfigError
    for a live.token_ca_file that cannot be read)."""
    handlers: list[urllib.request.BaseHandler] = [_NoRedirects()]
    if url.startswith("https:"):
        handlers.append(urllib.request.HTTPSHandler(context=tls_context(ca_file)))
    opener = urllib.request.build_opener(*handlers)
    req = urllib.request.Request(url, data=b"{}", method="POST", headers={
        "Authorization": f"Bearer {secret.value}", "Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with opener.open(req, timeout=timeout) as resp:
            body = json.loads(resp.read(65536))
    except urllib.error.HTTPError as e:
        raise _refused(url, e) from None
    except (urllib.error.URLError, OSError) as e:
        why = getattr(e, "reason", e)
        if isinstance(why, ssl.SSLCertVerificationError):
            raise SessionError(f"the key service at {url} has a TLS certificate this speaker does not trust "
                               f"({why.verify_message}); set live.token_ca_file to its CA", "keyservice") from None
        raise SessionError(f"cannot reach the key service at {url} ({getattr(why, 'strerror', None) or why})",
                           "keyservice") from None
    except http.client.HTTPException as e:  # not HTTP at all (a wrong port), or cut off mid-answer
        raise SessionError(f"the key service at {url} did not answer as HTTP ({type(e).__name__}); is "
                           f"live.token_url right?", "keyservice") from None
    except ValueError:
        raise SessionError(f"the key service at {url} did not answer with JSON", "keyservice") from None
    try:
        name = str(body["token"])
        lasts, window, uses = float(body["expires_in"]), float(body["new_session_expires_in"]), int(body["uses"])
        if not (0 < window <= lasts < math.inf and uses > 0 and name.startswith("auth_tokens/")):
            raise ValueError("not a usable token")
        token = Token(name, started + lasts, started + window, uses, uses, str(body.get("model") or ""))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise SessionError(f"the key service at {url} answered without a usable token", "keyservice") from None
    logs.register_secret(name, lifetime=lasts + 60)
    return token


def _refused(url: str, e: urllib.error.HTTPError) -> SessionError:
    try:
        said = str(json.loads(e.read(4096)).get("error", ""))[:200]
    except (ValueError, AttributeError, OSError):
        said = ""
    said = f": {said}" if said else ""
    if e.code in (401, 403):
        return SessionError(f"the key service refused this speaker's device secret (HTTP {e.code}{said}); it was "
                            f"revoked or is wrong: add the device again on the key service "
                            f"(pivoice token-service add-device) and install the new secret", "device")
    if e.code == 429:
        wait = e.headers.get("Retry-After", "")
        return SessionError(f"the key service's rate limit for this speaker was reached (HTTP 429{said})", "quota",
                            float(wait) if wait.isdigit() else None)
    return SessionError(f"the key service at {url} could not give a token (HTTP {e.code}{said})", "keyservice")


class TokenClients:
    """Live API clients made from tokens: what a LiveSession connects with when live.token_url is set.

    One token is *in hand*: every conversation starts on it while it may start sessions and has uses to
    spare, so the key service (and the Gemini API behind it) is asked about once per window, not once per
    conversation. The keeper renews it before its window closes or its uses run low."""

    def __init__(self, settings: LiveSettings, secret: DeviceSecret):
        self._settings = settings
        self.secret = secret
        self._in_hand: Token | None = None  # the token in hand, its client made
        self._window = 0.0  # its window for new sessions, in seconds (for when to renew it)
        self._task: asyncio.Task | None = None
        self._failure: SessionError | None = None  # the last background failure (logged once per reason)
        self._wake = asyncio.Event()  # the keeper: renew now
        self._warned_model = False
        self._loading: asyncio.Future | None = None  # google-genai imported, its Live models built

    async def _genai_loaded(self) -> None:
        """google-genai imported and the Live session's models built (setup.load_genai; once, in a worker
        thread), before any client is made or connection set up, so that no model is built in two threads
        at once. A conversation cancelled while waiting does not cancel the load."""
        if self._loading is None:
            from .setup import load_genai

            self._loading = asyncio.ensure_future(asyncio.to_thread(load_genai))
        await asyncio.shield(self._loading)

    # -- the background keeper ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Start keeping a token in hand (after READY=1; google-genai is imported with the first one)."""
        if self._task is None:
            self._task = asyncio.create_task(self._keep_in_hand(), name="tokens")

    def reload(self, secret: DeviceSecret) -> None:
        """A new device secret (or the key service was fixed): fetch a token now, not after the backoff."""
        self.secret = secret
        self._in_hand = None
        self._wake.set()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _keep_in_hand(self) -> None:
        await self._genai_loaded()  # now, not with the first token (which may come mid-answer)
        failures = 0
        while True:
            self._wake.clear()  # (a reload while fetching below wakes the next wait at once)
            wait = 0.0
            held, now = self._in_hand, time.monotonic()
            if held is not None and held.can_start(now) and now < (renew_at := held.renew_at(self._window)):
                wait = renew_at - now
            else:
                try:
                    await self._fetch()
                    failures = 0
                    if self._failure is not None:
                        log.info("the key service gives tokens again", extra=logs.fields(event="token"))
                    self._failure = None
                    continue
                except Exception as e:  # noqa: BLE001 - the keeper must live on: said once, tried again later
                    failures += 1
                    failure = e if isinstance(e, SessionError) else SessionError(
                        getattr(e, "message", None) or f"{type(e).__name__}: {e}", "keyservice")
                    if self._failure is None or str(failure) != str(self._failure):
                        log.warning("no token in hand: %s", failure, extra=logs.fields(event="token"))
                    self._failure = failure
                    wait = min(BACKOFF_MAX, 2.0 ** failures)
            try:
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.0))
            except TimeoutError:
                pass

    async def _fetch(self) -> Token:
        """A new token in hand, its client made: both in a worker thread (a genai.Client costs tens of ms,
        made in advance it is not on the wake word's path)."""
        s = self._settings

        def fetch_and_make() -> Token:
            from .setup import make_client

            token = fetch(s.token_url, self.secret, s.token_ca_file)
            token.client = make_client(token.name, s, api_version="v1alpha")
            return token

        try:
            token = await asyncio.to_thread(fetch_and_make)
        except SessionError:
            raise
        except Exception as e:  # noqa: BLE001 - a conversation must end with a reason, never hang on a bug
            raise SessionError(getattr(e, "message", None) or f"{type(e).__name__}: {e}", "keyservice") from None
        self._in_hand, self._window = token, token.new_sessions_until - time.monotonic()
        return token

    def discard(self, token: Token) -> None:
        """The Live API refused `token`: not to be used again; the keeper fetches another now."""
        token.uses_left = 0
        if token is self._in_hand:
            self._in_hand = None
            self._wake.set()

    # -- what a session asks for --------------------------------------------------------------------
    async def client(self, token: Token | None) -> tuple[object, Token]:
        """A client for the next connection and the token it uses: `token` (the conversation's, for a
        resumption) while it can cover one, else the token in hand, else one fetched now."""
        await self._genai_loaded()
        now = time.monotonic()
        if token is None or not token.can_resume(now):
            held = self._in_hand
            token = held if held is not None and held.can_start(now) else await self._fetch()
        token.uses_left -= 1
        if token is self._in_hand and not token.can_start(now):
            self._wake.set()  # its uses run low: renew it now
        if token.model and token.model.removeprefix("models/") != self._settings.model and not self._warned_model:
            self._warned_model = True
            log.warning("the key service locks tokens to model '%s', not live.model '%s': the Live API uses '%s'",
                        token.model, self._settings.model, token.model, extra=logs.fields(event="token"))
        return token.client, token
