"""The set-up tools, run as a person would run them, on the test PCMs: `pivoice devices`, `pivoice
test-mic`; the sound-card lookup behind usb:VVVV:PPPP names on /proc/asound trees of a Pi 4 with a
2-mic HAT and a USB microphone (tests/asound/: written in the kernel's format, before and after the
microphone was replugged and came back as another card); the microphone's level in the journal."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from harness import read_wav, silence

from pivoice.audio import level
from pivoice.audio.cards import cards, describe_index, resolve
from pivoice.errors import ConfigError, DeviceError

TREES = Path(__file__).parent / "asound"
VOICE = np.frombuffer(silence(0.5) + read_wav("hey_jarvis.wav") + silence(0.3) + read_wav("command_time_tokyo.wav")
                      + silence(0.5), "<i2")


# -- sound cards and stable names --------------------------------------------------------------------


def test_the_cards_of_a_pi_with_a_hat_and_a_usb_microphone():
    found = cards(TREES / "pi4-hat-usb")
    assert [(c.index, c.id, c.usb_id, c.capture, c.playback) for c in found] == [
        (0, "Headphones", "", (), (0,)),
        (1, "vc4hdmi0", "", (), (0,)),
        (2, "seeed2micvoicec", "", (0,), (0,)),
        (3, "Device", "0d8c:0014", (0,), (0,)),
    ]
    assert found[3].name == "USB PnP Sound Device"
    assert cards(TREES / "no-such-tree") == []  # no sound card at all: an empty list, not an error


def test_a_usb_microphone_replugged_under_another_index_is_found_by_its_id():
    before, after = TREES / "pi4-hat-usb", TREES / "pi4-hat-usb-replugged"
    assert [c.index for c in cards(after) if c.usb_id == "0d8c:0014"] == [4]  # it did move (3 -> 4)
    for tree in (before, after):
        assert resolve("usb:0d8c:0014", "audio.input_device", tree) == "plughw:CARD=Device,DEV=0"
        assert resolve("usb:0D8C:0014,1", "audio.input_device", tree) == "plughw:CARD=Device,DEV=1"
        assert resolve("plughw:CARD=seeed2micvoicec", "audio.input_device", tree) == "plughw:CARD=seeed2micvoicec"
    # Named by index, it would now be another card: what to write instead.
    assert "'usb:0d8c:0014' names the same card and stays right" in describe_index("hw:3", before)
    assert "'plughw:CARD=seeed2micvoicec,DEV=0' names the same card" in describe_index("plughw:2,0", before)
    assert describe_index("plughw:CARD=Device", before) is None


def test_usb_names_that_cannot_work_or_are_not_there_now():
    with pytest.raises(ConfigError, match=r"audio.input_device: 'usb:0d8c' is not a USB id; write it as usb:VVVV:PPPP"):
        resolve("usb:0d8c", "audio.input_device", TREES / "pi4-hat-usb")
    with pytest.raises(DeviceError, match=r"audio.output_device: no USB sound card 4c4a:4155 is connected"):
        resolve("usb:4c4a:4155", "audio.output_device", TREES / "pi4-hat-usb")  # the speaker, not plugged in yet


# -- pivoice devices ---------------------------------------------------------------------------------


def test_devices_lists_what_each_device_accepts_and_what_the_config_picks(soundcard, run_daemon):
    cfg = ('[audio]\ninput_device = "pv_mic_stereo_only"\noutput_device = "pv_spk"\nvolume_control = "Master"\n'
           'mixer_device = "pv_mixer"\n')
    d = run_daemon(cfg, key=None, args=["devices"])
    assert d.wait_exit() == 0, d.output
    out = d.output
    assert "Sound cards (/proc/asound/cards):\n  none: no sound card" in out  # this machine has none
    capture = out[out.index("Capture devices"): out.index("Playback devices")]
    assert "  pv_mic: any rate; channels 1-32; samples S16_LE, S32_LE, S24_LE, S24_3LE\n" in capture
    assert ("  pv_mic_stereo_only: any rate; channels 2; samples S16_LE, S32_LE, S24_LE, S24_3LE   <- "
            "audio.input_device\n") in capture
    playback = out[out.index("Playback devices"): out.index("Mixer controls")]
    assert "  pv_spk: any rate; channels 1-32; samples S16_LE, S32_LE, S24_LE, S24_3LE   <- audio.output_device" in playback
    assert "  pv_mixer: [Master], Capture   <- audio.mixer_device" in out
    assert "sets the volume with the mixer control 'Master' on pv_mixer." in out
    assert "Traceback" not in out


# -- pivoice test-mic --------------------------------------------------------------------------------


def run_test_mic(run_daemon, tmp_path, left: np.ndarray, right: np.ndarray | None = None, extra: str = "") -> str:
    mic = left if right is None else np.stack([left, right], axis=1).reshape(-1)
    (tmp_path / "mic.raw").write_bytes(np.clip(mic, -32768, 32767).astype("<i2").tobytes())
    channels = "" if right is None else "input_channels = 2\n"
    d = run_daemon(f'[audio]\ninput_device = "mic_file"\noutput_device = "spk_file"\n{channels}{extra}', key=None,
                   args=["test-mic", "--seconds", f"{VOICE.size / 16000:.1f}"])
    assert d.wait_exit() == 0, d.output
    assert "Traceback" not in d.output
    return d.output


def test_test_mic_finds_the_channel_that_carries_the_voice(run_daemon, tmp_path):
    noise = np.random.default_rng(1).normal(0, 2000, VOICE.size)
    out = run_test_mic(run_daemon, tmp_path, noise, VOICE.astype(np.float64))
    assert "Listening to mic_file (16000 Hz, 2 channels, S16_LE" in out
    assert "ch0 " in out and "ch1 " in out  # the meter: a line a second (not a terminal)
    assert "Channel 1 carries the voice best" in out and "set audio.input_channel = 1." in out
    assert "The level is good" in out


@pytest.mark.parametrize("scale, said", [
    (8.0, "Too loud: the microphone clips (or nearly). Turn its capture gain down"),
    (0.01, "Too quiet: speech reaches"),
])
def test_test_mic_says_when_the_level_is_wrong(scale, said, run_daemon, tmp_path):
    room = np.random.default_rng(2).normal(0, 2, VOICE.size)
    out = run_test_mic(run_daemon, tmp_path, VOICE * scale + room)
    assert said in out, out


def test_input_gain_db_is_what_test_mic_suggests(run_daemon, tmp_path):
    room = np.random.default_rng(2).normal(0, 2, VOICE.size)
    out = run_test_mic(run_daemon, tmp_path, VOICE * 0.03 + room)
    gain = out.split("audio.input_gain_db to about ")[1].split(".")[0]
    fixed = run_test_mic(run_daemon, tmp_path, VOICE * 0.03 + room, extra=f"input_gain_db = {float(gain)}\n")
    assert "The level is good" in fixed, fixed


# -- the level in the journal ------------------------------------------------------------------------


def test_a_clipping_microphone_is_said_in_the_log_once(run_daemon, tmp_path):
    loud = np.clip(VOICE.astype(np.float64) * 8, -32768, 32767).astype("<i2")
    (tmp_path / "mic.raw").write_bytes(loud.tobytes() * 3 + silence(2.0))
    d = run_daemon('[audio]\ninput_device = "mic_file"\noutput_device = "spk_file"\n[wake]\nmodels = ["alexa"]\n')
    d.wait_for(r"WARNING pivoice.audio: the microphone mic_file clips: \d+ samples at full scale in \d+ s", timeout=20)
    d.wait_for("ready: listening")
    assert d.stop()[0] == 0
    assert d.count("clips:") == 1


def test_a_microphone_silent_for_ten_minutes_is_said_once_and_its_return(caplog):
    watch = level.LevelWatch("hw:CARD=x")
    frame = np.zeros(1280, "<i2").tobytes()
    with caplog.at_level(logging.INFO, "pivoice.audio"):
        for _ in range(int(level.SILENT_SECONDS / 0.08) + 10):
            watch.frame(frame)
        watch.frame((np.ones(1280) * 3000).astype("<i2").tobytes())
        for _ in range(100):
            watch.frame(frame)
    said = [r.getMessage() for r in caplog.records]
    assert said == ["the microphone hw:CARD=x has been nearly silent for 10 minutes (only zeros): is it muted "
                    "(alsamixer), or is audio.input_device or audio.input_channel the wrong one? `pivoice "
                    "test-mic` shows its level", "the microphone hw:CARD=x hears sound again"]


# -- a busy card -------------------------------------------------------------------------------------


def test_a_busy_card_names_the_process_that_holds_it(tmp_path):
    """Who holds a PCM is read from /proc/*/fd: here a process named pipewire (as its comm) holding a file
    named as ALSA's capture PCMs are (this machine has no /dev/snd)."""
    import subprocess
    import sys

    from pivoice.audio.alsa import busy_advice, holders

    pcm = tmp_path / "snd" / "pcmC2D0c"
    pcm.parent.mkdir()
    pcm.write_bytes(b"")
    code = ("import ctypes, sys, time\nctypes.CDLL(None).prctl(15, b'pipewire', 0, 0, 0)\nf = open(sys.argv[1])\n"
            "print(1, flush=True)\ntime.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(pcm)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "1"
        prefix = str(tmp_path / "snd" / "pcmC")
        assert holders(True, prefix) == [f"pipewire (pid {holder.pid})"]
        assert holders(False, prefix) == []  # it holds a capture PCM, not a playback one
        advice = busy_advice(True, prefix)
        assert advice.startswith(f"pipewire (pid {holder.pid}) has it open. On Raspberry Pi OS with a desktop that "
                                 f"is the desktop's sound server (PipeWire): stop it"), advice
    finally:
        holder.kill()
        holder.wait()


# -- pivoice check -----------------------------------------------------------------------------------

FINE = '[audio]\ninput_device = "mic_file"\noutput_device = "spk_file"\n'
BROKEN = {  # piece: (config, API key, the FAIL line's text, exit status)
    "API key": (FINE, None, "no Gemini API key found. Give pivoice a Gemini API key in one of three ways", 78),
    "wake words": (FINE + '[wake]\nmodels = ["hey_nobody"]\n', "AIzaTEST", "wake.models: ", 78),
    "microphone": (FINE.replace("mic_file", "mic_nowhere"), "AIzaTEST",
                   "audio.input_device: there is no ALSA capture device named 'mic_nowhere'", 78),
    "speaker": (FINE.replace('output_device = "spk_file"', 'output_device = "usb:4c4a:4155"'), "AIzaTEST",
                "audio.output_device: no USB sound card 4c4a:4155 is connected", 69),
    "GPIO": (FINE + "[gpio]\nbutton_pin = 17\n", "AIzaTEST", "GPIO not available (BadPinFactory", 69),
    "earcons": (FINE + '[earcons]\nwake = "/nowhere/ding.wav"\n', "AIzaTEST",
                "earcons.wake: cannot read /nowhere/ding.wav as a WAV file", 78),
}


@pytest.mark.parametrize("piece", list(BROKEN))
def test_check_names_each_broken_piece_and_tries_the_rest(piece, run_daemon, tmp_path):
    cfg, key, said, status = BROKEN[piece]
    (tmp_path / "mic.raw").write_bytes(silence(0.5))
    d = run_daemon(cfg, key=key, args=["check"], extra_env={"GPIOZERO_PIN_FACTORY": ""})
    assert d.wait_exit() == status, d.output
    rows = {line.split(":")[0].split(None, 1)[1]: line for line in d.lines if line.startswith(("  ok ", "  FAIL "))}
    assert set(rows) == {"API key", "wake words", "microphone", "speaker", "gain and noise", "GPIO", "earcons"}, \
        d.output
    assert rows[piece].startswith(f"  FAIL  {piece}: ") and said in rows[piece], d.output
    assert all(line.startswith("  ok ") for name, line in rows.items() if name != piece), d.output
    assert f"NOT OK: {piece} (see above)" in d.output
    errors = [line for line in d.lines if " ERROR " in line]
    assert len(errors) == 1 and f"ERROR pivoice: {piece}: " in errors[0], d.output
    assert "Traceback" not in d.output and "OK: config" not in d.output


def test_check_passes_with_every_piece_there(run_daemon, tmp_path):
    (tmp_path / "mic.raw").write_bytes(silence(0.5))
    d = run_daemon(FINE + 'noise_suppression = 2\nauto_gain_dbfs = 3\n[gpio]\nled = "led"\nled_pins = [5]\n'
                   'button_pin = 17\n', args=["check"], extra_env={"GPIOZERO_PIN_FACTORY": "mock"})
    assert d.wait_exit() == 0, d.output
    assert "  ok    microphone: 'mic_file' opened: 16000 Hz, 1 channel, S16_LE" in d.output
    assert "  ok    speaker: 'spk_file' opened: 24000 Hz, 1 channel, S16_LE" in d.output
    assert "  ok    GPIO: in use: led LED on GPIO5, button on GPIO17" in d.output
    assert "  ok    wake words: hey_jarvis (loaded, threshold 0.5)" in d.output
    assert "  ok    earcons: volume 0.4; the built-in ones" in d.output
    assert "  ok    gain and noise: automatic gain target -3 dBFS, noise suppression 2 (webrtc-noise-gain 1." in d.output
    assert "\nOK: config " in d.output


ONLINE = {  # why the Live API cannot be used: (config added, the stand-in's behaviour, what the FAIL line says)
    "a rejected key": ("", {"valid_key": "AIzaSOME-OTHER-KEY"},
                       "the Live API rejected the API key (1008: API key not valid"),
    "a model that does not exist": ('[live]\nmodel = "gemini-nope"\n', {},
                                    "live.model 'gemini-nope' is not available for the Live API (1008: "
                                    "models/gemini-nope is not found"),
    "the quota": ("", {"refuse_setup": (1011, "Quota exceeded for this project. Please retry in 12s.")},
                  "the Live API's quota or rate limit was reached (1011: Quota exceeded"),
    "no network": ('[live]\nbase_url = "https://127.0.0.1:9"\n', None, "cannot reach https://127.0.0.1:9 ("),
}


@pytest.mark.parametrize("why", list(ONLINE))
def test_check_online_says_why_the_live_api_cannot_be_used(why, standin, run_daemon, tmp_path):
    """`check --online` tells a rejected key, a model the Live API does not have, the quota and no network
    apart, each in the Live API line, with the rest of the check fine."""
    added, behaviour, said = ONLINE[why]
    for name, value in (behaviour or {}).items():
        setattr(standin.behaviour, name, value)
    (tmp_path / "mic.raw").write_bytes(silence(0.5))
    d = run_daemon(FINE + added, args=["check", "--online"],
                   extra_env={**(standin.env() if behaviour is not None else {}), "GPIOZERO_PIN_FACTORY": "mock"})
    assert d.wait_exit() == 69, d.output
    row = [line for line in d.lines if line.startswith(("  ok    Live API", "  FAIL  Live API"))]
    assert len(row) == 1 and row[0].startswith("  FAIL  Live API: online check failed: ") and said in row[0], d.output
    assert "NOT OK: Live API (see above)" in d.output
    assert sum(line.startswith("  FAIL ") for line in d.lines) == 1, d.output
    assert "Traceback" not in d.output


# -- pivoice test-wake -------------------------------------------------------------------------------


def test_test_wake_scores_a_recording_at_another_rate_and_marks_the_detection(run_daemon, tmp_path):
    """A 44.1 kHz stereo WAV, as a phone records: converted, scored, the detection marked."""
    import wave

    import soxr

    voice = np.frombuffer(silence(0.5) + read_wav("hey_jarvis.wav") + silence(0.5), "<i2")
    x = soxr.resample(voice, 16000, 44100, "VHQ").astype("<i2")
    path = tmp_path / "phone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(np.repeat(x, 2).tobytes())
    d = run_daemon(FINE, key=None, args=["test-wake", "--file", str(path)])
    assert d.wait_exit() == 0, d.output
    assert "Wake words hey_jarvis, threshold 0.5 (wake.threshold)" in d.output
    marked = [line for line in d.lines if line.endswith("DETECTED")]
    assert marked, d.output
    first = float(marked[0].split()[0])
    assert 0.9 < first < 2.0, marked[0]  # while the clip's "hey jarvis" ends, not before it
    assert "\nHeard." in d.output


@pytest.mark.parametrize("threshold, said", [
    (0.999, "Close, but not heard: the best score is 0.0"),  # the clip scores about 0.99
    (0.5, "Nothing like the wake word was heard"),
])
def test_test_wake_hints_at_the_threshold(threshold, said, run_daemon, tmp_path):
    clip = "hey_jarvis.wav" if threshold > 0.9 else "command_paris.wav"
    (tmp_path / "mic.raw").write_bytes(silence(0.5) + read_wav(clip) + silence(1.0))
    d = run_daemon(FINE + f"[wake]\nthreshold = {threshold}\n", key=None, args=["test-wake", "--seconds", "3"])
    assert d.wait_exit() == 0, d.output
    assert "Listening to mic_file" in d.output  # live, from the configured microphone
    assert said in d.output, d.output
    assert "Traceback" not in d.output


@pytest.mark.parametrize("auto_gain, said", [(0, "Not heard"), (3, "Heard.")])
def test_test_wake_scores_what_the_detector_hears_after_the_automatic_gain(auto_gain, said, run_daemon, tmp_path):
    """A voice in noise at 5 dB SNR that the detector misses, and hears after WebRTC's automatic gain
    (bench/noise_gain.py: best score 0.17 without, 0.86 with): test-wake scores it as the daemon would."""
    import wave

    from test_wake import noisy

    path = tmp_path / "noisy.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(noisy(silence(5.0) + read_wav("hey_jarvis_rp.wav") + silence(1.5), snr_db=5))
    d = run_daemon(FINE + f"auto_gain_dbfs = {auto_gain}\n", key=None, args=["test-wake", "--file", str(path)])
    assert d.wait_exit() == 0, d.output
    header = "scores after the automatic gain (audio.auto_gain_dbfs) of 0.1 and above"
    assert (header in d.output) == bool(auto_gain), d.output
    assert f"\n{said}" in d.output, d.output


# -- pivoice run --echo ------------------------------------------------------------------------------


def test_run_echo_plays_back_what_was_said_after_the_wake_word_without_a_key(soundcard, run_daemon, tmp_path):
    """On the paced card: the wake word, the chime, then the question; it comes back from the speaker."""
    import time

    import soxr
    from harness import SpeakerRecorder, aligned_correlation

    command = read_wav("command_time_tokyo.wav")
    rec = SpeakerRecorder(soundcard, tmp_path)
    d = run_daemon('[audio]\ninput_device = "pv_mic"\noutput_device = "pv_spk"\n[conversation]\n'
                   'follow_up_seconds = 2.0\n', key=None, args=["run", "--echo"])
    d.wait_for("ready: listening")
    soundcard.say_and_wait(read_wav("hey_jarvis.wav") + silence(0.3))
    d.wait_for("connecting")
    time.sleep(0.8)  # the chime, then the question
    soundcard.say(command + silence(1.5))
    d.wait_for("no follow-up: conversation over", timeout=30)
    assert d.stop()[0] == 0
    rec.stop()
    assert d.count(r"WARNING pivoice.live: ECHO MODE \(pivoice run --echo\): no Gemini") == 1
    assert d.count(r"echo: playing back \d+\.\d s of what it heard") == 1
    said = soxr.resample(np.frombuffer(command, "<i2").astype(np.float64), 16000, 24000)
    heard = aligned_correlation(rec.samples.astype(np.float64), said)
    assert heard >= 0.95, f"what was played back correlates {heard:.3f} with the question"
    assert "GEMINI_API_KEY" not in d.output and "Traceback" not in d.output


# -- pivoice test-speaker ----------------------------------------------------------------------------


def test_test_speaker_plays_a_tone_and_each_earcon_at_the_kept_volume(run_daemon, tmp_path):
    import json

    from pivoice.config import EarconSettings
    from pivoice.diagnose.testspeaker import tone
    from pivoice.earcons import NAMES, Earcons

    state = tmp_path / "state"
    state.mkdir()
    (state / "volume.json").write_text(json.dumps({"percent": 100}))
    d = run_daemon(FINE, key=None, args=["test-speaker"], extra_env={"STATE_DIRECTORY": str(state)})
    assert d.wait_exit() == 0, d.output
    assert f"Playing to spk_file at volume 100 % (pivoice's software gain; kept in {state}/volume.json)" in d.output
    for name in NAMES:
        assert f"  the {name} earcon (built-in, earcons.volume 0.4)" in d.output
    played = (tmp_path / "speaker.raw").read_bytes()
    sounds = [tone(), *(Earcons(EarconSettings(), None).sounds[n] for n in NAMES)]
    at = [played.find(s) for s in sounds]
    assert all(a >= 0 for a in at) and at == sorted(at), at  # each, whole, in that order
    # At a kept volume of 50 %, pivoice's software gain: the same tone, quieter.
    (state / "volume.json").write_text(json.dumps({"percent": 50}))
    (tmp_path / "speaker.raw").unlink()
    d = run_daemon(FINE, key=None, args=["test-speaker"], extra_env={"STATE_DIRECTORY": str(state)})
    assert d.wait_exit() == 0 and "at volume 50 %" in d.output, d.output
    loud = np.frombuffer(tone(), "<i2")
    quiet = np.frombuffer((tmp_path / "speaker.raw").read_bytes(), "<i2")[: loud.size]  # the tone comes first
    assert 0.02 < np.abs(quiet).max() / np.abs(loud).max() < 0.045  # 50 %: about -30 dB
