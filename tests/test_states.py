"""The transition function, on its own."""

from pivoice.states import Event, State, next_state


def run(*events, start=State.IDLE):
    s = start
    for e in events:
        n = next_state(s, e)
        s = n if n is not None else s
    return s


def test_a_conversation():
    assert run(Event.WAKE) is State.CONNECTING
    assert run(Event.WAKE, Event.CONNECTED) is State.LISTENING
    assert run(Event.WAKE, Event.CONNECTED, Event.MODEL_AUDIO) is State.RESPONDING
    assert run(Event.WAKE, Event.CONNECTED, Event.MODEL_AUDIO, Event.TURN_DONE) is State.LISTENING
    assert run(Event.WAKE, Event.CONNECTED, Event.MODEL_AUDIO, Event.INTERRUPTED) is State.LISTENING
    assert run(Event.WAKE, Event.CONNECTED, Event.FOLLOW_UP_TIMEOUT) is State.IDLE


def test_conversations_end_from_any_conversation_state():
    for s in (State.CONNECTING, State.LISTENING, State.RESPONDING):
        assert next_state(s, Event.SESSION_ENDED) is State.IDLE
        assert next_state(s, Event.MAX_DURATION) is State.IDLE
        assert next_state(s, Event.STOP) is State.STOPPED


def test_events_that_do_not_apply_change_nothing():
    assert next_state(State.IDLE, Event.CONNECTED) is None
    assert next_state(State.IDLE, Event.SESSION_ENDED) is None
    assert next_state(State.RESPONDING, Event.WAKE) is None  # barge-in comes with its own issue
    assert next_state(State.RESPONDING, Event.FOLLOW_UP_TIMEOUT) is None  # never cut an answer short
    assert next_state(State.STOPPED, Event.STOP) is None


def test_energy_endpoint_ends_a_turn_after_the_silence():
    """Without the server's VAD, a wake-word turn ends after speech and then 800 ms of quiet."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import read_wav, silence

    from pivoice.assistant import Endpoint

    e = Endpoint(800)
    e.start()
    frames = silence(0.5) + read_wav("command_time_tokyo.wav") + silence(2.0)
    ended_at = next(i for i in range(0, len(frames), 2560) if e.ended(frames[i : i + 2560]))
    speech_end = len(silence(0.5) + read_wav("command_time_tokyo.wav"))
    assert speech_end <= ended_at <= speech_end + 1.2 * 32000  # (the clip ends in a quiet tail)
    assert not e.ended(silence(0.08))  # once ended, quiet until started again
