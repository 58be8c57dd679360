"""The echo canceller (pivoice/audio/aec.py) on a simulated room (tests/echo_scene.py): real clips, the real
wake-word model, the canceller driven as the daemon drives it. Seeded: the same numbers every run.
(tests/test_gpio.py checks the same end to end, through the paced PulseAudio card.)"""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from echo_scene import FRAME, LEAD, drive, scene

from pivoice.audio.aec import EchoCanceller
from pivoice.wake.openwakeword import CHUNK_SAMPLES, OpenWakeWordEngine, builtin_models_dir


def db(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(a.astype(np.float64) ** 2) / np.sum(b.astype(np.float64) ** 2)))


def seconds(t0: float, t1: float) -> slice:
    return slice(int((LEAD + t0) * 16000), int((LEAD + t1) * 16000))


@pytest.fixture(scope="module")
def engine():
    return OpenWakeWordEngine({"hey_jarvis": builtin_models_dir() / "hey_jarvis.tflite"})


def peak(engine, x: np.ndarray, t: float) -> float:
    """The highest wake-word score within 2.5 s of moment `t` (s into the signal)."""
    engine.reset()
    scores = [s["hey_jarvis"] for s in engine.process(x.astype("<i2").tobytes())]
    return max(scores[int(t * 16000 / CHUNK_SAMPLES) : int((t + 2.5) * 16000 / CHUNK_SAMPLES)])  # a score per chunk


def test_it_takes_the_answer_out_and_leaves_the_person(engine):
    sc = scene(20.0, delay=0.06, gain=1.0, people=[9.0, 12.0, 14.0])
    aec = EchoCanceller()
    out = drive(aec, sc.reply, sc.mic)[0]
    # The echo path: 60 ms of room plus the 3 ms by which the microphone's clock reads late.
    assert aec.delay is not None and abs(aec.delay / 16 - 63) <= 3, aec.delay
    clean = drive(EchoCanceller(), sc.reply, sc.echo_only)[0]
    erle = db(sc.echo_only[seconds(10, 20)], clean[seconds(10, 20)])
    print(f"echo return loss enhancement {erle:.1f} dB")
    assert erle >= 15
    for t in sc.people:
        raw, cancelled = peak(engine, sc.mic, t), peak(engine, out, t)
        print(f"person at {t:.0f} s: raw {raw:.3f}, after the canceller {cancelled:.3f}")
        assert raw < 0.5 and cancelled >= 0.5


def test_a_person_talking_over_the_answer_does_not_undo_what_it_learned():
    """Double talk: the filter must not adapt to the person. Just after each time the person speaks, the
    echo is cancelled about as well as in the same moment of a run where nobody spoke."""
    people = [8.0, 11.0, 14.0, 17.0]
    sc = scene(20.0, delay=0.04, gain=1.0, people=people)
    aec = EchoCanceller()
    out = drive(aec, sc.reply, sc.mic)[0]
    # In place before anyone speaks (a sub-sample refinement while it settles is fine), and no voice moves it.
    checked_at, moved_at = 0, []
    for e in aec.events:
        if e.startswith("check at "):
            checked_at = int(e.split()[2].rstrip(":"))
        elif "moved" in e:
            moved_at.append(checked_at)
    assert not [at for at in moved_at if at >= people[0] * 16000], list(aec.events)
    alone = drive(EchoCanceller(), sc.reply, sc.echo_only)[0]
    for t in people:
        after = seconds(t + 1.0, t + 2.0)  # the clip is 0.9 s long
        with_person, without = db(sc.echo_only[after], out[after]), db(sc.echo_only[after], alone[after])
        print(f"after the person at {t:.0f} s: {with_person:.1f} dB (nobody speaking: {without:.1f} dB)")
        assert with_person >= without - 3


def test_it_follows_the_echo_path_when_it_moves():
    """The echo comes 40 ms late, then 95 ms late (say, another audio server latency after a restart):
    within five seconds the canceller finds the new path and moves what it learned there."""
    a, b = scene(24.0, 0.04, 1.0, []), scene(24.0, 0.095, 1.0, [])
    mic = np.concatenate([a.mic[: seconds(0, 12).stop], b.mic[seconds(0, 12).stop :]])
    aec = EchoCanceller()
    out = drive(aec, a.reply, mic)[0]
    erle = [db(mic[seconds(t, t + 1)], out[seconds(t, t + 1)]) for t in range(12, 20)]
    print("echo return loss enhancement per second after the move:", " ".join(f"{e:.1f}" for e in erle))
    assert min(erle[5:]) >= 15


