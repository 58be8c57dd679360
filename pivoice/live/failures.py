"""Why a Live API session failed, in words, and what retrying can do about it.

The Live API reports most refusals as a WebSocket close (google-genai raises `APIError` with the close
code in `code` and the reason in `details`), and it uses the same codes for unrelated things: 1008 for a
rejected key, for "Operation is not implemented, or supported, or enabled" and for policy reasons; 1007
for a rejected key and for "Request contains an invalid argument." So the code alone says little: the
reason text decides. Only a reason that says the key is invalid (or HTTP 401/403) is a key problem.

Also here: what a server message that google-genai could not read was (`unreadable`).
"""

from __future__ import annotations

import os
import random
import re
import socket
import ssl

from ..config import LiveSettings

MAX_MESSAGE_BYTES = 2**20  # the largest message the client accepts (websockets' max_size)
FIX_KEY = "fix the key, then: systemctl restart pivoice"

_QUOTA_HINTS = ("quota", "rate limit", "resource_exhausted", "resource exhausted", "too many")
# Reasons that say the key itself is refused (invalid, expired, not allowed, missing).
_KEY_HINTS = ("api key", "api_key", "unauthenticated", "permission denied", "permission_denied",
              "does not have permission", "credential")
# Reasons that say the model does not exist for this key, or cannot do the Live API.
_MODEL_HINTS = ("not found", "not_found", "not supported for bidigeneratecontent")


