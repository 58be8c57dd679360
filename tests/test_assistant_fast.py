"""The Assistant in process, with small fakes at its edges (tests/fakes.py: microphone, speaker, wake-word
detector, Live client) and the real Assistant, LiveSession and state table in between: what reaches the
Live API and the speaker for push-to-talk, the wake word's pre-roll and barge-in, and what listeners are
told in ERROR. Fast companions of the end-to-end tests (test_gpio.py, test_conversation.py,
test_resilience.py), which run the same behaviours on real audio, GPIO and the real google-genai client."""

from __future__ import annotations

import asyncio
import re

import pytest
from fakes import (
    END,
    START,
    FakeCapture,
    FakeDetector,
    FakeLiveClient,
    FakePlayback,
    audio_msg,
    dropped,
    settle,
    turn_complete_msg,
    until,
)

from pivoice.assistant import Assistant
from pivoice.configfile import parse
from pivoice.live.failures import FIX_KEY
from pivoice.states import Event, State


class Running:
    """An Assistant on fakes, run as the daemon runs it (`run()`), and stopped as SIGTERM stops it."""

    def __init__(self, config: dict | None = None, self_trigger=None):
        self.settings = parse(config or {}, "test")
        self.capture, self.playback = FakeCapture(), FakePlayback()
        self.detector, self.client = FakeDetector(), FakeLiveClient()
        self.assistant = Assistant(self.settings, self.capture, self.playback, self.detector, self.client,
                                   self_trigger=self_trigger)
        self.transitions = []
        self.assistant.listeners.append(self.transitions.append)

    @property
    def state(self) -> State:
        return self.assistant.state

    @property
    def events(self) -> list[Event]:
        return [t.event for t in self.transitions]

    async def reach(self, state: State) -> None:
        await until(lambda: self.state is state, f"state {state.value} (now {self.state.value})")

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.assistant.run(), name="assistant under test")
        await self.reach(State.IDLE)
        return self

    async def __aexit__(self, *exc) -> None:
        self.assistant.stop()
        await asyncio.wait_for(self.task, 5)
        assert self.capture.closed and self.playback.closed and self.detector.closed


def test_push_to_talk_frames_the_held_audio_with_activity_markers():
    """vad.automatic = false: holding the button is speaking. The session gets activity_start, the
    audio from the press on (what is said while connecting included), activity_end, in that order."""

    async def body():
        async with Running({"vad": {"automatic": False}}) as r:
            for _ in range(5):
                r.capture.say()  # before the press: stays on the device
            await r.capture.heard()
            r.client.gate.clear()  # the connection takes its time
            r.assistant.button_down()
            await r.reach(State.CONNECTING)
            held = [r.capture.say() for _ in range(3)]  # said while connecting
            await r.capture.heard()
            r.client.gate.set()
            await r.reach(State.LISTENING)
            held += [r.capture.say() for _ in range(3)]
            await r.capture.heard()
            r.assistant.button_up(held=False)
            await settle()
            after = [r.capture.say() for _ in range(2)]  # the microphone keeps streaming
            conn = r.client.connections[0]
            await until(lambda: len(conn.sent) >= 1 + len(held) + 1 + len(after), "the held audio and markers")
            assert conn.config.realtime_input_config.automatic_activity_detection.disabled is True
            assert conn.sent == [START, *(f.pcm for f in held), END, *(f.pcm for f in after)]

            # A second press in the same conversation is the next turn on the same connection.
            r.assistant.button_down()
            await settle()
            again = [r.capture.say() for _ in range(2)]
            await r.capture.heard()
            r.assistant.button_up(held=False)
            await until(lambda: conn.sent[-1:] == [END], "the second activity's end")
            assert conn.sent[-4:] == [START, *(f.pcm for f in again), END]
            assert r.state is State.LISTENING and len(r.client.connections) == 1
            assert r.events == [Event.READY, Event.TALK, Event.CONNECTED, Event.TALK]

    asyncio.run(body())


def test_wake_word_sends_from_the_pre_roll_on_and_every_frame_after():
    """The session's audio starts wake.pre_roll_seconds (0.5 s) before the end of the detection and goes
    on, frame after frame, with nothing lost while the connection opens."""

    async def body():
        async with Running() as r:
            for _ in range(20):
                r.capture.say()
            r.client.gate.clear()
            hit = r.capture.say(wake="hey_jarvis")
            await r.reach(State.CONNECTING)
            for _ in range(4):
                r.capture.say()  # said while connecting
            await r.capture.heard()
            r.client.gate.set()
            await r.reach(State.LISTENING)
            r.capture.say()
            await r.capture.heard()
            conn = r.client.connections[0]
            everything = b"".join(f.pcm for f in r.capture.said)
            start = hit.end - 8000  # 0.5 s at 16 kHz
            await until(lambda: b"".join(conn.audio) == everything[start * 2:], "the audio from the pre-roll on")
            assert r.transitions[1].info["detection"].end == hit.end

    asyncio.run(body())