def test_the_reference_is_what_was_heard_when():
    """Two playback streams (a stop between them): each sample of the reference is found at the moment
    it is heard, and what a stop threw away is never heard."""
    aec = EchoCanceller()
    click = np.zeros(480, np.int16)
    click[240] = 20000
    silence = np.zeros(480, np.int16)

    def play(start: float, periods: list[np.ndarray]) -> None:
        for i, p in enumerate(periods):
            aec.played(p.tobytes(), start + (i + 1) * 0.02)

    play(10.0, [silence] * 10 + [click] + [silence] * 5)  # click heard at 10.21
    aec.dropped(10.25)  # the last 70 ms never played
    play(20.0, [silence] * 3 + [click] + [silence] * 10)  # a new stream: click at 20.07
    for heard in (10.21, 20.07):
        ref = aec._reference(heard - 0.01, 320)  # 20 ms around it
        assert abs(int(np.argmax(np.abs(ref))) - 160) <= 1, np.argmax(np.abs(ref))
    assert not aec._reference(10.25 + 0.001, 1600).any()  # after the stop: nothing


@pytest.mark.parametrize("frames", [[427, 426], [1281, 1279]])
def test_frames_of_any_length(frames):
    """A capture rate converter hands over frames that are not whole filter blocks."""
    sc = scene(20.0, delay=0.06, gain=1.0, people=[])
    out = drive(EchoCanceller(), sc.reply, sc.mic, frames=frames)[0]
    assert out.size >= sc.mic.size - max(frames)  # every sample given comes back, in place
    erle = db(sc.mic[seconds(10, 19)], out[seconds(10, 19)])
    print(f"frames of {frames}: {erle:.1f} dB")
    assert erle >= 15


def test_pauses_in_the_answer_do_not_move_the_echo_path():
    sc = scene(20.0, delay=0.06, gain=1.0, people=[], pauses=[(t, 0.4) for t in np.arange(3.0, 20.0, 2.0)])
    aec = EchoCanceller()
    out = drive(aec, sc.reply, sc.mic)[0]
    assert abs(aec.delay / 16 - 63) <= 3, aec.delay
    assert db(sc.mic[seconds(10, 20)], out[seconds(10, 20)]) >= 15


@pytest.mark.parametrize("bias", [0.0, 0.0004, -0.002])
def test_a_new_playback_stream_is_put_in_place(bias):
    """A second answer after a pause is a new playback stream, placed in time by its own clock estimate
    (off by `bias` more): within half a second the canceller has it in place again, to a fraction of a
    sample, without relearning the room."""
    sc = scene(20.0, delay=0.06, gain=1.0, people=[], pauses=[(10.0, 1.0)])
    aec = EchoCanceller()
    out = drive(aec, sc.reply, sc.mic, skip_silence=True, bias=lambda t: bias if t > LEAD + 10.5 else 0.0)[0]
    assert len(aec._epochs) == 2
    erle = [db(sc.mic[seconds(t, t + 0.5)], out[seconds(t, t + 0.5)]) for t in np.arange(11.0, 14.0, 0.5)]
    print("second answer, per 0.5 s:", " ".join(f"{e:.1f}" for e in erle))
    assert erle[0] >= -1  # while it is not in place yet, the microphone goes out as it is, not worse
    assert min(erle[1:]) >= 12


def test_clock_drift_between_microphone_and_speaker():
    """A USB microphone and a HAT speaker run on different crystals: 20 ppm apart here. (A regression
    guard: the filter alone keeps 16 dB here; at 100 ppm the canceller is down to about 9 dB.)"""
    sc = scene(20.0, delay=0.06, gain=1.0, people=[])
    mic = soxr.resample(sc.echo_only, 16000, 16000 * (1 + 20e-6)).astype(np.float32)[: sc.echo_only.size]
    out = drive(EchoCanceller(), sc.reply, mic)[0]
    erle = db(mic[seconds(10, 20)], out[seconds(10, 20)])
    print(f"20 ppm: {erle:.1f} dB")
    assert erle >= 14


def test_an_alignment_check_finds_a_fraction_of_a_sample():
    sc = scene(12.0, delay=0.06, gain=1.0, people=[])
    aec = EchoCanceller()
    drive(aec, sc.reply, sc.mic[: seconds(0, 11).stop])  # ends while the answer plays
    placed = aec._epochs[-1].correction
    for off in (0.5, -0.3, 1.5):
        aec._epochs[-1].correction = placed + off / 16000  # the reference misplaced by `off` samples
        aec._far_since_track = 16000
        aec._track()
        print(f"misplaced by {off} samples: {(aec._epochs[-1].correction - placed) * 16000:+.2f} left")
        assert abs(aec._epochs[-1].correction - placed) * 16000 <= 0.15


def test_lost_capture_audio_is_found_again():
    """An overrun loses 30 ms of microphone audio: its index goes on, its time jumped."""
    sc = scene(20.0, delay=0.06, gain=1.0, people=[])
    out = drive(EchoCanceller(), sc.reply, sc.echo_only, lost=(10.0, 0.03))[0]
    mic = np.concatenate([sc.echo_only[: seconds(10, 10).start], sc.echo_only[seconds(10.03, 10.03).start :]])
    erle = [db(mic[seconds(t, t + 0.5)], out[seconds(t, t + 0.5)]) for t in (10.5, 11.0, 12.0)]
    print("after the loss:", " ".join(f"{e:.1f}" for e in erle))
    assert min(erle) >= 15


