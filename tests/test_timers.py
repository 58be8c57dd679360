"""Timers and alarms (issue 15): set, listed and cancelled through tool calls; ringing as its own state,
stopped by the button, the wake word or the ring time; kept across restarts, and one that came due while
pivoice was not running rings once at start. In process on fakes, and pivoice as a process writing its
alarm to the speaker PCM."""

from __future__ import annotations

import asyncio
import json
import time

from fakes import until
from google.genai import types
from test_assistant_fast import Running

from pivoice.ringer import Ringer, alarm_sound
from pivoice.states import Event, State
from pivoice.tools import ToolRunner
from pivoice.tools.timers import Timers


def wire(r: Running, state_file, ring_seconds: float = 60.0) -> Timers:
    """What daemon.build wires: the timers fire TIMER_FIRED; the ringer follows RINGING."""
    timers = Timers(state_file, lambda t, late: r.assistant.dispatch(
        Event.TIMER_FIRED, name=t.name, kind=t.kind, late=late, due=t.local()))
    ringer = Ringer(r.playback, r.assistant.dispatch, ring_seconds)
    r.assistant.listeners.append(ringer.on_transition)
    timers.start()
    return timers


async def call(timers: Timers, name: str, args: dict) -> dict:
    sent: list = []
    ToolRunner(timers.tools(), sent.extend).call([types.FunctionCall(id="1", name=name, args=args)])
    await until(lambda: sent, f"the result of {name}")
    return sent[0]["response"]


def test_set_list_cancel_then_ring_until_the_button_stops_it(tmp_path):
    async def body():
        async with Running() as r:
            timers = wire(r, tmp_path / "timers.json")
            got = await call(timers, "set_timer", {"name": "pasta", "seconds": 1})
            assert got["name"] == "pasta" and got["seconds_left"] in (0, 1)
            await call(timers, "set_timer", {"name": "eggs", "minutes": 7})
            await call(timers, "set_alarm", {"name": "wake up", "time": "07:00"})
            listed = await call(timers, "list_timers", {})
            assert listed["timers"][0]["name"] == "pasta" and len(listed["timers"]) == 3
            assert await call(timers, "cancel_timer", {"name": "eggs"}) == {"cancelled": "eggs"}
            assert "no timer or alarm is named 'soup'" in (await call(timers, "cancel_timer", {"name": "soup"}))["error"]
            assert "not a time of day" in (await call(timers, "set_alarm", {"name": "x", "time": "25:99"}))["error"]
            await r.reach(State.RINGING)
            ringing = r.transitions[-1]
            assert ringing.event is Event.TIMER_FIRED and ringing.info["name"] == "pasta"
            await until(lambda: r.playback.played, "the alarm at the speaker")
            assert r.playback.played[0] == alarm_sound()
            r.assistant.button_down()
            await r.reach(State.IDLE)
            assert r.playback.calls[-1] == "stop"
            assert [t["name"] for t in json.loads((tmp_path / "timers.json").read_text())] == ["wake up"]
            timers.close()

    asyncio.run(body())


def test_the_wake_word_stops_it_and_so_does_the_ring_time(tmp_path):
    async def body():
        async with Running() as r:
            timers = wire(r, tmp_path / "timers.json", ring_seconds=0.5)
            await call(timers, "set_timer", {"name": "tea", "seconds": 1})
            await r.reach(State.RINGING)
            r.capture.say(wake="hey_jarvis")
            await r.reach(State.IDLE)
            assert r.transitions[-1].event is Event.WAKE and r.state is State.IDLE  # stopped, no conversation
            await call(timers, "set_timer", {"name": "tea again", "seconds": 1})
            await r.reach(State.RINGING)
            await r.reach(State.IDLE)  # nobody stops it: ring_seconds
            assert r.transitions[-1].event is Event.RING_TIMEOUT
            timers.close()

    asyncio.run(body())


def test_a_muted_speaker_rings_then_is_muted_again(tmp_path):
    async def body():
        async with Running() as r:
            timers = wire(r, tmp_path / "timers.json")
            r.assistant.mute_toggle()
            await r.reach(State.MUTED)
            await call(timers, "set_timer", {"name": "bread", "seconds": 1})
            await r.reach(State.RINGING)
            r.assistant.button_down()
            await r.reach(State.MUTED)
            timers.close()

    asyncio.run(body())


def test_timers_survive_a_restart_and_one_due_meanwhile_rings_once_late(tmp_path):
    state = tmp_path / "timers.json"
    now = time.time()
    state.write_text(json.dumps([{"name": "missed", "kind": "alarm", "due": now - 600},
                                 {"name": "later", "kind": "timer", "due": now + 3600}]))
    fired: list = []

    async def body():
        timers = Timers(state, lambda t, late: fired.append((t.name, late)))
        timers.start()
        assert fired == [("missed", True)] and [t.name for t in timers.pending] == ["later"]
        timers.close()
        again = Timers(state, lambda t, late: fired.append((t.name, late)))  # a second restart
        again.start()
        assert fired == [("missed", True)] and [t.name for t in again.pending] == ["later"]
        again.close()

    asyncio.run(body())