class SessionError(Exception):
    """The session could not be opened or broke; the message says why and what to do.

    kind: "auth" (the key was rejected: retrying will not help), "keyservice" (no token from the key
    service: unreachable or failing), "device" (the key service refused this speaker's device secret),
    "token" (the Live API refused a token the key service minted), "model" (live.model is unknown or
    cannot do the Live API), "refused" (the service refused the setup or the request: invalid argument,
    not supported, policy), "quota" (rate limit), "server" (1011: the service's trouble), "network"
    (unreachable, DNS, TLS), "timeout" or "closed".
    """

    def __init__(self, message: str, kind: str = "closed", retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Trying again later can help (after a wait)."""
        return self.kind != "auth"

    @property
    def resumable(self) -> bool:
        """The conversation may go on at once on a new connection (a drop, not a refusal)."""
        return self.kind in ("server", "network", "timeout", "closed")

    def retry_wait(self, failures: int, longest: float) -> float:
        """Seconds before trying again after `failures` failed conversations in a row: doubling, with
        jitter, up to `longest` (live.retry_max_seconds); at once the longest for a model that is not
        there (a wrong name stays wrong); at least what the service asked for."""
        wait = min(longest, 2.0 ** failures) * random.uniform(0.8, 1.2)
        if self.kind == "model":
            wait = longest
        return max(wait, self.retry_after or 0.0)

    def problem(self, model: str) -> str:
        """What is wrong, in a few words (for STATUS= and a refused wake word)."""
        return {
            "auth": "API key rejected",
            "keyservice": "cannot get a token from the key service",
            "device": "the key service refused this speaker (device secret revoked?)",
            "token": "the Gemini API refused the key service's token",
            "model": f"live.model '{model}' is not available",
            "refused": "the Gemini API refused the session",
            "quota": "quota or rate limit reached",
            "network": "cannot reach the Gemini API",
            "timeout": "the Gemini API does not answer",
            "server": "the Gemini API has a problem",
        }.get(self.kind, "the connection to the Gemini API failed")


def classify(e: BaseException, settings: LiveSettings, token: bool = False) -> SessionError:
    """A failure as one line saying what happened and what to do, with whether retrying can help.
    `token`: the connection used an ephemeral token (live.token_url), not an API key."""
    from google.genai import errors as genai_errors
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    where = settings.base_url or "the Gemini Live API"
    if isinstance(e, SessionError):
        return e
    if (too_big := _too_big(e)) is not None:
        return SessionError(f"the Live API sent a message larger than the client accepts "
                            f"({too_big / 2**20:g} MiB)", "closed")
    if isinstance(e, TimeoutError):
        return SessionError(f"{where} did not answer within {settings.connect_timeout_seconds:g} s "
                            f"(live.connect_timeout_seconds)", "timeout")
    if isinstance(e, genai_errors.APIError):
        details = (e.details if isinstance(e.details, str) else e.message) or ""
        return _refusal(e.code, details, settings, token)
    if isinstance(e, InvalidStatus):
        status = e.response.status_code
        if status in (401, 403) and token:
            return SessionError(f"{where} refused the connection with HTTP {status}: the token from the key "
                                f"service was rejected", "token")
        if status in (401, 403):
            return SessionError(f"{where} refused the connection with HTTP {status}: the API key was "
                                f"rejected", "auth")
        if status == 429:
            return SessionError(f"{where} answered HTTP 429: rate limited", "quota",
                                _retry_after(e.response.headers.get("Retry-After", "")))
        return SessionError(f"{where} refused the connection with HTTP {status}", "server")
    if isinstance(e, ssl.SSLCertVerificationError):
        return SessionError(f"the TLS certificate of {where} could not be verified ({e.verify_message}); "
                            f"check the clock (timedatectl) and the CA certificates", "network")
    if isinstance(e, socket.gaierror):
        return SessionError(f"cannot resolve the Live API's host name ({e.strerror}); is the network up?", "network")
    if isinstance(e, ConnectionClosed):
        return SessionError(f"the connection to {where} closed ({e})", "closed")
    if isinstance(e, OSError):
        return SessionError(f"cannot reach {where} ({e.strerror or e}); is the network up?", "network")
    return SessionError(f"{type(e).__name__}: {e}", "closed")


def _refusal(code, details: str, settings: LiveSettings, token: bool = False) -> SessionError:
    """A close code (or an HTTP status the SDK wrapped) and its reason."""
    low = details.lower()
    said = f"{code}: {details or 'no reason given'}"
    if (any(h in low for h in _QUOTA_HINTS) and "used too many" not in low) or code == 429:
        return SessionError(f"the Live API's quota or rate limit was reached ({said}); waiting before "
                            f"trying again", "quota", _retry_after(details))
    if token and (code in (401, 403) or any(h in low for h in (*_KEY_HINTS, "token"))):
        # Expired, used up, not minted for this model or setup: the token, not this speaker, is refused.
        return SessionError(f"the Live API refused the token from the key service ({said})", "token")
    if code in (401, 403) or any(h in low for h in _KEY_HINTS):
        return SessionError(f"the Live API rejected the API key ({said})", "auth")
    if any(h in low for h in _MODEL_HINTS):
        return SessionError(f"live.model '{settings.model}' is not available for the Live API ({said}); set "
                            f"live.model to a Live API model, then: systemctl restart pivoice", "model")
    if code in (1007, 1008):
        if "location" in low:
            advice = "the Gemini API is not offered where this device is"
        elif "invalid argument" in low:
            advice = "if it keeps refusing, check live.voice, live.system_instruction and the [vad] settings"
        else:
            advice = (f"if it keeps refusing, check that live.model '{settings.model}' supports the Live API "
                      f"and the setup asked for (live.voice, [vad])")
        return SessionError(f"the Live API refused the session ({said}); {advice}", "refused")
    if code == 1011:
        return SessionError(f"the Live API had an internal error or is overloaded ({said})", "server")
    if code == 1000:
        return SessionError("the Live API closed the connection", "closed")
    return SessionError(f"the Live API closed the connection ({said})", "closed")


def unreadable(e: ValueError | TypeError) -> str:
    """What a message the SDK could not read was.

    google-genai 3.x raises ValueError for a frame that is not JSON, and a TypeError from its error
    path for JSON it has no field for (an unknown top-level field, or an {"error": ...} frame). The
    TypeError's text says nothing about the message; the message itself is still in the SDK's frame
    (its local `response`), so it is read from the traceback to say what was skipped."""
    if isinstance(e, ValueError):
        return f"it is not JSON ({str(e)[:120]})"
    frame_json = None
    tb = e.__traceback__
    while tb is not None:
        if f"{os.sep}google{os.sep}genai{os.sep}" in tb.tb_frame.f_code.co_filename:
            value = tb.tb_frame.f_locals.get("response")
            if isinstance(value, dict):
                frame_json = value
        tb = tb.tb_next
    if frame_json is None:
        return f"google-genai could not read it ({type(e).__name__}: {str(e)[:120]})"
    error = frame_json.get("error")
    if isinstance(error, dict):
        return (f"an error message ({error.get('code', 'no code')}: "
                f"{str(error.get('message') or error.get('status') or 'no reason given')[:200]})")
    names = ", ".join(f"'{k}'" for k in list(frame_json)[:5]) or "none"
    return f"google-genai does not know its top-level field(s) {names}"


def _too_big(e: BaseException | None) -> int | None:
    """The client's size limit, when `e` comes from a message over it.

    websockets refuses such a frame by closing with 1009 itself; the SDK then reports a close it did
    not receive as 1006 "abnormal closure", with websockets' exception as the context."""
    from websockets.exceptions import ConnectionClosed, PayloadTooBig

    closed_1009 = False
    for _ in range(5):  # the chain: APIError <- ConnectionClosedError <- PayloadTooBig
        if e is None:
            break
        if isinstance(e, PayloadTooBig):
            return e.max_size or MAX_MESSAGE_BYTES
        closed_1009 |= isinstance(e, ConnectionClosed) and e.sent is not None and e.sent.code == 1009
        e = e.__cause__ or e.__context__
    return MAX_MESSAGE_BYTES if closed_1009 else None


def _retry_after(text: str) -> float | None:
    """A wait the service asked for: "Retry-After: 30", "retry in 12s", "retryDelay": "7s"."""
    text = text or ""
    if text.strip().isdigit():
        return float(text.strip())
    m = re.search(r"retry\w*\W+(?:in\W+)?(\d+(?:\.\d+)?)\s*s", text, re.IGNORECASE)
    return float(m.group(1)) if m else None
