"""Ephemeral tokens (issue 16): the key service, a speaker that holds no API key, and the stand-in's token
checks. Everything real: `pivoice token-service` and `pivoice run` as processes, google-genai minting
against the stand-in's REST side and connecting to its constrained Live method."""

from __future__ import annotations

import asyncio
import datetime
import signal
import time
from pathlib import Path

import pytest
from harness import TEST_KEY, read_wav, silence
from keyservice import KeyService
from test_resilience import start_conversation, utterance

from pivoice.configfile import parse
from pivoice.live.failures import SessionError, classify
from pivoice.live.setup import connect_config, make_client

CONFIG = """
[audio]
input_device = "pv_mic"
output_device = "spk_file"
[conversation]
follow_up_seconds = {follow_up}
[live]
token_url = "{url}"
token_ca_file = "{ca}"
device_secret_file = "{secret}"
retry_max_seconds = 2.0
response_timeout_seconds = 2.0
[log]
level = "debug"
"""


@pytest.fixture
def keys(tmp_path, standin, home):
    standin.behaviour.valid_key = TEST_KEY  # only the key service holds it
    made: list[KeyService] = []

    def start(extra: str = "", devices: tuple[str, ...] = ("kitchen",)) -> tuple[KeyService, dict[str, str]]:
        ks = KeyService(tmp_path, standin, home, extra)
        secrets = {name: ks.add(name) for name in devices}
        made.append(ks.start())
        return ks, secrets

    yield start
    for ks in made:
        ks.stop()
        if ks.proc is not None:
            print(f"--- the key service's log ---\n{ks.proc.output}")
            assert TEST_KEY not in ks.proc.output


def speaker_config(tmp_path: Path, ks: KeyService, secret: str, follow_up: float = 3.0) -> str:
    path = tmp_path / "device-secret"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return CONFIG.format(url=ks.url, ca=ks.ca_file, secret=path, follow_up=follow_up)


def test_a_speaker_with_only_a_device_secret_converses_across_a_go_away(tmp_path, soundcard, standin, keys,
                                                                        run_daemon):
    b = standin.behaviour
    b.handles = True
    b.reply_after_seconds = 2.5
    b.reply_pcm = read_wav("reply_24k.wav")
    b.reply_pace = 0.15
    b.go_away_after_bytes = int(3.0 * 32000)  # mid-answer: the conversation goes on on a new connection
    b.go_away_time_left = 8.0
    b.max_replies_in_all = 1
    ks, secrets = keys('[tokens]\nsystem_instruction = "Locked by the household."\n')
    d = run_daemon(speaker_config(tmp_path, ks, secrets["kitchen"], follow_up=4.0), key=None,
                   extra_env=standin.env())
    d.wait_for("ready: listening")
    ks.proc.wait_for("token for kitchen")  # the token in hand, fetched after READY=1
    start_conversation(d, soundcard, extra=silence(1.0) + utterance(5.0) + silence(1.0))
    d.wait_for("conversation resumed on a new connection", timeout=30)
    d.wait_for("answer played: listening for a follow-up", timeout=20)
    first, second = standin.sessions[:2]
    # Both connections used a token on the constrained method; the resumption went on with the same one
    # (20 uses, 30 min), and the token's locked instruction replaced the speaker's.
    for s in (first, second):
        assert s.path.endswith(".BidiGenerateContentConstrained") and s.token, s.path
        assert TEST_KEY not in str(s.headers)
        assert s.setup["systemInstruction"]["parts"][0]["text"] == "Locked by the household."
    assert second.token == first.token and second.handle_in == first.handles_out[-1]
    assert standin.tokens[first.token].connections == 2
    # The speaker never held the API key: not in its environment, command line, config or log.
    pid = d.proc.pid
    for what in ("environ", "cmdline"):
        assert TEST_KEY.encode() not in Path(f"/proc/{pid}/{what}").read_bytes(), what
    assert TEST_KEY not in (tmp_path / "pivoice.toml").read_text()
    assert TEST_KEY not in d.output
    # Nor does a token or the device secret reach its log.
    assert first.token not in d.output and secrets["kitchen"] not in d.output
    assert first.token not in ks.proc.output and secrets["kitchen"] not in ks.proc.output
    d.stop()


