"""Tools (issue 15, the machinery): the declarations in the setup, calls run concurrently and answered by
id, cancellation, failing and hung handlers, the built-in tools. LiveSession in process against the fake
Live client (tests/fakes.py), and the setup as the real google-genai client writes it to the stand-in."""

from __future__ import annotations

import asyncio
import json
import os
import time

from fakes import FakeLiveClient, audio_msg, tool_call_msg, tool_cancel_msg, until
from harness import TEST_KEY

from pivoice.configfile import parse
from pivoice.live import session as live
from pivoice.live.setup import connect_config, make_client
from pivoice.tools import Tool, declarations
from pivoice.tools.builtin import _now

SETTINGS = parse({}, "test")


def slow(seconds: float, result: dict | None = None):
    async def handler(args):
        await asyncio.sleep(seconds)
        return result or {"slept": seconds, **args}
    return handler


async def fails(args):
    raise RuntimeError("the lamp is unplugged")


TOOLS = [
    Tool("slow", "Takes a while.", slow(0.5), blocking=False, scheduling="INTERRUPT",
         parameters={"type": "object", "properties": {"label": {"type": "string", "maxLength": 20}}}),
    Tool("quick", "Answers at once.", slow(0.0, {"answer": 42})),
    Tool("fails", "Raises.", fails),
    Tool("hangs", "Never answers.", slow(3600), timeout=0.3),
    Tool("needs_n", "Takes a number.", slow(0.0, {"ok": True}),
         parameters={"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9}},
                     "required": ["n"]}),
]


def start(client, events):
    s = live.LiveSession(client, SETTINGS.live, SETTINGS.vad, events.append, tools=TOOLS)
    return s, asyncio.create_task(s.run(), name="session under test")


def responses(conn) -> dict[str, dict]:
    return {r.id: {"name": r.name, "response": r.response, "scheduling": r.scheduling and r.scheduling.value}
            for r in conn.tool_responses}


def test_calls_run_at_once_are_answered_by_id_while_audio_goes_on():
    async def body():
        client, events = FakeLiveClient(), []
        s, task = start(client, events)
        await until(lambda: client.connections, "the connection")
        conn = client.connections[0]
        conn.push(tool_call_msg(("a", "slow", {"label": "x"}), ("b", "quick", {})))
        await until(lambda: "b" in responses(conn), "the quick tool's result")
        assert "a" not in responses(conn)  # the slow one still runs: the quick one did not wait for it
        # Meanwhile the conversation goes on both ways: the model's audio arrives, the microphone's is sent.
        conn.push(audio_msg(b"\x01\x00" * 2400))
        s.send_audio(b"\x02\x00" * 1280)
        await until(lambda: live.ModelAudio(b"\x01\x00" * 2400) in events and conn.audio, "audio both ways")
        assert "a" not in responses(conn)
        await until(lambda: "a" in responses(conn), "the slow tool's result")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        got = responses(conn)
        assert got["a"] == {"name": "slow", "response": {"slept": 0.5, "label": "x"}, "scheduling": "INTERRUPT"}
        assert got["b"] == {"name": "quick", "response": {"answer": 42}, "scheduling": None}  # BLOCKING: none

    asyncio.run(body())


def test_failing_hung_unknown_and_badly_called_tools_get_error_results_and_the_session_goes_on():
    async def body():
        client, events = FakeLiveClient(), []
        _, task = start(client, events)
        await until(lambda: client.connections, "the connection")
        conn = client.connections[0]
        conn.push(tool_call_msg(("1", "fails", {}), ("2", "hangs", {}), ("3", "lamp_on", {}),
                                ("4", "needs_n", {"n": 12}), ("5", "needs_n", {}), ("6", "slow", {"label": "y" * 50})))
        await until(lambda: len(conn.tool_responses) == 6, "six results", timeout=3)
        got = {k: v["response"]["error"] for k, v in responses(conn).items()}
        assert got == {"1": "fails failed: RuntimeError: the lamp is unplugged",
                       "2": "hangs did not finish within 0.3 s",
                       "3": "there is no tool named 'lamp_on'",
                       "4": "bad arguments: 'n' must be at most 9",
                       "5": "bad arguments: 'n' is missing",
                       "6": "bad arguments: 'label' is longer than 20 characters"}
        conn.push(tool_call_msg(("7", "quick", {})))  # and the conversation goes on
        await until(lambda: "7" in responses(conn), "a result after the errors")
        assert not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(body())