def test_barge_in_stops_the_answer_and_drops_the_rest_of_its_turn():
    """In RESPONDING a person's wake word (no self-trigger guard) interrupts: the speaker stops at once,
    the state is LISTENING, the session stays open, and the rest of the turn the server goes on
    sending is not played; the next turn is."""
    a1, a2, b1 = b"\x01\x02" * 2400, b"\x03\x04" * 2400, b"\x05\x06" * 2400

    async def body():
        async with Running() as r:
            r.capture.say(wake="hey_jarvis")
            await r.reach(State.LISTENING)
            conn = r.client.connections[0]
            conn.push(audio_msg(a1))
            await r.reach(State.RESPONDING)
            assert r.playback.played == [a1]
            assert r.capture.scoring and r.capture.cancelling  # the wake word is listened for over the answer
            r.capture.say(wake="hey_jarvis")
            await r.reach(State.LISTENING)
            assert r.playback.calls == [("play", a1), "stop"]
            # The server was not told: its turn goes on, and is not played.
            conn.push(audio_msg(a2), turn_complete_msg())
            f = r.capture.say()
            await until(lambda: conn.audio[-1:] == [f.pcm], "the microphone streaming on")
            conn.push(audio_msg(b1))  # the answer to what was said after the wake word
            await until(lambda: len(r.playback.played) == 2, "the next turn played")
            assert r.playback.calls == [("play", a1), "stop", ("play", b1)]
            assert r.events == [Event.READY, Event.WAKE, Event.CONNECTED, Event.MODEL_AUDIO, Event.BARGE_IN,
                                Event.MODEL_AUDIO]
            assert not conn.closed and len(r.client.connections) == 1

    asyncio.run(body())


def test_with_barge_in_by_wake_word_no_frame_read_during_an_answer_is_sent_after_it():
    """audio.barge_in = "wake_word": the Live API gets nothing of the microphone while an answer plays,
    also when the frames read then reach the event loop after the answer ended (on a busy machine the
    capture thread hands frames over late); those after it are sent."""
    a1 = b"\x01\x02" * 2400

    async def body():
        async with Running({"audio": {"barge_in": "wake_word"}}) as r:
            r.capture.say(wake="hey_jarvis")
            await r.reach(State.LISTENING)
            conn = r.client.connections[0]
            conn.push(audio_msg(a1), turn_complete_msg(generated=True))
            await r.reach(State.RESPONDING)
            during = [r.capture.say(late=True) for _ in range(3)]  # the answer, as the microphone heard it
            r.playback.idle = True  # played out
            await r.reach(State.LISTENING)
            after = r.capture.say()  # hands over the late ones first
            await until(lambda: conn.audio[-1:] == [after.pcm], "the microphone after the answer")
            assert not [f for f in during if f.pcm in conn.audio]
            assert r.events[-1] is Event.TURN_DONE

    asyncio.run(body())


def test_with_barge_in_by_wake_word_what_follows_a_wake_word_over_an_answer_is_sent():
    """audio.barge_in = "wake_word": a person's wake word over the answer stops it, and the Live API gets
    what they said from its pre-roll on, also the frames read while the answer still played that reach
    the event loop after the barge-in."""
    a1 = b"\x01\x02" * 2400

    async def body():
        async with Running({"audio": {"barge_in": "wake_word"}}) as r:
            r.capture.say(wake="hey_jarvis")
            await r.reach(State.LISTENING)
            conn = r.client.connections[0]
            conn.push(audio_msg(a1))
            await r.reach(State.RESPONDING)
            r.capture.say(wake="hey_jarvis", late=True)
            words = [r.capture.say(late=True) for _ in range(3)]  # read before the barge-in was handled
            r.capture.deliver()
            await r.reach(State.LISTENING)
            await until(lambda: all(f.pcm in conn.audio for f in words), "what the person said after the wake word")
            assert r.events[-1] is Event.BARGE_IN

    asyncio.run(body())


class EchoGuard:
    """A self-trigger guard that finds every detection to be the answer's own echo."""

    def __init__(self):
        self.asked = 0

    def reset(self) -> None:
        pass

    def reference(self, offset: int, pcm: bytes) -> None:
        pass

    async def is_echo(self, at: float) -> bool:
        self.asked += 1
        return True

    def close(self) -> None:
        pass


