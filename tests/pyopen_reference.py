"""Reference scores from pyopen-wakeword's own engine, run in its own process.

pyopen-wakeword loads its bundled TFLite C library with RTLD_GLOBAL; keeping it out of the test process
keeps it from meeting LiteRT's. Usage: python pyopen_reference.py MODEL AUDIO.raw -> JSON list of scores,
one per 80 ms chunk (the last score the chunk produced).
"""

import json
import sys
from pathlib import Path

from pyopen_wakeword import Model, OpenWakeWord, OpenWakeWordFeatures

CHUNK_BYTES = 2560  # 1280 samples

model, audio_path = sys.argv[1], sys.argv[2]
pcm = Path(audio_path).read_bytes()
features = OpenWakeWordFeatures.from_builtin()
word = OpenWakeWord.from_builtin(Model(model)) if "/" not in model else OpenWakeWord.from_model(model)
scores = []
for i in range(0, len(pcm) - len(pcm) % CHUNK_BYTES, CHUNK_BYTES):
    last = None
    for emb in features.process_streaming(pcm[i : i + CHUNK_BYTES]):
        for p in word.process_streaming(emb):
            last = p
    scores.append(last)
print(json.dumps(scores))