def test_a_revoked_speaker_says_so_without_a_retry_storm_and_recovers_on_reload(tmp_path, soundcard, standin, keys,
                                                                               run_daemon):
    b = standin.behaviour
    b.reply_after_seconds = 1.0
    b.reply_pcm = read_wav("reply_24k.wav")[:24000]
    # Tokens that may start sessions for 6 s: the speaker renews the one in hand every ~5 s.
    ks, secrets = keys("[tokens]\nnew_session_minutes = 0.1\n[rate_limit]\nburst = 100\n", devices=("kitchen", "hall"))
    d = run_daemon(speaker_config(tmp_path, ks, secrets["kitchen"], follow_up=1.0), key=None,
                   extra_env=standin.env())

    def converse() -> str:
        """Say the wake word and a question; the log line that ends it (an answer, or the failure)."""
        start = len(d.lines)
        soundcard.say(silence(0.3) + read_wav("hey_jarvis.wav") + silence(0.15) + read_wav("command_time_tokyo.wav"))
        return d.wait_for(r"no follow-up: conversation over|conversation failed", timeout=30, start=start).string

    d.wait_for("ready: listening")
    assert "conversation over" in converse()
    # Revoked: its line removed from the devices file, the key service reloaded.
    devices = ks.dir / "devices"
    removed = next(line for line in devices.read_text().splitlines() if line.startswith("kitchen "))
    devices.write_text(devices.read_text().replace(removed + "\n", ""))
    ks.proc.proc.send_signal(signal.SIGHUP)
    ks.proc.wait_for("reloaded: 1 device.*revoked: kitchen")
    # The token in hand was minted before: it starts sessions until its window closes (revoking stops new
    # tokens; one already given cannot be taken back). Its renewal is refused, and said once.
    revoked_at = len(d.lines)
    d.wait_for("no token in hand: the key service refused this speaker's device secret", timeout=15,
               start=revoked_at)
    ended = converse()
    assert "conversation failed: the key service refused this speaker's device secret" in ended, ended
    assert " ERROR " in f" {ended}" and "revoked" in ended and "add-device" in ended, ended
    # No retry storm: over the next seconds the speaker asks only now and then, and says why once.
    time.sleep(6)
    asked = ks.proc.count("unknown device secret")
    assert 1 <= asked <= 8, ks.proc.output  # (a storm: one per frame or per second)
    assert d.count("no token in hand: the key service refused") == 1
    assert d.count("conversation failed") == 1
    # Restored and reloaded on the key service: the next wake word is answered, no restart of the speaker.
    devices.write_text(devices.read_text() + removed + "\n")
    ks.proc.proc.send_signal(signal.SIGHUP)
    ks.proc.wait_for("reloaded: 2 device")
    d.wait_for("ready to try the Gemini API again", start=revoked_at, timeout=10)
    assert "conversation over" in converse()
    assert d.proc.poll() is None
    d.stop()


def test_the_rate_limit_holds_for_one_device_while_another_gets_tokens(keys, standin):
    ks, secrets = keys("[rate_limit]\nburst = 4\nper_hour = 60\n", devices=("kitchen", "hall"))
    burst = [ks.request(secrets["kitchen"]) for _ in range(10)]
    assert [s for s, _, _ in burst] == [200] * 4 + [429] * 6
    _, body, headers = burst[-1]
    assert "rate limit for device kitchen" in body["error"] and int(headers["retry-after"]) >= 50
    assert ks.request(secrets["hall"])[0] == 200  # another speaker is not held up
    assert ks.request("not-a-secret")[0] == 401
    # One journal line per request, with the device's name; never a secret or a token.
    ks.proc.wait_for("unknown device secret")
    assert ks.proc.count(r"token for kitchen .*event=mint device=kitchen result=ok") == 4
    assert ks.proc.count(r"refused a token for kitchen: rate limit") >= 1  # (repeats: rate-limited in the log)
    assert ks.proc.count(r"token for hall .*result=ok") == 1
    minted = [body["token"] for s, body, _ in burst if s == 200]
    assert len(standin.tokens) == 5 and all(t not in ks.proc.output for t in minted)
    assert all(s not in ks.proc.output for s in secrets.values())


