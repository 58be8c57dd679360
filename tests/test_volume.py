"""The volume tools (issue 15): a real ALSA mixer control (the virtual card's "Master", through the ALSA
pulse ctl plugin) changed by set_volume, with the level at the speaker following; pivoice's own gain when
no control is named; the volume kept across a restart; a control that is not there said clearly."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from fakes import until
from google.genai import types
from harness import SpeakerRecorder, in_process_env, tone

from pivoice.audio.playback import Playback
from pivoice.tools import ToolRunner
from pivoice.tools.volume import Volume


async def call(volume: Volume, name: str, args: dict) -> dict:
    sent: list = []
    ToolRunner(volume.tools(), sent.extend).call([types.FunctionCall(id="1", name=name, args=args)])
    await until(lambda: sent, f"the result of {name}")
    return sent[0]["response"]


def play(playback: Playback, seconds: float = 1.0) -> None:
    playback.play(tone(seconds, level=0.3))
    deadline = time.monotonic() + 10
    while not playback.idle and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.4)


def test_set_volume_moves_the_mixer_control_and_the_level_at_the_speaker(soundcard, tmp_path, monkeypatch):
    import alsaaudio

    for k, val in in_process_env(soundcard.runtime).items():
        monkeypatch.setenv(k, val)
    state = tmp_path / "volume.json"
    playback = Playback("pv_spk")
    playback.open()
    playback.start()
    rec = SpeakerRecorder(soundcard, tmp_path, level=100)
    try:
        volume = Volume("Master", "pv_mixer", playback, state)
        volume.open()
        assert asyncio.run(call(volume, "get_volume", {})) == {"percent": 100}
        time.sleep(1.0)
        play(playback)
        loud = np.abs(rec.samples).max()
        mark = len(rec.samples)
        assert asyncio.run(call(volume, "set_volume", {"percent": 30})) == {"percent": 30}
        assert alsaaudio.Mixer("Master", device="pv_mixer").getvolume() == [30]  # the control itself
        play(playback)
        quiet = np.abs(rec.samples[mark:]).max()
        # PulseAudio's volume is cubic: 30 % is 0.027 of full scale.
        assert 0.015 < quiet / loud < 0.045, (loud, quiet)
        assert asyncio.run(call(volume, "set_volume", {"change": 20})) == {"percent": 50}
        # A restart: the control was moved meanwhile (by someone, or a reboot), the kept volume comes back.
        alsaaudio.Mixer("Master", device="pv_mixer").setvolume(100)
        again = Volume("Master", "pv_mixer", playback, state)
        again.open()
        assert again.get() == 50
    finally:
        rec.stop()
        playback.close()


def test_without_a_control_pivoice_scales_what_it_plays_and_keeps_it(soundcard, tmp_path, monkeypatch):
    for k, val in in_process_env(soundcard.runtime).items():
        monkeypatch.setenv(k, val)
    state = tmp_path / "volume.json"
    playback = Playback("pv_spk")  # (in process, only the card's PCMs: ALSA keeps the first config it read)
    playback.open()
    playback.start()
    rec = SpeakerRecorder(soundcard, tmp_path, level=100)
    try:
        volume = Volume("", "default", playback, state)
        volume.open()
        time.sleep(1.0)
        play(playback)
        loud = np.abs(rec.samples).max()
        mark = len(rec.samples)
        got = asyncio.run(call(volume, "set_volume", {"percent": 90}))
        assert got == {"percent": 90} and abs(playback.gain - 0.5) < 0.01  # 10 % down: about 6 dB
        play(playback)
        assert abs(np.abs(rec.samples[mark:]).max() / loud - playback.gain) < 0.02
        assert "give either percent" in asyncio.run(call(volume, "set_volume", {}))["error"]
        again = Volume("", "default", playback, state)
        playback.gain = 1.0
        again.open()
        assert again.get() == 90 and abs(playback.gain - 0.5) < 0.01
    finally:
        rec.stop()
        playback.close()


def test_a_control_that_is_not_there_is_said_with_the_ones_that_are(soundcard, tmp_path, monkeypatch):
    for k, val in in_process_env(soundcard.runtime).items():
        monkeypatch.setenv(k, val)
    volume = Volume("Speaker", "pv_mixer", None, tmp_path / "volume.json")
    volume.open()
    got = asyncio.run(call(volume, "set_volume", {"percent": 10}))
    assert "there is no mixer control 'Speaker' on 'pv_mixer'" in got["error"] and "Master" in got["error"]
