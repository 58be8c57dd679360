"""`pivoice test-mic`: the microphone's level as pivoice hears it, live, then advice.

It opens audio.input_device as the daemon does (the same format negotiation, audio.input_gain_db applied)
but keeps every channel apart, so that on a HAT with two or more microphones it can say which one carries
the voice. Levels are in dBFS (0 is the loudest a sample can be). Counted in audio read, not wall time.
"""

from __future__ import annotations

import select
import sys
import time
from typing import TextIO

import numpy as np

from ..audio.capture import STALL_SECONDS
from ..audio.cards import resolve
from ..audio.convert import decode
from ..audio.device import Opener, Want
from ..audio.format import IN_RATE
from ..audio.level import CLIP
from ..audio.level import dbfs as level_dbfs
from ..audio.probe import accepts
from ..config import Settings
from ..errors import DeviceError

BLOCK_SECONDS = 0.1  # one level reading
QUIET_DBFS = -45.0  # the loud parts of speech below this: too quiet for the wake word
LOUD_DBFS = -3.0  # peaks above this: too close to clipping
TARGET_DBFS = -25.0  # where speech should be
MAX_GAIN_DB = 30.0  # the highest audio.input_gain_db


def dbfs(x: float) -> float:
    """dBFS of an RMS or peak level."""
    return level_dbfs(x * x)


def channels_to_read(settings: Settings) -> int:
    """All the channels the microphone really has (up to 8): a 'plughw:' name is asked about its 'hw:' card."""
    audio = settings.audio
    if audio.input_channels:
        return audio.input_channels
    name = resolve(audio.input_device, "audio.input_device")
    for probe in (name, "hw:" + name[len("plughw:"):] if name.startswith("plughw:") else None):
        got = accepts(probe, True) if probe else None
        if got is not None and not isinstance(got, str) and got.channel_range[0] > 1:
            return min(got.channel_range[0], 8)
    return 1


def run(settings: Settings, seconds: float, out: TextIO = sys.stdout) -> int:
    audio = settings.audio
    want = Want(audio.input_rate or IN_RATE, channels_to_read(settings), audio.input_period_ms, audio.input_periods)
    pcm, got = Opener("capture", audio.input_device, "audio.input_device", want).open()
    gain = 10 ** (audio.input_gain_db / 20)
    live = out.isatty()
    print(f"Listening to {audio.input_device} ({got.describe()}) for {seconds:g} s; input_gain_db "
          f"{audio.input_gain_db:+g}. Speak as you would to the speaker, from where you would.", file=out)
    poll = select.poll()
    for fd, mask in pcm.polldescriptors():
        poll.register(fd, mask)
    pending = np.zeros((0, got.channels), np.float64)
    block = max(1, int(got.rate * BLOCK_SECONDS))
    rms: list[np.ndarray] = []  # per block, per channel
    peaks: list[np.ndarray] = []
    clipped = np.zeros(got.channels, np.int64)
    last_wall = 0.0
    try:
        heard = time.monotonic()
        while len(rms) * BLOCK_SECONDS < seconds:
            n, data = pcm.read() if poll.poll(500) else (0, b"")
            if n <= 0:
                silent_for(heard, audio.input_device)
                continue
            heard = time.monotonic()
            x = decode(data, got.sample_format).astype(np.float64) * gain
            pending = np.concatenate([pending, np.clip(x, -32768, 32767).reshape(-1, got.channels)])
            while len(pending) >= block:
                b, pending = pending[:block], pending[block:]
                rms.append(np.sqrt(np.mean(b ** 2, axis=0)))
                peaks.append(np.max(np.abs(b), axis=0))
                clipped += np.count_nonzero(np.abs(b) >= CLIP, axis=0)
                if live and time.monotonic() - last_wall > 0.1:
                    last_wall = time.monotonic()
                    out.write("\r" + "  ".join(_meter(c, rms[-1][c], peaks[-1][c]) for c in range(got.channels)))
                    out.flush()
                elif not live and len(rms) % 10 == 0:
                    print("  ".join(_meter(c, np.max(np.stack(rms[-10:]), axis=0)[c], np.max(np.stack(peaks[-10:]),
                                                                                            axis=0)[c])
                                    for c in range(got.channels)), file=out)
    finally:
        pcm.close()
    if live:
        out.write("\n")
    print(advice(np.stack(rms), np.stack(peaks), clipped, audio.input_gain_db), file=out)
    return 0