def test_a_cancelled_call_stops_its_handler_and_gets_no_result():
    stopped = []

    async def long(args):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopped.append(True)
            raise

    async def body():
        client, events = FakeLiveClient(), []
        s = live.LiveSession(client, SETTINGS.live, SETTINGS.vad, events.append,
                             tools=[Tool("long", "Long.", long, timeout=60, blocking=False), *TOOLS])
        task = asyncio.create_task(s.run())
        await until(lambda: client.connections, "the connection")
        conn = client.connections[0]
        conn.push(tool_call_msg(("x", "long", {}), ("y", "quick", {})))
        await until(lambda: "y" in responses(conn), "the quick result")
        conn.push(tool_cancel_msg("x"))
        await until(lambda: stopped, "the handler to be cancelled")
        await asyncio.sleep(0.1)
        assert "x" not in responses(conn)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(body())


def test_the_setup_declares_exactly_the_enabled_tools(standin):
    """As google-genai writes it to the stand-in: the function declarations with their behaviour, and
    Google Search when it is on; nothing when no tool is."""
    settings = parse({"live": {"base_url": standin.base_url}}, "test")

    async def connect(tools, search):
        client = make_client(TEST_KEY, settings.live)
        cfg = connect_config(settings.live, settings.vad, tools=declarations(tools, search))
        async with client.aio.live.connect(model=settings.live.model, config=cfg):
            pass

    os.environ["SSL_CERT_FILE"] = str(standin.ca_file)
    try:
        asyncio.run(connect(TOOLS[:2], True))
        asyncio.run(connect([], False))
    finally:
        del os.environ["SSL_CERT_FILE"]
    first, second = (s.setup for s in standin.sessions)
    (decl,) = [t["functionDeclarations"] for t in first["tools"] if "functionDeclarations" in t]
    assert [(d["name"], d.get("behavior")) for d in decl] == [("slow", "NON_BLOCKING"), ("quick", "BLOCKING")]
    schema = decl[0].get("parametersJsonSchema") or decl[0]["parameters_json_schema"]  # (google-genai 3.6
    assert schema["properties"]["label"]["type"] == "string"                           # writes the latter)
    assert {"googleSearch": {}} in first["tools"] and len(first["tools"]) == 2
    assert "tools" not in json.dumps(second)


def test_the_date_and_time_tool_says_where_the_speaker_is():
    got = asyncio.run(_now({}))
    now = time.localtime()
    assert got["date"] == time.strftime("%Y-%m-%d", now) and got["weekday"] == time.strftime("%A", now)
    assert set(got) == {"date", "time", "weekday", "time_zone", "utc_offset"}


def test_end_conversation_and_mute_act_once_the_goodbye_has_played():
    """The model says goodbye and calls end_conversation (or mute_microphone): the answer plays to its end,
    then the conversation is over (or the microphone off), without waiting for the follow-up window."""
    from fakes import turn_complete_msg
    from test_assistant_fast import Running

    from pivoice.states import Event, State
    from pivoice.tools.builtin import tools as builtin_tools

    goodbye = b"\x07\x08" * 4800

    async def converse(tool: str) -> Running:
        async with Running({"conversation": {"follow_up_seconds": 60}}) as r:
            r.assistant.tools = builtin_tools(r.settings.tools, r.assistant)
            r.capture.say(wake="hey_jarvis")
            await r.reach(State.LISTENING)
            conn = r.client.connections[0]
            conn.push(tool_call_msg(("t1", tool, {})), audio_msg(goodbye), turn_complete_msg(generated=True))
            await until(lambda: "t1" in responses(conn), "the tool's result")
            assert responses(conn)["t1"]["response"]["ok"] is True
            await r.reach(State.RESPONDING)
            await asyncio.sleep(0.3)
            assert r.state is State.RESPONDING  # the goodbye is still playing: nothing ends it
            r.playback.idle = True  # (the fake speaker has played it)
            await until(lambda: r.state is not State.LISTENING and r.state is not State.RESPONDING,
                        "the conversation to end", timeout=10)
            assert r.playback.played == [goodbye]  # the goodbye played whole first
            return r

    r = asyncio.run(converse("end_conversation"))
    assert r.events[-2:] == [Event.SESSION_ENDED, Event.STOP] and r.transitions[-2].info["reason"] == \
        "the model ended the conversation"
    r = asyncio.run(converse("mute_microphone"))
    assert Event.MUTE_TOGGLE in r.events and State.MUTED in [t.new for t in r.transitions]