def test_tokens_the_api_refuses_are_retried_once_then_reported(tmp_path, soundcard, standin, keys, run_daemon):
    ks, secrets = keys()
    d = run_daemon(speaker_config(tmp_path, ks, secrets["kitchen"]), key=None, extra_env=standin.env())
    ks.proc.wait_for("token for kitchen")
    standin.behaviour.forget_tokens = True  # e.g. the key service's API key was replaced: its tokens are void
    start_conversation(d, soundcard)
    d.wait_for("refused the token from the key service .*: trying once more with a new token")
    line = d.wait_for("conversation failed: the Live API refused the token from the key service").string
    assert "Auth token is invalid" in line and "trying again in" in line, line
    assert len(standin.sessions) == 2  # the token in hand, then a fresh one: no more
    assert standin.sessions[0].token != standin.sessions[1].token
    d.stop()


def _mint(standin, uses: int = 5, expires: float = 600, new_sessions: float = 60) -> str:
    now = datetime.datetime.now(tz=datetime.UTC)
    return standin.mint({"uses": uses, "expireTime": (now + datetime.timedelta(seconds=expires)).isoformat(),
                         "newSessionExpireTime": (now + datetime.timedelta(seconds=new_sessions)).isoformat()})


@pytest.mark.parametrize("case", ["not minted", "expired", "used up", "past its new-session window"])
def test_the_stand_in_refuses_tokens_as_the_api_does_and_pivoice_says_which(standin, monkeypatch, case):
    settings = parse({"live": {"base_url": standin.base_url}}, "test")
    monkeypatch.setenv("SSL_CERT_FILE", str(standin.ca_file))
    token = {"not minted": lambda: "auth_tokens/0123456789abcdef",
             "expired": lambda: _mint(standin, expires=0.5, new_sessions=0.5),
             "used up": lambda: _mint(standin, uses=1),
             "past its new-session window": lambda: _mint(standin, new_sessions=0.5)}[case]()

    async def connect():
        client = make_client(token, settings.live, api_version="v1alpha")
        cm = client.aio.live.connect(model=settings.live.model, config=connect_config(settings.live, settings.vad))
        await cm.__aenter__()
        await cm.__aexit__(None, None, None)

    if case == "used up":
        asyncio.run(connect())  # its one use
    time.sleep(1.0 if case in ("expired", "past its new-session window") else 0)
    with pytest.raises(Exception) as e:
        asyncio.run(connect())
    failure = classify(e.value, settings.live, token=True)
    expected = {"not minted": "not issued by this service", "expired": "has expired",
                "used up": "used too many times", "past its new-session window": "can no longer start new sessions"}
    assert failure.kind == "token", failure
    assert str(failure).startswith("the Live API refused the token from the key service (1008: Auth token")
    assert expected[case] in str(failure)
    assert token not in str(failure)
    assert failure.problem("m") == "the Gemini API refused the key service's token"


def test_a_resumption_takes_a_fresh_token_when_the_conversations_cannot_cover_it(keys, standin, home):
    """uses = 2: a start and one resumption on the first token; the next resumption on a fresh one. And
    an unreachable key service is named as such."""
    from pivoice.credentials import DeviceSecret
    from pivoice.live.tokens import TokenClients

    ks, secrets = keys("[tokens]\nuses = 2\n")
    settings = parse({"live": {"token_url": ks.url, "token_ca_file": str(ks.ca_file)}}, "test").live

    async def run():
        clients = TokenClients(settings, DeviceSecret(secrets["kitchen"], "test"))
        clients.prepare()
        try:
            _, first = await clients.client(None)  # no spare yet: fetched now
            _, again = await clients.client(first)  # a resumption: its second use
            _, fresh = await clients.client(first)  # no use left: a new token
            assert again is first and fresh is not first and fresh.uses_left == 1
            first.expires = time.monotonic() + 10  # about to expire: a resumption does not start on it
            fresh.expires = time.monotonic() + 10
            _, later = await clients.client(fresh)
            assert later is not fresh
            clients.discard(later)  # the Live API refused it: the next conversation does not start on it
            _, after = await clients.client(None)
            assert after is not later
        finally:
            clients.close()
        away = parse({"live": {"token_url": "https://127.0.0.1:9/token"}}, "test").live
        with pytest.raises(SessionError) as e:
            await TokenClients(away, DeviceSecret("x", "test")).client(None)
        return e.value

    failure = asyncio.run(run())
    assert failure.kind == "keyservice" and "cannot reach the key service at https://127.0.0.1:9/token" in str(failure)
    assert ks.proc.count("token for kitchen") >= 3


