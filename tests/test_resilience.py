"""Long conversations and bad networks, against a fault-injecting Live stand-in."""

from __future__ import annotations

import signal
import socket
import time

from conftest import TEST_KEY, decode_flac, read_wav, silence

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
    said = utterance(5.0)
    d = run_daemon(config(speaker="pv_spk", follow_up=4.0), extra_env=standin.env())
    start_conversation(d, soundcard, extra=silence(1.0) + said + silence(1.0))
    d.wait_for("GoAway from the Live API", timeout=20)
    d.wait_for("conversation resumed on a new connection", timeout=10)
    standin.wait_for(lambda: len(standin.sessions) == 2 and len(standin.sessions[1].audio) > len(said) + 64000,
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
    d = run_daemon(config(follow_up=1.0, resume=6.0), extra_env=standin.env())
    start_conversation(d, soundcard)
    d.wait_for("no follow-up: conversation over", timeout=20)
    first_handle = standin.sessions[0].handles_out[-1]
    # Soon after: the next wake word continues the conversation.
    soundcard.say(read_wav("hey_jarvis.wav") + silence(0.15) + read_wav("command_paris.wav"))
    standin.wait_for(lambda: len(standin.sessions) == 2, 10, "a second conversation")
    assert standin.sessions[0].handle_in is None
    assert standin.sessions[1].handle_in == first_handle
    d.wait_for("no follow-up: conversation over", timeout=20, start=len(d.lines) - 1)
    # After resume_context_seconds (6 s): a fresh conversation.
    time.sleep(6.5)
    soundcard.say(read_wav("hey_jarvis.wav") + silence(0.5))
    standin.wait_for(lambda: len(standin.sessions) == 3, 10, "a third conversation")
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
    d.wait_for(r"ERROR pivoice.assistant: conversation failed: the Live API refused the session \(1008: API key not "
               r"valid.*\). Check the API key \(then: systemctl reload pivoice\).*fix the key", timeout=15)
    # A minute of wake words: answered with the error light, not with connections.
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        soundcard.say_and_wait(read_wav("hey_jarvis.wav") + silence(1.5))
    assert len(standin.sessions) <= 2, f"{len(standin.sessions)} connections in a minute"
    assert d.count("heard you, but cannot answer: API key rejected") >= 10
    # The key is fixed and pivoice told to reload: the next wake word works.
    key_file.write_text(good + "\n")
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for("API key reloaded: ready")
    n = len(standin.sessions)
    soundcard.say(read_wav("hey_jarvis.wav") + silence(0.5))
    d.wait_for("session open in", timeout=10)
    assert len(standin.sessions) == n + 1
    assert standin.sessions[-1].headers["x-goog-api-key"] == good
    assert d.stop()[0] == 0
    assert good not in d.output


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
    d.wait_for(r"conversation failed: the Live API stopped answering mid-answer \(nothing for 2 s", timeout=10)
    d.wait_for("ready to try the Gemini API again", timeout=10)
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
    d.wait_for("skipped a malformed message from the Live API", timeout=20)
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
    assert "STATUS=Error: the microphone is unavailable — see journalctl -u pivoice" in notify_socket.lines()
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
    from pivoice.live.session import classify

    def close(code, reason):
        try:
            errors.APIError.raise_error(code, reason, None)
        except errors.APIError as e:
            return classify(e, LiveSettings())

    quota = close(1011, "Quota exceeded for this project. Please retry in 12s.")
    assert (quota.kind, quota.retry_after, quota.transient) == ("quota", 12.0, True)
    key = close(1008, "API key not valid. Please pass a valid API key.")
    assert key.kind == "auth" and not key.transient and "systemctl reload pivoice" in str(key)
    assert close(1011, "Internal error occurred.").kind == "server"
    assert close(1007, "Request contains an invalid argument.").kind == "auth"
    assert classify(ConnectionRefusedError(111, "Connection refused"), LiveSettings()).kind == "network"
    assert classify(TimeoutError(), LiveSettings()).kind == "timeout"