def test_a_premature_turn_complete_does_not_end_the_answer():
    """A turnComplete without generationComplete, the speaker done, and then the rest of the answer
    (python-genai#2117): it is played as the same answer; the follow-up window starts after it."""
    a1, a2 = b"\x01\x02" * 2400, b"\x03\x04" * 2400

    async def body():
        async with Running() as r:
            r.capture.say(wake="hey_jarvis")
            await r.reach(State.LISTENING)
            conn = r.client.connections[0]
            conn.push(audio_msg(a1), turn_complete_msg())
            await r.reach(State.RESPONDING)
            await asyncio.sleep(0.05)
            r.playback.idle = True  # the speaker played it out
            await asyncio.sleep(0.2)
            conn.push(audio_msg(a2), turn_complete_msg(generated=True))
            await until(lambda: r.playback.played == [a1, a2], "the rest of the answer played")
            assert r.state is State.RESPONDING
            r.playback.idle = True
            await r.reach(State.LISTENING)
            assert r.events == [Event.READY, Event.WAKE, Event.CONNECTED, Event.MODEL_AUDIO, Event.TURN_DONE]

    asyncio.run(body())


def test_the_answers_own_wake_word_does_not_barge_in():
    a1 = b"\x01\x02" * 2400

    async def body():
        guard = EchoGuard()
        async with Running(self_trigger=guard) as r:
            r.capture.say(wake="hey_jarvis")
            await r.reach(State.LISTENING)
            r.client.connections[0].push(audio_msg(a1))
            await r.reach(State.RESPONDING)
            resets = r.detector.resets
            r.capture.say(wake="hey_jarvis")
            await r.capture.heard()
            assert guard.asked == 1
            assert r.state is State.RESPONDING and "stop" not in r.playback.calls
            assert r.detector.resets == resets + 1  # listens afresh for a person's wake word

    asyncio.run(body())


@pytest.mark.parametrize("code, reason, problem, then", [
    (1008, "API key not valid. Please pass a valid API key.", "API key rejected", re.escape(FIX_KEY)),
    (1011, "Internal error occurred.", "the Gemini API has a problem", r"trying again in \d+ s"),
], ids=["key-rejected", "server-error"])
def test_error_transitions_tell_listeners_the_problem_and_what_happens_next(code, reason, problem, then):
    async def body():
        async with Running() as r:
            r.client.refuse = dropped(code, reason)
            r.capture.say(wake="hey_jarvis")
            await r.reach(State.ERROR)
            connecting, failed = r.transitions[1], r.transitions[2]
            assert (connecting.new, connecting.session) == (State.CONNECTING, 1)
            assert (failed.old, failed.new, failed.event, failed.session) == \
                (State.CONNECTING, State.ERROR, Event.SESSION_FAILED, 1)
            assert failed.problem == problem and re.fullmatch(then, failed.then), failed
            assert failed.info["kind"] == ("auth" if code == 1008 else "server")
            # A wake word now is refused: the state stays, and listeners are told why again.
            resets = r.detector.resets
            for _ in range(12):
                r.capture.say()  # a second later: a new wake word, not the rest of the first
            r.capture.say(wake="hey_jarvis")
            await until(lambda: len(r.transitions) == 4, "the refused wake word")
            refused = r.transitions[3]
            assert (refused.old, refused.new, refused.event) == (State.ERROR, State.ERROR, Event.WAKE)
            assert refused.problem == problem
            assert r.client.attempts == 1 and r.detector.resets == resets + 1

    asyncio.run(body())


def test_the_rest_of_the_wake_phrase_does_not_open_a_second_conversation():
    """A conversation ended at once (the button, a mute) while the microphone still delivers the end of
    "hey jarvis" (a capture thread behind on a busy machine): the reset detector fires on "...jarvis".
    That is the same phrase, not a new wake word; a wake word a second of audio later is."""

    async def body():
        async with Running() as r:
            r.capture.say(wake="hey_jarvis")
            await r.reach(State.LISTENING)
            r.assistant.button_down()  # ends the conversation
            await r.reach(State.IDLE)
            r.capture.say(wake="hey_jarvis")  # 80 ms later: the same phrase, scored again
            await r.capture.heard()
            await settle()
            assert r.state is State.IDLE and len(r.client.connections) == 1
            for _ in range(12):
                r.capture.say()
            r.capture.say(wake="hey_jarvis")  # 1.04 s of audio after the first: a new wake word
            await r.reach(State.LISTENING)
            assert len(r.client.connections) == 2
            assert r.events.count(Event.WAKE) == 2

    asyncio.run(body())