def test_check_online_gets_a_token_and_opens_a_session(tmp_path, standin, keys, run_daemon):
    ks, secrets = keys()
    (tmp_path / "mic.raw").write_bytes(b"\0" * 3200)
    d = run_daemon(speaker_config(tmp_path, ks, secrets["kitchen"]).replace('"pv_mic"', '"mic_file"'), key=None,
                   extra_env=standin.env(), args=["check", "--online"])
    assert d.wait_exit() == 0, d.output
    assert "OK online: the key service gave a token (20 uses); the Live API opened a session" in d.output
    assert standin.sessions[-1].path.endswith("Constrained")


def test_a_redirect_is_refused_and_the_secret_goes_nowhere_else(tmp_path):
    """urllib would follow a redirect with the Authorization header: a proxy that redirects would leak it."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from pivoice.credentials import DeviceSecret
    from pivoice.live.tokens import fetch

    seen: list[str] = []

    class Redirects(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(f"{self.path} {self.headers.get('Authorization')}")
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/elsewhere")
            self.end_headers()

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Redirects)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(SessionError) as e:
            fetch(f"http://127.0.0.1:{server.server_address[1]}/token", DeviceSecret("s3cret-value", "test"))
    finally:
        server.shutdown()
    assert e.value.kind == "keyservice" and "answered with a redirect (HTTP 302)" in str(e.value)
    assert seen == ["/token Bearer s3cret-value"]  # not sent on to /elsewhere


def test_an_unusable_ca_file_is_a_config_error_at_start(tmp_path, run_daemon):
    (tmp_path / "not-a-ca.pem").write_text("hello\n")
    (tmp_path / "secret").write_text("abc\n")
    d = run_daemon(f'[live]\ntoken_url = "https://keys.example:8443/token"\ntoken_ca_file = "{tmp_path / "not-a-ca.pem"}"\n'
                   f'device_secret_file = "{tmp_path / "secret"}"\n', key=None, args=["check"])
    assert d.wait_exit() == 78, d.output
    assert f"live.token_ca_file {tmp_path / 'not-a-ca.pem'} cannot be used" in d.output
    assert "Traceback" not in d.output


def test_the_key_service_says_when_it_cannot_reach_the_gemini_api(tmp_path, standin, home):
    from types import SimpleNamespace

    unreachable = SimpleNamespace(rest_url="https://127.0.0.1:9", ca_file=standin.ca_file)
    ks = KeyService(tmp_path, unreachable, home)
    secret = ks.add("kitchen")
    ks.start()
    try:
        status, body, _ = ks.request(secret)
    finally:
        ks.stop()
    assert status == 503 and body == {"error": "the key service cannot reach the Gemini API"}
    assert ks.proc.count("no token for kitchen: cannot reach the Gemini API") == 1, ks.proc.output
    assert "Traceback" not in ks.proc.output


def test_a_token_refused_at_the_handshake_is_the_tokens_fault_not_a_key(standin):
    from websockets.datastructures import Headers
    from websockets.exceptions import InvalidStatus
    from websockets.http11 import Response

    settings = parse({"live": {"base_url": standin.base_url}}, "test").live
    refused = InvalidStatus(Response(401, "Unauthorized", Headers()))
    assert classify(refused, settings, token=True).kind == "token"
    assert classify(refused, settings).kind == "auth"
