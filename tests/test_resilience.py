"""Long conversations and bad networks, against a fault-injecting Live stand-in."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

from harness import TEST_KEY, decode_flac, read_wav, silence

CONFIG = """
[audio]
input_device = "pv_mic"
output_device = "{speaker}"
[conversation]
follow_up_seconds = {follow_up}
resume_context_seconds = {resume}
[live]
connect_timeout_seconds = {connect_timeout}
response_timeout_seconds = 2.0
[log]
level = "debug"
"""


def config(speaker="spk_file", follow_up=3.0, resume=300.0, connect_timeout=10.0, extra=""):
    text = CONFIG.format(speaker=speaker, follow_up=follow_up, resume=resume, connect_timeout=connect_timeout)
    return text.replace("[live]\n", "[live]\n" + extra)  # extra: more [live] keys


def utterance(seconds: float) -> bytes:
    """Continuous speech (from the unrelated-speech clip) to say across a connection switch."""
    pcm = decode_flac("unrelated_speech.flac")
    return pcm[32000 : 32000 + int(seconds * 32000)]


def repeated(first: bytes, second: bytes, said: bytes) -> float | None:
    """Seconds of `said` that arrived on both connections, or None if some of it arrived on neither."""
    lo, hi, step = 0, len(said) // 640, 640
    while lo < hi:  # the longest prefix (in 20 ms steps) the first connection has
        mid = (lo + hi + 1) // 2
        if first.find(said[: mid * step]) >= 0:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return None
    at, split = first.find(said[: lo * step]), lo * step
    while at + split < len(first) and split < len(said) and first[at + split] == said[split]:
        split += 1  # to the exact sample where the first connection's copy ends
    split -= split % 2
    at2 = second.find(said[split:])
    if at2 < 0:
        return None
    start = split  # how far back before the split the second connection's copy reaches
    while start >= 2 and at2 - (split - start) >= 2 and \
            second[at2 - (split - start) - 2 : at2 - (split - start)] == said[start - 2 : start]:
        start -= 2
    return (split - start) / 32000


def start_conversation(d, soundcard, extra: bytes = b""):
    d.wait_for("ready: listening")
    soundcard.say(silence(0.3) + read_wav("hey_jarvis.wav") + silence(0.15) + read_wav("command_time_tokyo.wav") + extra)


def test_go_away_mid_answer_resumes_and_loses_nothing(soundcard, standin, run_daemon):
    reply = read_wav("reply_24k.wav")
    b = standin.behaviour
    b.handles = True
    b.reply_after_seconds = 2.5
    b.reply_pcm = reply
    b.reply_pace = 0.15  # 200 ms of audio every 150 ms: the answer is still coming when GoAway arrives
    b.go_away_after_bytes = int(3.0 * 32000)  # mid-answer
    b.go_away_time_left = 8.0  # room to finish the answer: the switch waits for the turn to end
    b.max_replies_in_all = 1  # one answer: the resumed connection must not start a second over it
    said = utterance(5.0)
    d = run_daemon(config(speaker="pv_spk", follow_up=4.0), extra_env=standin.env())
    start_conversation(d, soundcard, extra=silence(1.0) + said + silence(1.0))
    d.wait_for("GoAway from the Live API", timeout=20)
    d.wait_for("conversation resumed on a new connection", timeout=10)
    standin.wait_for(lambda: len(standin.sessions) == 2 and said[-3200:] in bytes(standin.sessions[1].audio),
                     20, "the rest of the utterance on the new connection")
    first, second = standin.sessions
    # The new connection resumed with the newest handle the old one gave, and only after it closed.
    assert second.handle_in == first.handles_out[-1]
    assert first.closed_at is not None and first.closed_at <= second.opened_at
    # The answer played to its end: all of it was received before the switch. (On a busy machine the
    # speaker may still be playing it when the stand-in has the utterance: wait for the end.)
    d.wait_for("answer played: listening for a follow-up", timeout=20)
    assert d.count("answer played: listening for a follow-up") == 1
    assert "answer interrupted" not in d.output
    # What the user said across the switch arrived whole, split between the two connections, and a
    # GoAway is graceful: none of it was sent twice.
    assert repeated(bytes(first.audio), bytes(second.audio), said) == 0.0
    d.stop()


def test_dropped_connection_resumes_and_loses_nothing(soundcard, standin, run_daemon):
    b = standin.behaviour
    b.handles = True
    b.reply_after_seconds = None
    b.drop_after_bytes = int(3.0 * 32000)
    b.input_transcripts = True  # the server hears speech: the listening window stays open
    said = utterance(4.0)
    d = run_daemon(config(follow_up=6.0), extra_env=standin.env())
    start_conversation(d, soundcard, extra=said + silence(1.0))
    d.wait_for("connection lost .*: resuming the conversation", timeout=20)
    standin.wait_for(lambda: len(standin.sessions) == 2 and bytes(standin.sessions[1].audio).find(said[-32000:]) >= 0,
                     20, "the end of the utterance on the new connection")
    first, second = standin.sessions
    assert second.handle_in == first.handles_out[-1]
    again = repeated(bytes(first.audio), bytes(second.audio), said)
    assert again is not None and again <= 0.6, again  # at most the re-sent half second, give or take
    d.stop()


def test_follow_up_context_across_wake_ups(soundcard, standin, run_daemon):
    b = standin.behaviour
    b.handles = True
    b.reply_after_seconds = 2.5
    b.reply_pcm = read_wav("reply_24k.wav")[:48000]
    b.max_replies = 1
    b.input_transcripts = True  # the person's command keeps the 1 s window open until the answer comes
    d = run_daemon(config(follow_up=1.0, resume=6.0), extra_env=standin.env())
    start_conversation(d, soundcard)
    d.wait_for("no follow-up: conversation over", timeout=20)
    first_handle = standin.sessions[0].handles_out[-1]
    # Soon after: the next wake word continues the conversation.
    soundcard.say(read_wav("hey_jarvis.wav") + silence(0.15) + read_wav("command_paris.wav"))
    standin.wait_for(lambda: len(standin.sessions) == 2 and standin.sessions[1].setup is not None, 10,
                     "a second conversation, set up")
    assert standin.sessions[0].handle_in is None
    assert standin.sessions[1].handle_in == first_handle
    d.wait_for("no follow-up: conversation over", timeout=20, start=len(d.lines) - 1)
    # After resume_context_seconds (6 s): a fresh conversation.
    time.sleep(6.5)
    soundcard.say(read_wav("hey_jarvis.wav") + silence(0.5))
    standin.wait_for(lambda: len(standin.sessions) == 3 and standin.sessions[2].setup is not None, 10,
                     "a third conversation, set up")
    assert standin.sessions[2].handle_in is None
    d.stop()


def test_rejected_key_waits_in_error_without_a_loop_until_reload(soundcard, standin, run_daemon, tmp_path):
    good = "AIzaGOOD-another-distinctive-key-4e1a"
    standin.behaviour.valid_key = good
    standin.behaviour.reply_after_seconds = None
    key_file = tmp_path / "api-key"
    key_file.write_text(TEST_KEY)
    d = run_daemon(config(extra=f'api_key_file = "{key_file}"\n'), key=None, extra_env=standin.env())
    start_conversation(d, soundcard)
    d.wait_for(r"ERROR pivoice.assistant: conversation failed: the Live API rejected the API key \(1008: API key not "
               r"valid.*\); fix the key, then: systemctl restart pivoice", timeout=15)
    # 20 s of wake words (past the first retries of any backoff): answered with the error light, not
    # with connections; one line each.
    t0, said = time.monotonic(), 0
    while time.monotonic() - t0 < 20:
        soundcard.say_and_wait(read_wav("hey_jarvis.wav") + silence(1.5))
        said += 1
    assert len(standin.sessions) <= 2, f"{len(standin.sessions)} connections in 20 s"
    assert d.count("heard you, but cannot answer: API key rejected") == said
    # The key is fixed and pivoice told to reload: the next wake word works.
    key_file.write_text(good + "\n")
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for("credentials reloaded: ready")
    n = len(standin.sessions)
    soundcard.say(read_wav("hey_jarvis.wav") + silence(0.5))
    d.wait_for("session open in", timeout=10)
    assert len(standin.sessions) == n + 1
    assert standin.sessions[-1].headers["x-goog-api-key"] == good
    assert d.stop()[0] == 0
    assert good not in d.output


NOT_IMPLEMENTED = "Operation is not implemented, or supported, or enabled."


def test_mid_session_refusal_is_retried_not_taken_for_a_rejected_key(soundcard, standin, run_daemon):
    """1008 is also the API's code for "not implemented / not supported" and for policy reasons: only a
    reason that says the key is invalid is a key problem. This one is retried after the backoff."""
    b = standin.behaviour
    b.reply_after_seconds = None
    b.handles = True  # a refusal is not resumed at once either
    b.close_after_bytes = int(1.5 * 32000)
    b.close_reason = NOT_IMPLEMENTED
    d = run_daemon(config(), extra_env=standin.env())
    start_conversation(d, soundcard)
    d.wait_for(r"WARNING pivoice.assistant: conversation failed: the Live API refused the session \(1008: "
               r"Operation is not implemented, or supported, or enabled.\); if it keeps refusing, check that "
               r"live.model '.*' supports the Live API.*; trying again in \d+ s", timeout=20)
    d.wait_for("ready to try the Gemini API again", timeout=15)
    assert len(standin.sessions) == 1  # not resumed, and nothing tried during the backoff
    n = len(d.lines)
    soundcard.say(read_wav("hey_jarvis.wav") + silence(0.5))
    d.wait_for("session open in", timeout=10, start=n)
    standin.wait_for(lambda: len(standin.sessions) == 2, 10, "a new connection for the next wake word")
    assert "rejected" not in d.output and "resuming" not in d.output
    assert d.stop()[0] == 0


def test_mid_session_close_saying_the_key_is_invalid_is_a_key_problem(soundcard, standin, run_daemon):
    b = standin.behaviour
    b.reply_after_seconds = None
    b.close_after_bytes = int(1.5 * 32000)
    b.close_code, b.close_reason = 1007, "API key not valid. Please pass a valid API key."
    d = run_daemon(config(), extra_env=standin.env())
    start_conversation(d, soundcard)
    d.wait_for(r"ERROR pivoice.assistant: conversation failed: the Live API rejected the API key \(1007: API key "
               r"not valid.*\); fix the key, then: systemctl restart pivoice", timeout=20)
    for _ in range(3):
        soundcard.say_and_wait(silence(0.5) + read_wav("hey_jarvis.wav") + silence(1.5))
    assert d.count("heard you, but cannot answer: API key rejected") == 3  # one line per wake word
    assert len(standin.sessions) == 1
    assert "reload" not in d.output
    assert d.stop()[0] == 0


def test_unknown_model_is_an_error_naming_live_model_without_quick_retries(soundcard, standin, run_daemon):
    # The stand-in refuses a model it does not serve as the API does (1008 "... is not found ...").
    d = run_daemon(config(extra='model = "gemini-nope"\nretry_max_seconds = 120.0\n'), extra_env=standin.env())
    start_conversation(d, soundcard)
    d.wait_for(r"ERROR pivoice.assistant: conversation failed: live.model 'gemini-nope' is not available for the "
               r"Live API \(1008: models/gemini-nope is not found.*\); set live.model to a Live API model, then: "
               r"systemctl restart pivoice; trying again in 120 s", timeout=20)
    for _ in range(2):
        soundcard.say_and_wait(silence(0.5) + read_wav("hey_jarvis.wav") + silence(1.5))
    assert d.count("heard you, but cannot answer: live.model 'gemini-nope' is not available") == 2
    assert len(standin.sessions) == 1
    assert "live.model 'gemini-nope' is not one pivoice knows" in d.output  # said once, at start
    assert d.stop()[0] == 0


def test_message_over_the_size_limit_is_named(soundcard, standin, run_daemon):
    standin.behaviour.reply_after_seconds = None
    d = run_daemon(config(), extra_env=standin.env())
    start_conversation(d, soundcard)
    d.wait_for("session open in", timeout=20)
    big = {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000",
                                                                     "data": "AAAA" * (2**19)}}]}}}
    standin.send_now([json.dumps(big)])
    # Said as what it is; the conversation goes on, on a new session (no handle came to resume with).
    d.wait_for(r"WARNING pivoice.live: connection lost \(the Live API sent a message larger than the client "
               r"accepts \(1 MiB\)\) before the Live API gave a resumption handle: a new session", timeout=10)
    standin.wait_for(lambda: len(standin.sessions) == 2 and standin.sessions[1].audio, 10, "the new session")
    assert "1006" not in d.output and "conversation failed" not in d.output
    assert d.stop()[0] == 0


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_server_is_a_recoverable_error(soundcard, standin, run_daemon):
    env = {**standin.env(), "GOOGLE_GEMINI_BASE_URL": f"https://127.0.0.1:{_closed_port()}"}
    d = run_daemon(config(), extra_env=env)
    start_conversation(d, soundcard)
    d.wait_for(r"WARNING pivoice.assistant: conversation failed: cannot reach .*is the network up\?; "
               r"trying again in \d+ s", timeout=15)
    d.wait_for("ready to try the Gemini API again", timeout=10)
    assert d.stop()[0] == 0


def test_slow_setup_times_out_into_a_recoverable_error(soundcard, standin, run_daemon):
    standin.behaviour.setup_delay = 5.0
    d = run_daemon(config(connect_timeout=2.0), extra_env=standin.env())
    start_conversation(d, soundcard)
    d.wait_for(r"conversation failed: .* did not answer within 2 s \(live.connect_timeout_seconds\)", timeout=15)
    d.wait_for("ready to try the Gemini API again", timeout=10)
    assert d.stop()[0] == 0


def test_server_stalling_mid_answer_times_out(soundcard, standin, run_daemon):
    b = standin.behaviour
    b.reply_after_seconds = 2.5
    b.reply_pcm = read_wav("reply_24k.wav")
    b.reply_pace = 0.1
    b.stall_after_chunks = 3
    d = run_daemon(config(), extra_env=standin.env())
    start_conversation(d, soundcard)
    d.wait_for("answering", timeout=20)
    # A stall is a connection lost: the conversation goes on, on a new session (no handle to resume with),
    # and what was received of the answer plays to its end.
    d.wait_for(r"connection lost \(the Live API stopped answering mid-answer \(nothing for 2 s; "
               r"live.response_timeout_seconds\)\) before the Live API gave a resumption handle: a new session",
               timeout=10)
    d.wait_for("answer played: listening for a follow-up", timeout=10)
    assert "conversation failed" not in d.output
    assert d.stop()[0] == 0


def test_garbage_frames_are_skipped_and_transcripts_logged(soundcard, standin, run_daemon, tmp_path):
    reply = read_wav("reply_24k.wav")
    b = standin.behaviour
    b.reply_after_seconds = 2.5
    b.reply_pcm = reply
    b.garbage = True
    b.input_transcripts = True
    d = run_daemon(config(extra="transcripts = true\n"), extra_env=standin.env())
    start_conversation(d, soundcard)
    # What was skipped, not the SDK's parser error.
    d.wait_for(r"WARNING pivoice.live: skipped a message from the Live API: it is not JSON", timeout=20)
    d.wait_for(r"skipped a message from the Live API: an error message \(500: something odd\)", timeout=5)
    d.wait_for(r"skipped a message from the Live API: google-genai does not know its top-level field\(s\) "
               r"'futureThing'", timeout=5)
    assert "not supported between instances" not in d.output
    # live.transcripts: what the API heard is logged, with a field journald keeps.
    d.wait_for(r"INFO pivoice.assistant: heard: \.\.\. \[event=transcript session=1 heard=\.\.\.\]", timeout=1)
    d.wait_for("answer played: listening for a follow-up", timeout=15)
    d.wait_for("no follow-up: conversation over", timeout=10)  # (the file plugin writes its tail then)
    standin.wait_for(lambda: (tmp_path / "speaker.raw").read_bytes().find(reply) >= 0, 2,
                     "the answer to play whole")
    assert "Traceback" not in d.output
    assert d.stop()[0] == 0


def test_microphone_failing_and_back(soundcard, standin, run_daemon, notify_socket):
    standin.behaviour.reply_after_seconds = None
    d = run_daemon(config(), extra_env={**standin.env(), "NOTIFY_SOCKET": str(notify_socket.path)})
    d.wait_for("ready: listening")
    soundcard.hang_mic()
    d.wait_for(r"ERROR pivoice.assistant: microphone pv_mic failed \(.*\); trying to reopen it", timeout=10)
    notify_socket.wait_last("STATUS=", "STATUS=Error: the microphone is unavailable — see journalctl -u pivoice")
    time.sleep(3)  # a few failed reopens
    soundcard.hang_mic(False)
    d.wait_for("the microphone is back: listening for the wake word", timeout=20)
    soundcard.say(silence(0.3) + read_wav("hey_jarvis.wav") + silence(0.5))
    standin.wait_for(lambda: len(standin.sessions) == 1, 10, "a session after the microphone came back")
    assert d.stop()[0] == 0
    assert "Traceback" not in d.output


def test_repeated_measures_the_overlap():
    import numpy as np

    said = np.random.default_rng(1).integers(-3000, 3000, 32000).astype("<i2").tobytes()
    assert repeated(b"xx" + said[:30000], said[30000:] + b"yy", said) == 0.0
    assert repeated(said[:30000], said[20000:], said) == 10000 / 32000
    assert repeated(said[:30000], said[32000:], said) is None  # 1000 samples lost


def test_failures_are_classified_with_what_to_do():
    """The SDK's errors as they come (google-genai's APIError for close codes) -> kind, retry, message."""
    from google.genai import errors

    from pivoice.config import LiveSettings
    from pivoice.live.failures import classify

    def close(code, reason):
        try:
            errors.APIError.raise_error(code, reason, None)
        except errors.APIError as e:
            return classify(e, LiveSettings())

    quota = close(1011, "Quota exceeded for this project. Please retry in 12s.")
    assert (quota.kind, quota.retry_after, quota.transient) == ("quota", 12.0, True)
    key = close(1008, "API key not valid. Please pass a valid API key.")
    assert key.kind == "auth" and not key.transient and not key.resumable
    for reason in ("API key expired. Please renew the API key.", "API_KEY_INVALID",
                   "Permission denied: Consumer 'api_key:...' has been suspended.",
                   "The caller does not have permission"):
        assert close(1007, reason).kind == "auth", reason
    assert close(1011, "Internal error occurred.").kind == "server"
    # 1007 / 1008 for other reasons: refused, retried later (not resumed at once), with what to look at.
    invalid = close(1007, "Request contains an invalid argument.")
    assert invalid.kind == "refused" and invalid.transient and not invalid.resumable
    assert "live.voice" in str(invalid) and "[vad]" in str(invalid)
    not_impl = close(1008, NOT_IMPLEMENTED)
    assert not_impl.kind == "refused" and "live.model" in str(not_impl)
    assert close(1008, "").kind == "refused"
    model = close(1008, "Requested entity was not found.")
    assert model.kind == "model" and model.transient and "live.model" in str(model)
    assert all("reload" not in str(e) for e in (key, invalid, not_impl, model))
    assert classify(ConnectionRefusedError(111, "Connection refused"), LiveSettings()).kind == "network"
    assert classify(TimeoutError(), LiveSettings()).kind == "timeout"


# alsa-lib takes a PCM definition from the user's configuration over its own (`pcm.!name`): here
# plughw:CARD=<id> opens pv_card_<id>, a name this test defines, so a card looked up in the (recorded)
# /proc/asound tree opens the virtual card's microphone. (Only in this test's home: other tests need
# plughw:CARD=... of a card that is not there to fail as it does on a Pi.)
PLUGHW_BY_CARD_ID = """
pcm.!plughw {
  @args [ CARD DEV SUBDEV ]
  @args.CARD { type string }
  @args.DEV { type integer default 0 }
  @args.SUBDEV { type integer default -1 }
  type plug
  slave.pcm { @func concat strings [ "pv_card_" $CARD ] }
}
pcm.pv_card_Device { type pulse  device "mic_feed" }
"""


def test_a_usb_microphone_replugged_under_another_index_is_found_by_its_usb_id(soundcard, standin, in_process,
                                                                                home, tmp_path, monkeypatch):
    """input_device = "usb:0d8c:0014": the microphone is card 3 at start (a Pi 4 with a HAT and this USB
    microphone, as /proc/asound listed them), is unplugged (gone from the list, its audio stops), and
    comes back as card 4 (another USB card took 3). pivoice looks the id up again at every reopen, opens
    the card under its new index, and hears the wake word from it."""
    import shutil

    from pivoice.audio import device

    with (home / ".asoundrc").open("a") as f:
        f.write(PLUGHW_BY_CARD_ID)
    trees = Path(__file__).resolve().parent / "asound"
    unplugged = tmp_path / "unplugged"
    shutil.copytree(trees / "pi4-hat-usb", unplugged)
    shutil.rmtree(unplugged / "card3")
    cards = (unplugged / "cards").read_text().splitlines()
    (unplugged / "cards").write_text("\n".join(cards[:6]) + "\n")  # cards 0-2, two lines each
    proc = tmp_path / "asound"

    def plug(tree: Path) -> None:
        (tmp_path / "next").symlink_to(tree)
        os.replace(tmp_path / "next", proc)  # at once: a reopen never sees half a tree

    looked_up: list[tuple[str, str]] = []  # (the tree's name, what the lookup gave)
    resolve = device.resolve

    def recorded(name, key, root):
        if not name.startswith("usb:"):
            return resolve(name, key, root)  # (the speaker)
        tree = Path(os.readlink(root)).name  # (before: a swap may come while it looks)
        try:
            found = resolve(name, key, root)
        except Exception as e:
            looked_up.append((tree, type(e).__name__))
            raise
        looked_up.append((tree, found))
        return found

    plug(trees / "pi4-hat-usb")
    monkeypatch.setattr(device, "PROC", proc)
    monkeypatch.setattr(device, "resolve", recorded)
    standin.behaviour.reply_after_seconds = None
    d = in_process(config().replace('input_device = "pv_mic"', 'input_device = "usb:0d8c:0014"'))
    d.wait_event("ready")
    assert looked_up[0] == ("pi4-hat-usb", "plughw:CARD=Device,DEV=0"), looked_up
    plug(unplugged)
    soundcard.hang_mic()
    d.wait_event("mic_lost", timeout=10)
    deadline = time.monotonic() + 10
    while ("unplugged", "DeviceError") not in looked_up and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ("unplugged", "DeviceError") in looked_up, looked_up
    plug(trees / "pi4-hat-usb-replugged")
    soundcard.hang_mic(False)
    d.wait_event("mic_back", timeout=20)
    assert looked_up[-1] == ("pi4-hat-usb-replugged", "plughw:CARD=Device,DEV=0"), looked_up
    soundcard.say(silence(0.3) + read_wav("hey_jarvis.wav") + silence(0.5))
    standin.wait_for(lambda: len(standin.sessions) == 1, 10, "a session after the microphone came back")
    d.stop()
