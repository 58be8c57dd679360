"""`pivoice test-speaker`: a tone, then each earcon, through audio.output_device at the volume the
service keeps (its volume.json: the mixer control, or pivoice's software gain), saying what plays."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TextIO

import numpy as np

from ..audio.device import wants
from ..audio.format import OUT_RATE
from ..audio.playback import Playback
from ..config import Settings
from ..earcons import NAMES, Earcons
from ..statedir import state_dir
from ..tools.volume import Volume

SERVICE_STATE = Path("/var/lib/pivoice")  # the service's StateDirectory=


def tone(seconds: float = 1.0, freq: float = 440.0, dbfs: float = -12.0) -> bytes:
    t = np.arange(int(seconds * OUT_RATE)) / OUT_RATE
    edge = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)
    return (np.sin(2 * np.pi * freq * t) * edge * 10 ** (dbfs / 20) * 32767).astype("<i2").tobytes()


def _play(playback: Playback, pcm: bytes) -> None:
    playback.play(pcm)
    time.sleep(0.05)
    while not playback.idle:
        time.sleep(0.02)
    time.sleep(0.3)


def run(settings: Settings, out: TextIO = sys.stdout) -> int:
    audio = settings.audio
    _, want, _ = wants(audio)
    playback = Playback(audio.output_device, want=want)
    playback.open()  # a device that cannot be opened: the error names the key
    # (os.path.exists: /var/lib/pivoice is 0700, and Path.exists() raises PermissionError there without sudo)
    state = SERVICE_STATE if not os.environ.get("STATE_DIRECTORY") and os.path.exists(SERVICE_STATE / "volume.json") \
        else state_dir()
    volume = Volume(audio.volume_control, audio.mixer_device, playback, state / "volume.json")
    volume.open()
    how = (f"mixer control '{audio.volume_control}' on {audio.mixer_device}" if audio.volume_control
           else "pivoice's software gain")
    print(f"Playing to {audio.output_device} at volume {volume.get()} % ({how}; kept in {state / 'volume.json'}):",
          file=out)
    playback.start()
    try:
        print("  a tone: 1 s at 440 Hz, -12 dBFS", file=out, flush=True)
        _play(playback, tone())
        earcons = Earcons(settings.earcons, playback)
        if not earcons.enabled:
            print("  (earcons are off: earcons.enabled = false)", file=out)
        for name in NAMES if earcons.enabled else ():
            source = getattr(settings.earcons, name) or "built-in"
            print(f"  the {name} earcon ({source}, earcons.volume {settings.earcons.volume:g})", file=out, flush=True)
            _play(playback, earcons.sounds[name])
    finally:
        playback.close()
    print("Heard them all, clearly? If not: `pivoice devices` shows the speaker's device, `alsamixer` its "
          "volume; a Pi 5 has no headphone jack (use HDMI, a USB speaker or a HAT).", file=out)
    return 0