def test_a_conversation_with_tool_calls_end_to_end(soundcard, standin, run_daemon):
    """pivoice as a process, the real google-genai client, the stand-in sending a toolCall before its answer
    as the API does: the date is answered by id, every call is one journal line, and end_conversation ends
    the conversation once the goodbye has played."""
    from harness import read_wav
    from test_resilience import config, start_conversation

    b = standin.behaviour
    b.reply_pcm = read_wav("reply_24k.wav")[:48000]
    b.tool_calls = [("call-1", "get_date_and_time", {}), ("call-2", "end_conversation", {})]
    d = run_daemon(config(follow_up=30.0), extra_env=standin.env())
    start_conversation(d, soundcard)
    d.wait_for("conversation ended: the model ended the conversation", timeout=30)
    got = {r["id"]: r for r in standin.sessions[0].tool_responses}
    assert set(got) == {"call-1", "call-2"}
    assert got["call-1"]["name"] == "get_date_and_time" and got["call-1"]["response"]["date"] == time.strftime("%Y-%m-%d")
    assert d.count(r"tool get_date_and_time\(\{\}\): ok in \d+ ms .*event=tool") == 1
    assert d.count(r"tool end_conversation\(\{\}\): ok") == 1
    assert d.output.index("answer played") < d.output.index("the model ended the conversation")
    d.stop()


def test_a_gpio_output_tool_switches_only_its_declared_pin(mock_pins, tmp_path):
    """Declared outputs become tools: switching one drives its mock pin (active low too); an undeclared
    name or a bad argument is an error result and touches nothing; `remember` brings the state back."""
    from pivoice.config import BUILTIN_TOOLS
    from pivoice.tools.builtin import tools as builtin_tools
    from pivoice.tools.outputs import Outputs

    settings = parse({"tools": {"outputs": [
        {"name": "desk_lamp", "pin": 23, "description": "the lamp on the desk", "remember": True},
        {"name": "fan", "pin": 24, "description": "the fan", "active_high": False}]}}, "test")
    state = tmp_path / "outputs.json"

    async def body(outputs: Outputs, calls):
        sent: list = []
        from pivoice.tools import ToolRunner

        runner = ToolRunner(outputs.tools(), sent.extend)
        for c in calls:
            runner.call([c])
        await until(lambda: len(sent) == len(calls), "the results")
        return {r["id"]: r["response"] for r in sent}

    from google.genai import types

    def call(i, name, args):
        return types.FunctionCall(id=i, name=name, args=args)

    outputs = Outputs(settings.tools.outputs, state)
    outputs.open()
    lamp, fan = mock_pins.pin(23), mock_pins.pin(24)
    assert (lamp.state, fan.state) == (0, 1)  # off: the fan's relay is active low
    got = asyncio.run(body(outputs, [call("1", "desk_lamp", {"action": "on"}), call("2", "fan", {"action": "toggle"}),
                                     call("3", "garage_door", {"action": "on"}),
                                     call("4", "fan", {"action": "explode"}), call("5", "desk_lamp", {})]))
    assert got["1"] == {"output": "desk_lamp", "on": True} and got["2"] == {"output": "fan", "on": True}
    assert (lamp.state, fan.state) == (1, 0)
    assert got["3"] == {"error": "there is no tool named 'garage_door'"}
    assert got["4"] == {"error": "bad arguments: 'action' must be one of on, off, toggle, status"}
    assert got["5"] == {"error": "bad arguments: 'action' is missing"}
    assert [p for p in range(28) if p not in (23, 24) and mock_pins.pins.get(p) is not None] == []  # nothing else
    outputs.close()
    # After a restart: the lamp (remember = true) is on again, the fan (not remembered) is off.
    mock_pins.reset()
    again = Outputs(settings.tools.outputs, state)
    again.open()
    assert (mock_pins.pin(23).state, mock_pins.pin(24).state) == (1, 1)
    assert asyncio.run(body(again, [call("6", "desk_lamp", {"action": "status"})]))["6"]["on"] is True
    again.close()
    assert {t.name for t in builtin_tools(settings.tools, None)} <= set(BUILTIN_TOOLS)


def test_outputs_are_checked_in_the_config():
    import pytest

    from pivoice.errors import ConfigError

    for outputs, said in (([{"name": "Lamp!", "pin": 5, "description": "x"}], "tools.outputs.0.name"),
                          ([{"name": "lamp", "pin": 17, "description": "x"}], "tools.outputs[0].pin: GPIO17 is already"),
                          ([{"name": "lamp", "pin": 40, "description": "x"}], "is not a GPIO pin"),
                          ([{"name": "end_conversation", "pin": 5, "description": "x"}], "a built-in tool's name")):
        with pytest.raises(ConfigError, match=said.replace("[", r"\[").replace("]", r"\]")):
            parse({"gpio": {"button_pin": 17}, "tools": {"outputs": outputs}}, "test")


