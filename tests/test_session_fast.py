"""LiveSession in process, against a fake Live client (tests/fakes.py) that records every send in order
and receives the SDK's own message objects: resuming after a drop, the GoAway switch, what is not
resumed. Fast companions of the end-to-end tests in test_resilience.py, which run the same behaviours
through the real google-genai client, a TLS stand-in and real audio."""

from __future__ import annotations

import asyncio

import pytest
from fakes import (
    END,
    START,
    FakeLiveClient,
    audio_msg,
    dropped,
    go_away_msg,
    handle_msg,
    settle,
    transcript_msg,
    turn_complete_msg,
    until,
    usage_msg,
)

from pivoice.configfile import parse
from pivoice.live import session as live
from pivoice.live.failures import SessionError

SETTINGS = parse({}, "test")
FRAME_SECONDS = 0.08  # one capture period


def frame(n: int) -> bytes:
    """80 ms of microphone audio, different for every n."""
    return bytes([n, 255 - n]) * 1280


class Clock:
    """LiveSession's clock (which frames are recent enough to resend), moved on by the test as a
    microphone paces the frames; the event loop keeps its own clock."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def start(client: FakeLiveClient, events: list, handle: str | None = None):
    s = live.LiveSession(client, SETTINGS.live, SETTINGS.vad, events.append, handle=handle)
    return s, asyncio.create_task(s.run(), name="session under test")


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def speak(s: live.LiveSession, conn, frames: list[bytes], clock: Clock | None = None) -> None:
    """Queue frames one at a time as a microphone would, each sent before the next is captured."""
    for f in frames:
        s.send_audio(f)
        await until(lambda f=f: conn.audio[-1:] == [f], "the frame to be sent")
        if clock is not None:
            clock.now += FRAME_SECONDS


@pytest.mark.parametrize("drop", [{"code": 1006}, {"code": 1011, "reason": "Internal error occurred."},
                                  {"silent": True}],
                         ids=["1006-server-vanished", "1011-server-error", "found-by-a-send"])
def test_a_drop_resumes_with_the_handle_and_resends_the_last_half_second(monkeypatch, drop):
    clock = Clock()
    monkeypatch.setattr(live, "time", clock)
    frames = [frame(n) for n in range(15)]
    answer = b"\x10\x20" * 2400

    async def body():
        client, events = FakeLiveClient(), []
        s, task = start(client, events)
        await until(lambda: client.connections, "the first connection")
        first = client.connections[0]
        assert first.handle_in is None
        first.push(handle_msg("h1"), audio_msg(answer))  # a handle, then an answer begins
        await until(lambda: live.ModelAudio(answer) in events, "the answer's audio")
        await speak(s, first, frames[:10], clock)  # sent at 0.00, 0.08 ... 0.72 s
        client.gate.clear()  # the new connection waits until the test lets it open
        first.drop(**drop)  # at 0.80 s
        s.send_audio(frames[10])  # said as it drops (a send is what finds a silent drop)
        await until(lambda: client.attempts == 2, "a second connection attempt")
        for f in frames[11:]:
            s.send_audio(f)  # said while reconnecting
        client.gate.set()
        await until(lambda: len(client.connections) == 2 and len(client.connections[1].audio) >= 11,
                    "the audio on the second connection")
        await settle()
        second = client.connections[1]
        await stop(task)

        assert second.handle_in == "h1"  # the conversation goes on, with its context
        assert client.log[:3] == [("open", 1), ("close", 1), ("open", 2)]  # closed before resuming
        assert first.audio == frames[:10]
        # Frames 4-9 were sent within RESEND_SECONDS (0.5 s) of the drop and may not have arrived: they
        # are sent again, then what was said while reconnecting, in order; frame 3 (0.56 s) is not.
        assert live.RESEND_SECONDS == 0.5
        assert second.audio == frames[4:10] + frames[10:]
        # The answer cut by the drop ends there (what came plays out), then the conversation resumes.
        after = events[events.index(live.ModelAudio(answer)) + 1:]
        assert after[0] == live.TurnComplete()
        assert [e.resumed for e in events if isinstance(e, live.Connected)] == [False, True]

    asyncio.run(body())


def test_a_refusal_mid_session_ends_the_session():
    async def body():
        client, events = FakeLiveClient(), []
        s, task = start(client, events)
        await until(lambda: client.connections, "the connection")
        client.connections[0].push(handle_msg("h1"))
        await until(lambda: live.Handle("h1") in events, "the handle")
        s.send_audio(frame(1))
        await until(lambda: client.connections[0].audio, "the frame to be sent")
        client.connections[0].drop(1008, "Operation is not implemented, or supported, or enabled.")
        with pytest.raises(SessionError) as e:
            await asyncio.wait_for(task, 5)
        assert e.value.kind == "refused"
        assert client.attempts == 1 and client.log == [("open", 1), ("close", 1)]

    asyncio.run(body())


CONVERSATION = [("user", "What time is it in Tokyo?"), ("model", "It is nine in the evening in Tokyo.")]


@pytest.mark.parametrize("handle", [None, "h1"], ids=["dropped-before-any-handle", "resumption-refused"])
def test_a_session_that_cannot_be_resumed_starts_over_with_the_conversation_so_far(handle):
    """A 1011 mid-conversation, and no handle to resume with, or a resumption the service refuses: a new
    session, whose first message is the conversation so far (initial history, as gemini-3.8-live takes it);
    what was queued since arrives there, after the last half second again."""

    async def body():
        client, events = FakeLiveClient(), []
        client.refuse_handles = dropped(1008, "Session resumption handle is invalid or expired.")
        s, task = start(client, events)
        await until(lambda: client.connections, "the connection")
        first = client.connections[0]
        first.push(*([handle_msg(handle)] if handle else []), transcript_msg(heard="What time "),
                   transcript_msg(heard="is it in Tokyo?"), transcript_msg(said="It is nine in the evening"),
                   transcript_msg(said=" in Tokyo."), turn_complete_msg())
        await until(lambda: live.Said(" in Tokyo.") in events, "the transcripts")
        await speak(s, first, [frame(1), frame(2)])
        first.drop(1011, "Internal error occurred.")
        s.send_audio(frame(3))  # said after the failure
        await until(lambda: len(client.connections) == 2 and client.connections[1].audio[-1:] == [frame(3)],
                    "the words after the failure on a new session")
        second = client.connections[1]
        assert second.handle_in is None
        assert second.config.history_config.initial_history_in_client_content
        assert second.history == CONVERSATION
        assert frame(3) in second.audio and frame(3) not in first.audio
        assert client.attempts == (3 if handle else 2)  # with a handle: the refused resumption between
        await stop(task)

    asyncio.run(body())


def test_the_older_models_get_the_conversation_so_far_in_the_system_instruction():
    """gemini-2.5 native audio has no initial history in client content: the seed goes in the instruction."""
    from pivoice.live.record import Transcript
    from pivoice.live.setup import connect_config

    older = parse({"live": {"model": "gemini-2.5-flash-native-audio-preview-12-2025"}}, "test")
    seed = Transcript(list(CONVERSATION))
    cfg = connect_config(older.live, older.vad, None, seed)
    assert cfg.history_config is None
    assert "Person: What time is it in Tokyo?\nYou: It is nine in the evening in Tokyo." in cfg.system_instruction
    assert connect_config(SETTINGS.live, SETTINGS.vad, None, seed).system_instruction == SETTINGS.live.instruction


def test_usage_is_added_up_over_the_turns():
    async def body():
        client, events = FakeLiveClient(), []
        s, task = start(client, events)
        await until(lambda: client.connections, "the connection")
        await speak(s, client.connections[0], [frame(1), frame(2)])
        client.connections[0].push(audio_msg(b"\x01\x00" * 2400), usage_msg(120, 30), usage_msg(200, 45))
        await until(lambda: s.usage.tokens_out == 75, "the usage")
        assert (s.usage.tokens_in, s.usage.bytes_in, s.usage.bytes_out) == (320, 2 * len(frame(1)), 4800)
        await stop(task)

    asyncio.run(body())


def test_go_away_switches_at_the_turn_boundary_and_sends_nothing_twice():
    frames = [frame(n) for n in range(14)]
    a1, a2 = b"\x01\x02" * 2400, b"\x03\x04" * 2400

    async def body():
        client, events = FakeLiveClient(), []
        s, task = start(client, events)
        await until(lambda: client.connections, "the first connection")
        first = client.connections[0]
        first.push(handle_msg("h1"))
        await speak(s, first, frames[:4])
        # Mid-answer the server announces the end of the connection (time left: plenty).
        first.push(audio_msg(a1), go_away_msg("30s"), audio_msg(a2))
        await until(lambda: live.ModelAudio(a2) in events, "the rest of the answer")
        await speak(s, first, frames[4:8])  # the user talks on: still this connection, mid-turn
        assert client.attempts == 1 and not first.closed

        client.gate.clear()
        # The turn ends, and the handle that covers it follows: now is the time to switch.
        first.push(turn_complete_msg(), handle_msg("h2"))
        for f in frames[8:10]:
            s.send_audio(f)  # said as the switch happens
        await until(lambda: client.attempts == 2, "a new connection")
        for f in frames[10:]:
            s.send_audio(f)  # said while the new connection opens
        client.gate.set()
        await until(lambda: len(client.connections) == 2 and
                    len(first.audio) + len(client.connections[1].audio) >= len(frames), "all the audio")
        await settle()
        second = client.connections[1]
        await stop(task)

        assert second.handle_in == "h2"
        assert client.log[:3] == [("open", 1), ("close", 1), ("open", 2)]
        # Graceful: every frame went exactly once, in order, split between the two connections.
        assert first.audio[:8] == frames[:8]
        assert first.audio + second.audio == frames
        assert second.audio  # the switch did happen before the last frames
        # The answer was whole: one turn, ended once, before the new connection.
        kinds = [type(e).__name__ for e in events if not isinstance(e, live.Handle)]
        assert kinds == ["Connected", "ModelAudio", "ModelAudio", "TurnComplete", "Connected"]
        assert events.index(live.Handle("h2")) < len(events) - 1 and events[-1].resumed

    asyncio.run(body())


def test_a_push_to_talk_activity_goes_on_across_a_drop():
    """Held button, then the connection drops: the new connection is told the person is speaking
    before it gets the resent and the new audio, so the activity_end that follows has its start."""
    async def body():
        client, events = FakeLiveClient(), []
        s, task = start(client, events)
        await until(lambda: client.connections, "the first connection")
        first = client.connections[0]
        first.push(handle_msg("h1"))
        await until(lambda: live.Handle("h1") in events, "the handle")
        s.activity_start()
        await speak(s, first, [frame(1), frame(2)])
        first.drop(code=1006)
        await until(lambda: len(client.connections) == 2, "the second connection")
        second = client.connections[1]
        await speak(s, second, [frame(3)])
        s.activity_end()
        await until(lambda: second.sent[-1:] == [END], "the end of the activity")
        await stop(task)
        assert first.sent == [START, frame(1), frame(2)]
        assert second.sent == [START, frame(1), frame(2), frame(3), END]

    asyncio.run(body())


def test_a_conversation_starts_over_a_bounded_number_of_times():
    """A service that drops every new session (each after a message, so resuming is not what fails):
    after MAX_STARTS_OVER new sessions, the failure ends the conversation instead of a loop."""

    async def body():
        client, events = FakeLiveClient(), []
        _, task = start(client, events)
        for n in range(1, live.MAX_STARTS_OVER + 2):
            await until(lambda n=n: len(client.connections) == n, f"connection {n}")
            client.connections[-1].push(transcript_msg(heard="hello"))
            await until(lambda: len(events) and events[-1] == live.Heard("hello"), "the message")
            events.clear()
            client.connections[-1].drop(1011, "Internal error occurred.")
        with pytest.raises(SessionError) as e:
            await asyncio.wait_for(task, 5)
        assert e.value.kind == "server" and len(client.connections) == live.MAX_STARTS_OVER + 1

    asyncio.run(body())
