"""The current Live models, and conversations that outlive the API's own failures: pivoice as a process,
the real google-genai client, the stand-in behaving as `gemini-3.8-live` (or an older model when the
setup names one)."""

from __future__ import annotations

import asyncio
import json
import re
import time

import numpy as np
import pytest
from harness import TEST_KEY, SpeakerRecorder, read_wav, silence, tone
from standin import _get
from test_resilience import config, repeated, start_conversation, utterance

from pivoice.configfile import parse
from pivoice.live.setup import connect_config, make_client


def test_the_default_config_connects_with_gemini_3_8_live(soundcard, standin, run_daemon):
    standin.behaviour.reply_pcm = read_wav("reply_24k.wav")[:48000]
    d = run_daemon(config(), extra_env=standin.env())
    start_conversation(d, soundcard)
    d.wait_for("answer played: listening for a follow-up", timeout=20)
    setup = standin.sessions[0].setup
    assert setup["model"] == "models/gemini-3.8-live" and standin.sessions[0].family == "3.8"
    # Nothing 3.8 refuses: proactive audio is its own (never turned off), no affective dialog or thinking.
    sent = json.dumps(setup).lower()
    for refused in ("proactiv", "affective", "thinking"):
        assert refused not in sent, setup
    assert "not one pivoice knows" not in d.output
    d.stop()


def test_the_stand_in_refuses_what_3_8_refuses_and_pivoice_says_so_at_check(standin, run_daemon):
    """The API closes a 3.8 session that turns proactive audio off; pivoice refuses that config at start."""
    from google.genai import errors, types

    async def connect():
        client = make_client(TEST_KEY, parse({"live": {"base_url": standin.base_url}}, "t").live)
        cfg = types.LiveConnectConfig(response_modalities=[types.Modality.AUDIO],
                                      proactivity=types.ProactivityConfig(proactive_audio=False))
        async with client.aio.live.connect(model="gemini-3.8-live", config=cfg) as s:
            await s.send_realtime_input(audio=types.Blob(data=b"\0\0" * 160, mime_type="audio/pcm;rate=16000"))
            async for _ in s.receive():
                pass

    import os

    os.environ["SSL_CERT_FILE"] = str(standin.ca_file)
    try:
        with pytest.raises(errors.APIError) as e:
            asyncio.run(connect())
    finally:
        del os.environ["SSL_CERT_FILE"]
    assert e.value.code == 1007
    d = run_daemon("[live]\nproactive_audio = false\n", args=["check"])
    assert d.wait_exit() == 78
    assert re.search(r"config error in .*: live.proactive_audio: gemini-3.8-live always has proactive audio on",
                     d.output), d.output
    assert "Traceback" not in d.output


def test_language_reaches_the_setup_as_the_api_expects(standin):
    """live.language: the speech language, the transcription language, and the default instruction."""
    settings = parse({"live": {"language": "de-DE", "base_url": standin.base_url}}, "test")

    async def connect():
        from google.genai import types

        client = make_client(TEST_KEY, settings.live)
        async with client.aio.live.connect(model=settings.live.model,
                                           config=connect_config(settings.live, settings.vad)) as s:
            await s.send_realtime_input(audio=types.Blob(data=b"\0\0" * 160, mime_type="audio/pcm;rate=16000"))

    import os

    os.environ["SSL_CERT_FILE"] = str(standin.ca_file)
    try:
        asyncio.run(connect())
    finally:
        del os.environ["SSL_CERT_FILE"]
    setup = standin.sessions[0].setup  # (google-genai writes nested keys in either case: _get takes both)
    assert _get(_get(_get(setup, "generation_config"), "speech_config"), "language_code") == "de-DE"
    assert _get(_get(setup, "input_audio_transcription"), "language_codes") == ["de-DE"]
    instruction = _get(setup, "system_instruction")["parts"][0]["text"]
    assert instruction.endswith("Speak and answer in the language with BCP-47 code de-DE, whatever language "
                                "you are spoken to in.")