def test_a_stop_throws_away_what_was_never_heard():
    aec = EchoCanceller()
    loud = (np.ones(480) * 8000).astype(np.int16)
    for i in range(20):
        aec.played(loud.tobytes(), 10.0 + (i + 1) * 0.02)
    aec._epochs[-1].correction = 0.005  # a correction the checks found: not part of the playback's own timeline
    aec.dropped(10.3)  # 0.1 s written was never played
    assert aec._epochs[-1].end == aec._epochs[-1].first + int(0.3 * 16000)
    heard = aec._reference(10.0 + 0.005, int(0.4 * 16000))
    assert heard[: int(0.25 * 16000)].all() and not heard[int(0.31 * 16000) :].any()


def test_a_filter_that_blew_up_is_reset():
    sc = scene(6.0, delay=0.06, gain=1.0, people=[])
    aec = EchoCanceller()
    drive(aec, sc.reply, sc.mic[: 4 * 16000])
    aec._wb[0, 3] = np.nan
    frame = sc.mic[4 * 16000 : 4 * 16000 + FRAME].astype("<i2").tobytes()
    out = np.frombuffer(aec.process(4 * 16000 + FRAME, 4.0 + FRAME / 16000 + 0.003, frame), "<i2")
    assert out.size == FRAME and np.isfinite(aec._wb).all() and np.isfinite(aec._wf).all()


def test_a_late_clock_reading_is_not_a_new_stream():
    """The playback thread held up once between reading the device and the clock (a busy system)."""
    sc = scene(14.0, delay=0.06, gain=1.0, people=[])
    aec = EchoCanceller()
    late = {int(t * 50) for t in (6.0, 9.0, 9.5)}  # periods whose heard-at estimate comes 30 ms late
    out = drive(aec, sc.reply, sc.echo_only, bias=lambda t: 0.03 if int((t - LEAD) * 50) in late else 0.0)[0]
    assert len(aec._epochs) == 1
    assert db(sc.echo_only[seconds(8, 13)], out[seconds(8, 13)]) >= 18


@pytest.mark.parametrize("bias", [0.0011, -0.002])
@pytest.mark.parametrize("start", [10.35, 10.4, 10.45])
def test_a_person_talking_as_a_new_playback_stream_starts_is_heard(engine, bias, start):
    """The speaker ran dry for a moment (the answer came late, or the playback thread did), so its next
    period starts a new stream, placed by its own clock estimate (off by `bias` more than the first), and
    the person starts talking 0.15-0.25 s later. Until the stream is checked in place the microphone goes out
    as it is, and over an echo as loud as them the person's wake word is lost: the check must come soon
    (after 0.1 s of answer), and must place the stream although nothing predicts the person's voice.
    (Over person start times 0.05-0.45 s after the resume and four biases: 36 of 36 heard; 16 before.)"""
    sc = scene(16.0, delay=0.06, gain=1.0, people=[start], pauses=[(10.0, 0.2)])
    aec = EchoCanceller()
    out = drive(aec, sc.reply, sc.mic, skip_silence=True, bias=lambda t: bias if t > LEAD + 10.1 else 0.0)[0]
    assert len(aec._epochs) == 2
    raw, cancelled = peak(engine, sc.mic, sc.people[0]), peak(engine, out, sc.people[0])
    print(f"person at the new stream's start: raw {raw:.3f}, after the canceller {cancelled:.3f}")
    events = list(aec.events)
    print(*events[max(i for i, e in enumerate(events) if "new playback" in e) :][:6], sep="\n")
    assert raw < 0.5 and cancelled >= 0.5


def test_a_streams_clock_is_placed_as_numpy_percentile_would_without_importing_numpy_ma():
    """A stream's offset is the lower quartile of its clock estimates, numpy.percentile's linear method;
    computed without numpy.percentile, whose first call imports numpy.ma (in the capture thread, in the
    first conversation)."""
    import subprocess
    import sys

    from pivoice.audio.aec import EPOCH_SETTLE, _lower_quartile

    rng = np.random.default_rng(3)
    for n in range(1, EPOCH_SETTLE + 2):
        values = list(rng.uniform(100.0, 100.05, n))
        assert _lower_quartile(values) == pytest.approx(float(np.percentile(values, 25)), abs=1e-12)
    script = ("import sys; from pivoice.audio.aec import _Clock\n"
              "c = _Clock()\n"
              "for i in range(40): c.add(100.0 + (i % 7) * 1e-3)\n"
              "c.add(101.0)\n"  # a jump: a new epoch
              "print(round(c.offset, 6), 'numpy.ma' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["101.0", "False"]
