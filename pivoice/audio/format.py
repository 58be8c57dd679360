"""The audio formats pivoice speaks, defined once.

The Live API takes 16 kHz mono 16-bit little-endian PCM and answers with 24 kHz mono of the same: the
microphone chain, the wake-word models and the session work at IN_RATE; playback, the answer's checks
and the echo canceller's reference at OUT_RATE. A device that runs another format is converted at its
edge (convert.py).
"""

from __future__ import annotations

IN_RATE = 16000  # Hz: the microphone chain, the wake word, what the Live API hears
OUT_RATE = 24000  # Hz: what the Live API says and the speaker plays
CHANNELS = 1
SAMPLE_BYTES = 2  # 16-bit
SAMPLE_DTYPE = "<i2"  # numpy: signed 16-bit little-endian
IN_MIME = f"audio/pcm;rate={IN_RATE}"  # how audio sent to the Live API is labelled