def silent_for(since: float, device: str) -> None:
    """A device that delivers nothing for STALL_SECONDS (a HAT without its clock, a suspended source) is
    said so, rather than waited for forever."""
    if time.monotonic() - since > STALL_SECONDS:
        raise DeviceError(f"audio.input_device: the capture device {device} opened but delivered no audio for "
                          f"{STALL_SECONDS:g} s (its driver or clock is not running, or a sound server holds it "
                          f"suspended)")


def _meter(channel: int, rms: float, peak: float) -> str:
    level = dbfs(rms)
    bar = "#" * max(0, min(20, int((level + 60) / 3)))
    clip = " CLIP" if peak >= CLIP else ""
    return f"ch{channel} {bar:<20} {level:6.1f} dBFS peak {dbfs(peak):6.1f}{clip}"


def advice(rms: np.ndarray, peaks: np.ndarray, clipped: np.ndarray, gain_db: float) -> str:
    """What the readings say, per channel and overall. `rms`, `peaks`: blocks x channels."""
    loud = np.percentile(rms, 95, axis=0)  # the loud parts: speech, if someone spoke
    floor = np.percentile(rms, 10, axis=0)  # the quiet between
    lines = ["Summary:"]
    for c in range(rms.shape[1]):
        lines.append(f"  channel {c}: speech {dbfs(loud[c]):.1f} dBFS, quiet {dbfs(floor[c]):.1f} dBFS "
                     f"({dbfs(loud[c]) - dbfs(floor[c]):.0f} dB apart), peak {dbfs(peaks[:, c].max()):.1f} dBFS, "
                     f"{int(clipped[c])} samples clipped")
    best = int(np.argmax([dbfs(loud[c]) - dbfs(floor[c]) for c in range(rms.shape[1])]))
    level, apart = dbfs(loud[best]), dbfs(loud[best]) - dbfs(floor[best])
    if clipped.sum() > 0 or dbfs(peaks.max()) > LOUD_DBFS:
        lines.append(f"Too loud: the microphone clips (or nearly). Turn its capture gain down (alsamixer -c CARD, "
                     f"F4 for capture), or set audio.input_gain_db lower (now {gain_db:+g}).")
    elif apart < 10:
        lines.append("Speech hardly stands out from the quiet: was someone speaking? If so, the room is noisy "
                     "or the microphone points away.")
    elif level < QUIET_DBFS:
        wanted = gain_db + (TARGET_DBFS - level)
        fix = (f"or set audio.input_gain_db to about {wanted:+.0f}" if wanted <= MAX_GAIN_DB else
               f"first: it needs {wanted - gain_db:.0f} dB more, and audio.input_gain_db goes up to {MAX_GAIN_DB:+g}")
        lines.append(f"Too quiet: speech reaches {level:.0f} dBFS. Raise the capture gain (alsamixer) {fix}.")
    else:
        lines.append(f"The level is good: speech at {level:.0f} dBFS, {apart:.0f} dB above the quiet.")
    if rms.shape[1] > 1:
        silent = [c for c in range(rms.shape[1]) if dbfs(loud[c]) < -80]
        if silent:
            lines.append(f"Channel {', '.join(map(str, silent))} carries nothing.")
        others = [dbfs(loud[c]) - dbfs(floor[c]) for c in range(rms.shape[1]) if c != best]
        if others and apart - max(others) >= 3:
            lines.append(f"Channel {best} carries the voice best ({apart - max(others):.0f} dB clearer): set "
                         f"audio.input_channel = {best}.")
        else:
            lines.append('The channels hear the voice alike: audio.input_channel = "mix" is right.')
    return "\n".join(lines)
