"""Sound devices that do not run at pivoice's own format (16 kHz mono in, 24 kHz mono out, 16-bit): the
format agreed with the device, and the conversion both ways, end to end through the daemon on real ALSA
PCMs (the file plugin, which runs at whatever rate and channel count it is opened with, and a device that
only runs in stereo), against the stand-in."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from harness import aligned_correlation, read_wav, silence

from pivoice.audio.convert import Converter, decode, encode
from pivoice.audio.device import FALLBACK_RATES, Format, Want, attempts, decide
from pivoice.errors import ConfigError

VOICE = silence(0.3) + read_wav("hey_jarvis.wav") + silence(0.15) + read_wav("command_time_tokyo.wav")
REPLY = read_wav("reply_24k.wav")[: 3 * 48000]  # 3 s at 24 kHz


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, "<i2")


def as_device(pcm16k: bytes, rate: int, channels: int) -> bytes:
    """16 kHz mono -> what a microphone running at `rate` with `channels` delivers (the same voice on each)."""
    x = soxr.resample(samples(pcm16k), 16000, rate, "VHQ") if rate != 16000 else samples(pcm16k)
    return np.repeat(x.astype("<i2"), channels).tobytes()


def config(extra: str, mic: str = "mic_file") -> str:
    return f"""
[audio]
input_device = "{mic}"
output_device = "spk_file"
{extra}
[conversation]
follow_up_seconds = 1.0
[log]
level = "debug"
"""


# Read from a file (unpaced), the microphone's first SLOTS frames (2.56 s) may be read before pivoice is
# READY and scores them: the voice comes after more silence than that.
LEAD = 3.0


def converse(run_daemon, standin, tmp_path, cfg: str, mic_audio: bytes):
    standin.behaviour.reply_after_seconds = 2.0
    standin.behaviour.reply_pcm = REPLY
    (tmp_path / "mic.raw").write_bytes(mic_audio)
    d = run_daemon(cfg, extra_env=standin.env())
    d.wait_for("conversation over", timeout=40)
    assert d.stop()[0] == 0, d.output
    assert len(standin.sessions) == 1, d.output  # the wake word was heard
    return d


@pytest.mark.parametrize("rate", [48000, 44100])
def test_devices_at_another_rate_in_stereo_hear_and_speak_right(rate, run_daemon, standin, tmp_path):
    """Both devices set in the config to `rate`, stereo: the wake word is heard, the Live API gets the voice
    as it was said (16 kHz), and the speaker gets the answer at `rate` on both channels."""
    cfg = config(f"input_rate = {rate}\ninput_channels = 2\noutput_rate = {rate}\noutput_channels = 2")
    d = converse(run_daemon, standin, tmp_path, cfg, as_device(silence(LEAD) + VOICE + silence(4.0), rate, 2))
    assert d.count(rf"capture device mic_file: {rate} Hz, 2 channels, S16_LE, period \d+ frames \(40 ms\)") == 1
    assert d.count(rf"playback device spk_file: {rate} Hz, 2 channels, S16_LE, period \d+ frames \(20 ms\)") == 1
    heard = aligned_correlation(samples(VOICE), samples(bytes(standin.sessions[0].audio)))
    assert heard >= 0.95, f"what the Live API got correlates {heard:.3f} with what was said"
    played = samples((tmp_path / "speaker.raw").read_bytes()).reshape(-1, 2)
    assert np.array_equal(played[:, 0], played[:, 1]), "not the same answer on both channels"
    back = soxr.resample(played[:, 0], rate, 24000, "VHQ")
    said = aligned_correlation(samples(REPLY), back)
    assert said >= 0.95, f"the answer at the speaker correlates {said:.3f} with the model's"


def test_a_stereo_only_microphone_hands_back_two_channels_and_is_heard(soundcard, run_daemon, standin):
    """Asked for mono, the device runs in stereo (as many HATs do): pivoice takes what it gets and listens
    to the mix. (The paced card: ALSA's stereo-only plugin cannot read the file plugin's input.)"""
    standin.behaviour.reply_after_seconds = 2.0
    standin.behaviour.reply_pcm = REPLY
    d = run_daemon(config("", mic="pv_mic_stereo_only"), extra_env=standin.env())
    d.wait_for("ready: listening")
    soundcard.say(VOICE + silence(2.5))
    d.wait_for("conversation over", timeout=40)
    assert d.stop()[0] == 0
    assert d.count(r"capture device pv_mic_stereo_only: 16000 Hz, 2 channels, S16_LE, .* \(asked for 16000 Hz, "
                   r"1 channel\)") == 1
    heard = aligned_correlation(samples(VOICE), samples(bytes(standin.sessions[0].audio)))
    assert heard >= 0.95, f"what the Live API got correlates {heard:.3f} with what was said"


def test_input_channel_listens_to_one_channel_only(run_daemon, standin, tmp_path):
    """A two-channel microphone with the voice on the second channel and loud noise on the first: with
    input_channel = 1 the wake word is heard and the Live API gets the voice alone."""
    rng = np.random.default_rng(7)
    voice = samples(silence(LEAD) + VOICE + silence(4.0))
    noise = rng.normal(0, 3000, voice.size).astype("<i2")
    mic = np.stack([noise, voice], axis=1).tobytes()
    d = converse(run_daemon, standin, tmp_path, config("input_channel = 1"), mic)
    assert d.count(r"capture device mic_file: 16000 Hz, 2 channels, S16_LE, .* \(asked for 16000 Hz, "
                   r"2 channels\)") == 1  # the chosen channel must be there: two asked for
    heard = aligned_correlation(samples(VOICE), samples(bytes(standin.sessions[0].audio)))
    assert heard >= 0.95, f"what the Live API got correlates {heard:.3f} with what was said"


def test_a_channel_the_microphone_does_not_have_is_a_config_error(soundcard, run_daemon):
    d = run_daemon(config("input_channel = 3", mic="pv_mic_stereo_only"))
    assert d.wait_exit() == 78
    assert ("audio.input_channel: it is 3, but the capture device pv_mic_stereo_only has 2 channels (0 is the "
            'first); set it lower, or "mix"') in d.output
    assert "Traceback" not in d.output


def test_a_device_that_refuses_every_format_is_a_config_error_naming_what_to_do(soundcard, run_daemon):
    d = run_daemon(config("", mic="pv_mic_no_format"))
    assert d.wait_exit() == 78
    assert ("audio.input_device: the ALSA capture device 'pv_mic_no_format' refused every format pivoice can use "
            "(48000/44100/32000/22050/16000 Hz, 1-8 channels). Use its 'plughw:' name") in d.output
    assert "Traceback" not in d.output


# -- the decision, against what devices report back -------------------------------------------------


def reported(rate: int, channels: int, fmt: str = "S16_LE", period: int = 1280) -> Format:
    return Format(rate, channels, fmt, period, period * 4)


def test_what_is_tried_when_a_device_refuses_the_wanted_format():
    order = attempts(Want(16000, 1, 80, 4))
    assert order[:3] == [(16000, 1), (16000, 2), (16000, 3)]  # the rate first, more channels before fewer
    assert [r for r, c in order if c == 1] == [16000, *[r for r in FALLBACK_RATES if r != 16000]]
    assert len(order) == len(set(order)) == 5 * 8
    assert attempts(Want(48000, 2, 80, 4))[:3] == [(48000, 2), (48000, 3), (48000, 4)]
    assert attempts(Want(48000, 2, 80, 4))[7] == (48000, 1)  # fewer channels than wanted: last


@pytest.mark.parametrize("got, verdict", [
    (reported(16000, 1), "use"),
    (reported(16000, 2), "use"),  # more channels than asked: converted
    (reported(48000, 2, period=1280), "reopen"),  # another rate: the period was sized for 16 kHz
    (reported(48000, 2, period=3840), "use"),  # reopened at that rate: 80 ms
    (reported(44100, 1, "S32_LE", period=3528), "use"),
    (reported(48000, 2, "S24_3LE", period=3840), "use"),
    (reported(48000, 2, "FLOAT_LE", period=3840), "refused"),
    (reported(48000, 2, "S8", period=3840), "refused"),
])
def test_the_format_decision_on_what_a_device_reports(got, verdict):
    want = Want(16000, 1, 80.0, 4)
    if verdict == "refused":
        with pytest.raises(ConfigError, match=rf"audio.input_device: the ALSA capture device 'hw:1' only takes "
                                              rf"{got.sample_format} samples"):
            decide("capture", "hw:1", "audio.input_device", want, got)
        return
    assert decide("capture", "hw:1", "audio.input_device", want, got) == (got if verdict == "use" else None)


@pytest.mark.parametrize("fmt", ["S16_LE", "S32_LE", "S24_LE", "S24_3LE"])
def test_every_sample_format_converts_both_ways(fmt):
    x = (np.sin(np.arange(4800) / 7) * 20000).astype("<i2")
    assert np.array_equal(decode(encode(x, fmt), fmt), x)
    width = {"S16_LE": 2, "S32_LE": 4, "S24_LE": 4, "S24_3LE": 3}[fmt]
    assert len(encode(x, fmt)) == x.size * width
    # A device's 48 kHz stereo in that format -> pivoice's 16 kHz mono, and 24 kHz mono -> the device's.
    dev = encode(np.repeat(soxr.resample(x, 16000, 48000, "VHQ").astype("<i2"), 2), fmt)
    mono = samples(Converter(48000, 2, 16000, 1, in_format=fmt)(dev))
    assert aligned_correlation(x, mono) > 0.99
    out = Converter(24000, 1, 48000, 2, out_format=fmt)(x.tobytes())
    assert len(out) % (2 * width) == 0