def test_an_alarm_kept_from_before_rings_at_the_speaker_pcm(tmp_path, run_daemon, notify_socket):
    """pivoice as a process: a timer set before it started rings after the start (the one that came due
    while it was down at once), its alarm written to the speaker PCM, the log and STATUS= saying so."""
    from harness import silence

    state = tmp_path / "state"
    state.mkdir()
    now = time.time()
    (state / "timers.json").write_text(json.dumps([{"name": "missed", "kind": "alarm", "due": now - 60},
                                                   {"name": "soon", "kind": "timer", "due": now + 4}]))
    (tmp_path / "mic.raw").write_bytes(silence(30.0))
    d = run_daemon('[audio]\ninput_device = "mic_file"\noutput_device = "spk_file"\n[timers]\nring_seconds = 5.0\n',
                   extra_env={"STATE_DIRECTORY": str(state), "NOTIFY_SOCKET": str(notify_socket.path)})
    d.wait_for(r"alarm 'missed' rings \(it came due at \d\d:\d\d:\d\d while pivoice was not running\)", timeout=20)
    notify_socket.wait_last("STATUS=", "STATUS=Ringing: alarm 'missed' (press the button or say the wake word to "
                                       "stop it)")
    d.wait_for(r"stopped ringing after 5 s", timeout=15)
    d.wait_for(r"timer 'soon' rings$|timer 'soon' rings \[", timeout=15)
    speaker = (tmp_path / "speaker.raw").read_bytes()
    assert alarm_sound()[: 4800] in speaker  # the alarm itself reached the PCM
    assert json.loads((state / "timers.json").read_text()) == []
    d.stop()


# -- from a review -----------------------------------------------------------------------------------


def test_a_timer_name_cannot_carry_a_line_into_sd_notify(tmp_path, monkeypatch):
    from harness import NotifySocket

    from pivoice.systemd import Notifier

    async def body():
        timers = Timers(tmp_path / "timers.json", lambda t, late: None)
        got = await call(timers, "set_timer", {"name": "x\nWATCHDOG=trigger", "seconds": 5})
        timers.close()
        return got

    assert "has characters it may not have" in asyncio.run(body())["error"]
    sock = NotifySocket(tmp_path / "notify.sock")
    try:  # and sd_notify keeps each field on its line, whatever a value holds
        monkeypatch.setenv("NOTIFY_SOCKET", str(sock.path))
        Notifier().send("STATUS=Ringing: a\nWATCHDOG=trigger")
        sock.wait_last("STATUS=", "STATUS=Ringing: a WATCHDOG=trigger")
        assert sock.lines("WATCHDOG") == []
    finally:
        sock.close()


def test_an_alarm_across_a_daylight_saving_change_rings_at_its_local_time(tmp_path, monkeypatch):
    import datetime

    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        evening = datetime.datetime(2026, 3, 28, 23, 0).timestamp()  # the clocks go forward that night
        timers = Timers(tmp_path / "timers.json", lambda t, late: None, clock=lambda: evening)

        async def body():
            got = await call(timers, "set_alarm", {"name": "wake up", "time": "07:00"})
            timers.close()
            return got

        assert asyncio.run(body())["rings_at"] == "07:00:00"
        (t,) = timers.pending
        assert time.localtime(t.due)[:5] == (2026, 3, 29, 7, 0) and t.due - evening == 7 * 3600
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_wall_clock_set_back_or_forward_is_followed(tmp_path, monkeypatch):
    """A Pi without a clock boots with the wrong time, and NTP corrects it later: timers follow the wall clock."""
    import pivoice.tools.timers as timers_module

    monkeypatch.setattr(timers_module, "STEP", 0.05)
    now = [1_000_000.0]
    fired: list = []

    async def body():
        timers = Timers(tmp_path / "timers.json", lambda t, late: fired.append(t.name), clock=lambda: now[0])
        timers.start()
        await call(timers, "set_timer", {"name": "eggs", "minutes": 10})
        await asyncio.sleep(0.2)
        assert fired == []
        now[0] += 601  # the clock is corrected: ten minutes have passed
        await until(lambda: fired, "the timer to ring")
        timers.close()

    asyncio.run(body())
    assert fired == ["eggs"]


def test_after_the_ringing_a_lost_microphone_is_an_error_again_and_the_alarm_is_heard_at_volume_0(tmp_path):
    async def body():
        async with Running() as r:
            timers = wire(r, tmp_path / "timers.json")
            r.playback.gain = 0.0  # "volume to zero" the night before
            await call(timers, "set_timer", {"name": "bus", "seconds": 1})
            await r.reach(State.RINGING)
            assert r.capture.cancelling  # the alarm is taken out of what the wake word listens to
            assert r.playback.gain == 0.25  # loud enough to hear
            r.assistant.dispatch(Event.MIC_LOST, reason="microphone pv_mic failed")
            assert r.state is State.RINGING  # it rings on
            r.assistant.button_down()
            await r.reach(State.ERROR)  # and the microphone's trouble is said after it
            assert r.playback.gain == 0.0
            timers.close()

    asyncio.run(body())