ECHO_ARGS = """import json, sys, time
if sys.argv[1:2] == ["--sleep"]:
    time.sleep(3600)
if sys.argv[1:2] == ["--flood"]:
    sys.stdout.write("x" * 5_000_000)
    sys.exit(0)
print(json.dumps(sys.argv[1:]))
"""


def test_a_command_tool_runs_only_its_program_with_hostile_arguments_as_plain_strings(tmp_path):
    import sys

    from google.genai import types

    from pivoice.tools import ToolRunner
    from pivoice.tools import commands as command_tools

    script = tmp_path / "echo_args.py"
    script.write_text(ECHO_ARGS)
    canary = tmp_path / "pwned"
    settings = parse({"tools": {"commands": [
        {"name": "echo", "description": "Says its arguments back.", "argv": [sys.executable, str(script), "{text}"],
         "parameters": {"text": {"type": "string", "max_length": 2_000_000}}, "required": ["text"],
         "max_output_bytes": 1_000_000},
        {"name": "sleepy", "description": "Never ends.", "argv": [sys.executable, str(script), "--sleep"],
         "timeout_seconds": 0.5},
        {"name": "chatty", "description": "Prints a lot.", "argv": [sys.executable, str(script), "--flood"],
         "max_output_bytes": 1000}]}}, "test")
    hostile = [f"; touch {canary}", f"$(touch {canary})", f"`touch {canary}`", f"a\nb\ntouch {canary}",
               f"' || touch {canary} '", "x" * 100_000]

    async def body():
        sent: list = []
        runner = ToolRunner(command_tools.tools(settings.tools.commands), sent.extend)
        calls = [types.FunctionCall(id=str(i), name="echo", args={"text": h}) for i, h in enumerate(hostile)]
        calls += [types.FunctionCall(id="big", name="echo", args={"text": "y" * 1_000_000}),
                  types.FunctionCall(id="hung", name="sleepy", args={}),
                  types.FunctionCall(id="flood", name="chatty", args={})]
        runner.call(calls)
        await until(lambda: len(sent) == len(calls), "every result", timeout=60)
        return {r["id"]: r["response"] for r in sent}

    got = asyncio.run(body())
    for i, h in enumerate(hostile):
        assert got[str(i)]["exit_code"] == 0 and json.loads(got[str(i)]["output"]) == [h], got[str(i)]
    assert not canary.exists()  # no shell ever saw them
    assert "could not be started" in got["big"]["error"]  # 1 MB: more than one argument may be (E2BIG)
    assert got["hung"] == {"error": "sleepy did not finish within 0.5 s and was stopped"}
    assert len(got["flood"]["output"]) == 1000 and got["flood"]["note"] == "the output was cut at 1000 bytes"


def test_a_command_gets_no_secret_from_the_environment(tmp_path, monkeypatch):
    import sys

    from pivoice.tools.commands import tools as command_tools

    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = parse({"tools": {"commands": [{"name": "env", "description": "Its environment.",
                                              "argv": [sys.executable, "-c", "import os; print(dict(os.environ))"]}]}},
                     "test")
    (tool,) = command_tools(settings.tools.commands)
    got = asyncio.run(tool.handler({}))
    assert TEST_KEY not in got["output"] and "CREDENTIALS_DIRECTORY" not in got["output"]


def test_a_slow_tool_does_not_hold_up_the_answer(tmp_path, soundcard, standin, run_daemon):
    """A NON_BLOCKING command tool that takes 3 s: the answer that comes with the call plays meanwhile, and
    the result goes back later with its id and its scheduling."""
    import sys

    from harness import read_wav
    from test_resilience import config, start_conversation

    b = standin.behaviour
    b.reply_pcm = read_wav("reply_24k.wav")[:48000]  # 1 s
    b.tool_calls = [("slow-1", "slow", {})]
    slow_tool = (f'[[tools.commands]]\nname = "slow"\ndescription = "Takes three seconds."\n'
                 f'argv = ["{sys.executable}", "-c", "import time; time.sleep(3); print(42)"]\nblocking = false\n')
    d = run_daemon(config(follow_up=8.0) + slow_tool,
                   extra_env=standin.env())
    start_conversation(d, soundcard)
    d.wait_for(r"tool slow\(\{\}\): ok in \d+ ms", timeout=30)
    played, result = d.output.index("answer played"), d.output.index("tool slow({}): ok")
    assert played < result, d.output  # the answer did not wait for the tool
    standin.wait_for(lambda: standin.sessions[0].tool_responses, 10, "the tool's result at the stand-in")
    (r,) = standin.sessions[0].tool_responses
    assert r["id"] == "slow-1" and r["response"]["output"] == "42\n" and r["scheduling"] == "WHEN_IDLE"
    d.stop()


