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


def test_a_timer_rings_from_anywhere_but_stopping_and_is_stopped_by_a_press_the_wake_word_or_time():
    for s in (State.IDLE, State.ERROR, State.MUTED, State.CONNECTING, State.LISTENING, State.RESPONDING):
        assert next_state(s, Event.TIMER_FIRED) is State.RINGING
    assert next_state(State.RINGING, Event.TIMER_FIRED) is State.RINGING  # another one: rings on
    for stop in (Event.BUTTON_DOWN, Event.WAKE, Event.RING_TIMEOUT):
        assert next_state(State.RINGING, stop) is State.IDLE
    assert next_state(State.RINGING, Event.MUTE_TOGGLE) is State.MUTED
    assert next_state(State.STARTING, Event.TIMER_FIRED) is None  # (timers start after READY)
