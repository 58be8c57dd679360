"""Automatic gain and noise suppression (audio.auto_gain_dbfs, audio.noise_suppression: pivoice/audio/noise.py)
with the real WebRTC processing (webrtc-noise-gain), alone and in the daemon's capture chain against the
stand-in. bench/noise_gain.py measures what they do to wake-word detection."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from harness import ROOT, aligned_correlation, alignment, read_wav, silence
from test_formats import REPLY, VOICE, config, samples
from test_wake import noisy

from pivoice.audio.noise import make
from pivoice.errors import ConfigError

SPOKEN = silence(2.0) + read_wav("hey_jarvis.wav") + silence(0.15) + read_wav("command_time_tokyo.wav") + silence(1)


def through(processor, pcm: bytes, frame: int) -> bytes:
    return b"".join(processor(pcm[i : i + frame]) for i in range(0, len(pcm), frame))


def db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x.astype(float) ** 2))))


def test_every_sample_comes_out_in_order_also_from_frames_off_the_10_ms_grid():
    """80 ms frames (a 16 kHz device) come out as they go in, not delayed; 62.5 ms frames (what a converted
    device may give) come out whole too, the same audio 10 ms (160 samples) later."""
    pcm = noisy(SPOKEN, snr_db=20)
    pcm = pcm[: len(pcm) // 10240 * 10240]
    _, on_grid = make(2, 0)
    _, off_grid = make(2, 0)
    even = through(on_grid, pcm, 2560)
    odd = through(off_grid, pcm, 2000)
    assert len(even) == len(odd) == len(pcm)
    assert not on_grid.delayed and off_grid.delayed
    assert odd[:320] == bytes(320) and odd[320:] == even[:-320]


def test_noise_suppression_lowers_steady_noise_and_keeps_the_voice():
    clean = samples(SPOKEN)
    pcm = noisy(SPOKEN, snr_db=5)
    _, suppress = make(2, 0)
    out = samples(through(suppress, pcm, 2560))
    noise_only = slice(16000, 32000)  # the second second: before the voice, after a second to learn the noise
    lowered = db(samples(pcm)[noise_only]) - db(out[noise_only])
    assert lowered >= 8, f"the noise was lowered by {lowered:.1f} dB"
    before, after = aligned_correlation(clean, samples(pcm)), aligned_correlation(clean, out)
    assert after >= before + 0.1, f"correlation with the clean voice {before:.3f} before, {after:.3f} after"


def test_auto_gain_raises_a_quiet_voice():
    quiet = noisy((samples(SPOKEN) * 0.1).astype("<i2").tobytes(), snr_db=30)
    auto_gain, _ = make(0, 3)
    out = samples(through(auto_gain, quiet, 2560))
    speech = slice(32000, len(out) - 16000)
    raised = db(out[speech]) - db(samples(quiet)[speech])
    assert raised >= 5, f"the quiet voice was raised by {raised:.1f} dB"


def test_off_needs_nothing_and_a_missing_package_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "webrtc_noise_gain", None)  # as if not installed: importing it fails
    assert make(0, 0) == (None, None)
    with pytest.raises(ConfigError) as e:
        make(2, 0)
    assert e.value.message == (
        f"audio.noise_suppression is on, but webrtc-noise-gain is not installed in pivoice's Python "
        f"({sys.executable}). Install it with: sudo {sys.executable} -m pip install 'webrtc-noise-gain>=1.2,<2', "
        f"or set audio.noise_suppression to 0.")
    with pytest.raises(ConfigError, match=r"^audio.auto_gain_dbfs and audio.noise_suppression are on, but .* or set "
                                          r"audio.auto_gain_dbfs and audio.noise_suppression to 0\.$"):
        make(2, 3)


def converse_in_noise(soundcard, run_daemon, standin, extra: str, voice: bytes, snr_db: float, rate: int = 16000):
    """A conversation on the virtual sound card with the voice in steady noise (also before and after it).
    Returns (what the microphone heard, what the Live API got, the lag between them, where the voice ends
    in the former)."""
    clean = silence(1.0) + voice + silence(1.5)
    mic = noisy(clean, snr_db=snr_db)
    standin.behaviour.reply_after_seconds = 2.0
    standin.behaviour.reply_pcm = REPLY
    cfg = config(f"{extra}\ninput_rate = {rate}", mic="pv_mic").replace("follow_up_seconds = 1.0",
                                                                          "follow_up_seconds = 4.0")
    d = run_daemon(cfg, extra_env=standin.env())  # (in real time: the follow-up outlasts the voice)
    d.wait_for("ready: listening")
    soundcard.say(mic)
    d.wait_for("conversation over", timeout=40)
    assert d.stop()[0] == 0, d.output
    assert len(standin.sessions) == 1, d.output  # the wake word was heard
    sent = samples(bytes(standin.sessions[0].audio))
    _, lag = alignment(samples(clean), sent)  # sent[i] is clean[i + lag]
    return samples(mic), sent, lag, len(clean) // 2 - 24000


@pytest.mark.parametrize("rate", [16000, 44100])
def test_in_the_daemon_the_live_api_gets_less_of_the_noise(rate, soundcard, run_daemon, standin):
    """A voice in steady noise at 10 dB SNR, noise_suppression = 2: the wake word is heard, and in the
    pause after the voice the Live API gets the noise at least 6 dB lower than the microphone heard it.
    At 44.1 kHz the converted frames are not whole 10 ms: the processing runs 10 ms behind, nothing lost."""
    mic, sent, lag, voice_end = converse_in_noise(soundcard, run_daemon, standin, "noise_suppression = 2", VOICE, 10, rate)
    pause = slice(voice_end + 3200, voice_end + 19200)  # 0.2-1.2 s after the voice
    heard, got = db(mic[pause]), db(sent[pause.start - lag : pause.stop - lag])
    assert heard - got >= 6, f"noise in the pause: microphone {heard:.1f} dB, sent {got:.1f} dB"


def test_in_the_daemon_auto_gain_raises_a_quiet_voice(soundcard, run_daemon, standin):
    """A voice 20 dB too quiet, auto_gain_dbfs = 3: the wake word is heard, and the Live API gets the voice
    at least 5 dB louder than the microphone heard it."""
    quiet = (samples(VOICE) * 0.1).astype("<i2").tobytes()
    mic, sent, lag, voice_end = converse_in_noise(soundcard, run_daemon, standin, "auto_gain_dbfs = 3", quiet, 30)
    voice = slice(voice_end - 16000, voice_end)  # the command's last second
    heard, got = db(mic[voice]), db(sent[voice.start - lag : voice.stop - lag])
    assert got - heard >= 5, f"the voice: microphone {heard:.1f} dB, sent {got:.1f} dB"


def test_the_detector_hears_the_microphone_before_noise_suppression(soundcard, run_daemon, standin):
    """Strong suppression in light noise takes away enough of this quiet voice's wake word that the
    detector, fed it, would not hear it (checked below; bench/noise_gain.py has more such clips). The
    detector is fed before the suppression, so it is heard."""
    quiet = (samples(read_wav("hey_jarvis_rp.wav") + silence(0.15) + read_wav("command_time_tokyo.wav"))
             * 0.1).astype("<i2").tobytes()
    converse_in_noise(soundcard, run_daemon, standin, "noise_suppression = 4", quiet, 20)
    _, suppress = make(4, 0)  # and fed the suppressed audio, as it would be the other way round:
    from pivoice.wake.detector import load_engine, resolve_models

    engine = load_engine(resolve_models(["hey_jarvis"]))
    suppressed = through(suppress, noisy(silence(1.0) + quiet + silence(1.5), snr_db=20), 2560)
    best = max(s["hey_jarvis"] for s in engine.process(suppressed))
    assert best < 0.5, f"suppressed first, the wake word still scores {best:.2f}: this test shows nothing"


@pytest.mark.parametrize("command", ["check", "run"])
def test_without_the_package_check_and_run_say_how_to_install_it(command, run_daemon, tmp_path):
    """Noise suppression on where webrtc-noise-gain is not installed (a module on the path that fails to
    import as a missing one does): `check` names it in a FAIL row, `run` stops as for a config error (78:
    systemd does not restart it), each with the install command, never a traceback."""
    without = tmp_path / "without"
    without.mkdir()
    (without / "webrtc_noise_gain.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'webrtc_noise_gain'\", name='webrtc_noise_gain')\n")
    (tmp_path / "mic.raw").write_bytes(silence(0.5))
    d = run_daemon(config("noise_suppression = 2"), args=[command],
                   extra_env={"PYTHONPATH": f"{without}:{ROOT}", "GPIOZERO_PIN_FACTORY": "mock"})
    assert d.wait_exit() == 78, d.output
    said = "audio.noise_suppression is on, but webrtc-noise-gain is not installed in pivoice's Python"
    if command == "check":
        assert f"  FAIL  gain and noise: {said}" in d.output, d.output
    assert d.count(f"ERROR .*{said}.* -m pip install 'webrtc-noise-gain>=1.2,<2', or set "
                   f"audio.noise_suppression to 0") == 1, d.output
    assert "Traceback" not in d.output
