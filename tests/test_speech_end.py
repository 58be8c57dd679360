"""The end of a spoken turn by energy (wake-word turns when the server's activity detection is off)."""

from conftest import read_wav, silence

from pivoice.audio.speech_end import SpeechEnd


def test_a_turn_ends_after_speech_and_then_the_silence():
    """Without the server's VAD, a wake-word turn ends after speech and then 800 ms of quiet."""
    e = SpeechEnd(800)
    e.start()
    frames = silence(0.5) + read_wav("command_time_tokyo.wav") + silence(2.0)
    ended_at = next(i for i in range(0, len(frames), 2560) if e.ended(frames[i : i + 2560]))
    speech_end = len(silence(0.5) + read_wav("command_time_tokyo.wav"))
    assert speech_end <= ended_at <= speech_end + 1.2 * 32000  # (the clip ends in a quiet tail)
    assert not e.ended(silence(0.08))  # once ended, quiet until started again


def test_silence_alone_never_ends_a_turn():
    e = SpeechEnd(800)
    e.start()
    assert not any(e.ended(silence(0.08)) for _ in range(50))


def test_nothing_ends_before_start():
    e = SpeechEnd(800)
    assert not e.ended(read_wav("command_time_tokyo.wav"))