# -- from a review: what a confused or misled model, or the world, could do -------------------------------


def test_a_conversation_waits_for_a_tool_at_work_but_a_goodbye_can_be_taken_back():
    """The follow-up window does not end a conversation while a tool is still working; an interruption
    (the person speaks up during the goodbye) takes end_conversation back."""
    from fakes import interrupted_msg
    from test_assistant_fast import Running

    from pivoice.states import State
    from pivoice.tools.builtin import tools as builtin_tools

    async def body():
        async with Running({"conversation": {"follow_up_seconds": 0.3}}) as r:
            r.assistant.tools = [Tool("slow", "Slow.", slow(1.0), timeout=5), *builtin_tools(r.settings.tools, r.assistant)]
            r.capture.say(wake="hey_jarvis")
            await r.reach(State.LISTENING)
            conn = r.client.connections[0]
            conn.push(tool_call_msg(("s", "slow", {})))
            await asyncio.sleep(0.7)  # twice the follow-up window
            assert r.state is State.LISTENING  # the tool is at work: the conversation waits for it
            await until(lambda: "s" in responses(conn), "the slow result")
            await r.reach(State.IDLE)  # then the window runs as usual
            for _ in range(15):
                r.capture.say()  # (a second apart: a new phrase, not the last one again)
            r.capture.say(wake="hey_jarvis")
            await r.reach(State.LISTENING)
            conn = r.client.connections[-1]
            conn.push(tool_call_msg(("e", "end_conversation", {})), audio_msg(b"\x01\x02" * 4800))
            await r.reach(State.RESPONDING)
            conn.push(interrupted_msg())  # "wait, one more thing"
            await r.reach(State.LISTENING)
            r.playback.idle = True
            await asyncio.sleep(0.2)
            assert r.state is State.LISTENING and not any(
                t.info.get("reason") == "the model ended the conversation" for t in r.transitions)

    asyncio.run(body())


def test_mute_is_offered_only_where_a_button_can_unmute_and_names_cannot_clash():
    import pytest

    from pivoice.errors import ConfigError
    from pivoice.tools.builtin import tools as builtin_tools

    settings = parse({}, "test")
    assert "mute_microphone" not in [t.name for t in builtin_tools(settings.tools, None, can_unmute=False)]
    for name in ("set_timer", "get_volume", "end_conversation"):
        with pytest.raises(ConfigError, match="a built-in tool's name"):
            parse({"tools": {"commands": [{"name": name, "description": "x", "argv": ["/bin/true"]}]}}, "test")


def test_a_command_value_that_looks_like_an_option_is_refused(tmp_path):
    import sys

    from pivoice.tools.commands import tools as command_tools

    settings = parse({"tools": {"commands": [{"name": "say", "description": "x", "argv": [sys.executable, "-c",
                                              "print(1)", "{text}"], "parameters": {"text": {"type": "string"}}}]}},
                     "test")
    (tool,) = command_tools(settings.tools.commands)
    assert "may not start with '-'" in asyncio.run(tool.handler({"text": "--output=/etc/passwd"}))["error"]


def test_a_start_over_drops_the_tool_work_of_the_session_that_was():
    from fakes import dropped, handle_msg

    async def body():
        client, events = FakeLiveClient(), []
        client.refuse_handles = dropped(1008, "Session resumption handle is invalid or expired.")
        s, task = start(client, events)
        await until(lambda: client.connections, "the connection")
        first = client.connections[0]
        first.push(handle_msg("h1"), tool_call_msg(("a", "slow", {})))
        await asyncio.sleep(0.05)
        assert s.tools_busy
        first.drop(1011, "Internal error occurred.")
        await until(lambda: len(client.connections) == 2, "a new session")
        await asyncio.sleep(0.7)  # longer than the slow tool would have taken
        assert not s.tools_busy and client.connections[1].tool_responses == []
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(body())