def test_an_answer_outlives_a_premature_turn_complete(soundcard, standin, run_daemon, tmp_path):
    """A turnComplete after the fifth of fifteen messages, the rest following (python-genai#2117), and the
    last message carrying two audio parts, the transcription and the turnComplete: the whole answer plays
    in order, without a gap longer than one playback period (20 ms), as one answer."""
    b = standin.behaviour
    b.reply_pcm = tone(3.0, freq=440.0)
    b.reply_pace = 0.1  # 200 ms every 100 ms: faster than it plays, as the service sends
    b.premature_turn_complete_after = 5
    b.combined_end = True
    b.said_text = "Here is a long tone."
    d = run_daemon(config(speaker="pv_spk", extra="transcripts = true\n") + "[earcons]\nenabled = false\n",
                   extra_env=standin.env())  # (earcons off: the answer's loud span at the speaker is measured)
    rec = SpeakerRecorder(soundcard, tmp_path)
    start_conversation(d, soundcard)
    d.wait_for("answer played: listening for a follow-up", timeout=25)
    time.sleep(0.3)
    rec.stop()
    x = rec.samples.astype(np.int32)
    loud = np.flatnonzero(np.abs(x) > 2000)
    assert loud.size, "nothing was played"
    span = x[loud[0] : loud[-1] + 1]
    assert abs(span.size / 24000 - 3.0) < 0.1, span.size / 24000  # all of it, once
    quiet = np.abs(span) < 300  # a 440 Hz tone is this quiet only for a moment at each zero crossing
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    gaps = [(a / 24000, (b - a) / 24) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a > 480]
    # From half a second in (the premature turnComplete comes after 1.0 s of it). The first 50 ms of
    # every answer on this card have a gap of their own (the pulse plugin's start; docs/testing.md).
    after = [g for g in gaps if g[0] > 0.5]
    assert not after, f"gaps after the premature turnComplete (s into the answer, ms): {after}"
    assert d.count("INFO pivoice.assistant: answering") == 1
    assert d.count("answer played: listening for a follow-up") == 1
    assert "said: Here is a long tone." in d.output and "said:  The end." in d.output
    d.stop()


def test_a_refused_resumption_starts_over_with_the_conversation_so_far(soundcard, standin, run_daemon):
    """A 1011 mid-conversation, then the resumption refused: a new session whose setup carries the earlier
    turns, and the person's words after the failure reach it."""
    b = standin.behaviour
    b.handles = True
    b.input_transcripts = True
    b.heard_text = "time in Tokyo? "
    b.said_text = "It is nine in the evening in Tokyo."
    b.reply_after_seconds = 2.5
    b.reply_pcm = read_wav("reply_24k.wav")[:48000]
    b.max_replies_in_all = 1
    b.close_after_bytes = int(7.0 * 32000)  # in the middle of what is said next
    b.close_code, b.close_reason = 1011, "Internal error occurred."
    b.refuse_handles = (1008, "Session resumption handle is invalid or expired.")
    said = utterance(4.0)
    d = run_daemon(config(follow_up=6.0), extra_env=standin.env())
    start_conversation(d, soundcard, extra=silence(2.5) + said + silence(1.0))
    d.wait_for(r"the Live API would not resume the conversation \(.*1008: Session resumption handle is invalid"
               r".*\): a new session with the conversation so far", timeout=30)
    standin.wait_for(lambda: len(standin.sessions) == 3 and said[-16000:] in bytes(standin.sessions[2].audio),
                     20, "the rest of what was said, on the new session")
    first, refused, fresh = standin.sessions
    assert refused.handle_in == first.handles_out[-1] and not refused.audio
    assert fresh.handle_in is None
    assert fresh.history[0][0] == "user" and "time in Tokyo?" in fresh.history[0][1]
    assert fresh.history[1] == ("model", "It is nine in the evening in Tokyo.")
    assert not fresh.audio_before_history
    assert repeated(bytes(first.audio), bytes(fresh.audio), said) is not None  # nothing lost
    assert "ERROR" not in d.output
    d.stop()


def test_every_live_client_shares_one_tls_context_which_verifies_the_server(standin, monkeypatch):
    """make_client's clients share one TLS context, for the Live connection and google-genai's unused HTTP
    clients alike (left to itself google-genai makes two per client, one of them from
    the system's store): it trusts the CA in SSL_CERT_FILE, and without that CA the stand-in is refused."""
    import gc
    import ssl

    from google.genai import types

    settings = parse({"live": {"base_url": standin.base_url}}, "t")

    async def connect(client):
        async with client.aio.live.connect(model=settings.live.model,
                                           config=connect_config(settings.live, settings.vad)) as s:
            await s.send_realtime_input(audio=types.Blob(data=b"\0\0" * 160, mime_type="audio/pcm;rate=16000"))

    def contexts() -> set[int]:
        gc.collect()
        return {id(o) for o in gc.get_objects() if isinstance(o, ssl.SSLContext)}

    monkeypatch.setenv("SSL_CERT_FILE", str(standin.ca_file))
    before = contexts()
    clients = [make_client(TEST_KEY, settings.live) for _ in range(3)]
    assert len(contexts() - before) <= 1
    for client in clients:
        asyncio.run(connect(client))
    assert len(standin.sessions) == 3

    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(ssl.SSLCertVerificationError):
        asyncio.run(connect(make_client(TEST_KEY, settings.live)))
    assert len(standin.sessions) == 3
