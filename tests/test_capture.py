"""The capture thread's hand-over to the event loop, on a real ALSA PCM (the file plugin, unpaced)."""

from __future__ import annotations

import asyncio

from harness import in_process_env

from pivoice.audio.capture import IDLE_BATCH, RATE, WANT, Capture
from pivoice.wake.detector import Detection

PERIOD_FRAMES = WANT.params(RATE, 1).period_frames


def test_idle_frames_go_to_the_loop_in_batches_and_a_detection_at_once(home, tmp_path, monkeypatch):
    """While idle the loop wakes once per IDLE_BATCH frames, not per frame; a frame with a detection goes
    at once, with those before it; every frame arrives, in order; in a conversation, each frame at once."""
    for k, v in in_process_env(home).items():
        monkeypatch.setenv(k, v)
    (tmp_path / "mic.raw").write_bytes(b"".join(bytes([n, 0]) * PERIOD_FRAMES for n in range(1, 21)))
    wake_frame = IDLE_BATCH + 2  # this frame has the wake word
    handed: list[list[int]] = []  # the frames (1-based) of each hand-over

    class Spy(Capture):
        def _hand_over(self, items):
            handed.append([frame.end // PERIOD_FRAMES for frame, _ in items])
            super()._hand_over(items)

    def scorer(frame):
        if frame.end != wake_frame * PERIOD_FRAMES:
            return None
        cap.idle = False  # the conversation begins (here at once; the assistant does it when the loop has it)
        return Detection("hey_jarvis", 0.9, frame.end)

    cap = Spy("mic_file", scorer=scorer)
    cap.open()
    cap.scoring = cap.idle = True

    async def main() -> list[tuple[int, bool]]:
        cap.start(asyncio.get_running_loop())
        got = []
        async for frame, hit in cap.frames():
            got.append((frame.pcm[0], hit is not None))
            if len(got) == 16:
                return got
        return got

    try:
        got = asyncio.run(asyncio.wait_for(main(), 20))
    finally:
        cap.close()
    assert [n for n, _ in got] == list(range(1, 17))  # all of them, in order
    assert [hit for _, hit in got] == [n == wake_frame for n in range(1, 17)]
    assert handed[0] == list(range(1, IDLE_BATCH + 1))
    assert handed[1] == list(range(IDLE_BATCH + 1, wake_frame + 1))  # the detection did not wait
    assert all(len(h) == 1 for h in handed[2:]), handed  # in a conversation: one frame at a time


def test_while_idle_it_reads_the_first_half_of_a_chunk_with_the_second(soundcard, home, monkeypatch):
    """With 40 ms periods the detector scores every other one (a chunk is 80 ms), unless a word is near: while
    idle the capture thread sleeps through the first half of a chunk and reads both halves in one wake-up
    (on a device paced by a clock: the PulseAudio card). Every sample is still read, in order, and the wake
    word is heard."""
    import threading

    from harness import read_wav, silence

    from pivoice.wake.detector import WakeDetector, resolve_models

    for k, v in in_process_env(home).items():
        monkeypatch.setenv(k, v)
    rests = []

    class Counting(threading.Event):
        def wait(self, timeout=None):
            if timeout:
                rests.append(timeout)
            return super().wait(timeout)

    detector = WakeDetector(resolve_models(["hey_jarvis"]), 0.5)
    cap = Capture("pv_mic", scorer=detector.score, patient=detector.patient)
    cap._awake = Counting()
    cap.open()
    cap.scoring = cap.idle = True

    async def main() -> tuple[list[int], list]:
        await detector.load()
        cap.start(asyncio.get_running_loop())
        ends, hits = [], []
        soundcard.say(silence(2.0) + read_wav("hey_jarvis.wav") + silence(1.5))
        async with asyncio.timeout(20):
            async for frame, hit in cap.frames():
                ends.append(frame.end)
                if hit is not None:
                    hits.append(hit)
                    cap.idle = False  # as a conversation would
                if len(ends) >= 5.5 * RATE // PERIOD_FRAMES:
                    break
        return ends, hits

    try:
        ends, hits = asyncio.run(main())
    finally:
        cap.close()
    assert ends == [PERIOD_FRAMES * (i + 1) for i in range(len(ends))]  # every sample, in order
    assert hits and hits[0].name == "hey_jarvis"
    # About one rest per chunk before the wake word (a few periods at the start are read as they come).
    before = hits[0].end // PERIOD_FRAMES
    assert len(rests) >= 0.35 * before, (len(rests), before)
