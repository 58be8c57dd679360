"""The status LED and the buttons, with gpiozero.

The LED follows the assistant's state (a transition listener); the buttons report to the assistant,
which decides. gpiozero picks its pin factory itself (lgpio on a Pi 5, RPi.GPIO/native elsewhere; the
tests use GPIOZERO_PIN_FACTORY=mock). Without GPIO, or with pins it cannot use, pivoice runs on
without LEDs and buttons and says why in one line: the voice works regardless.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from .config import GpioSettings, check_pins
from .states import State, Transition

log = logging.getLogger("pivoice.gpio")

# Colours for an RGB LED, per state.
COLOURS: dict[State, tuple[float, float, float]] = {
    State.CONNECTING: (0.0, 0.0, 1.0),  # blue, fast blink
    State.LISTENING: (0.0, 0.0, 1.0),  # blue
    State.RESPONDING: (0.0, 1.0, 1.0),  # cyan, pulsing
    State.MUTED: (1.0, 0.0, 0.0),  # red
    State.ERROR: (1.0, 0.0, 0.0),  # red, blinking
    State.STARTING: (1.0, 0.5, 0.0),  # amber, while starting
    State.RINGING: (1.0, 0.5, 0.0),  # amber, fast blink
}
FAST = (0.1, 0.1)  # on, off (s)
SLOW = (0.5, 0.5)
BLIP = (0.1, 1.9)
ERROR = (0.05, 0.45)  # a short flash twice a second (red on an RGB LED)
DIM = 0.1


class Gpio:
    """Owns the gpiozero devices. `available` is False when running without them."""

    def __init__(self, settings: GpioSettings, assistant: Any, hold_mutes: bool = True):
        """hold_mutes: a long press toggles mute (not in push-to-talk mode, where holding is talking)."""
        self.settings = settings
        self.hold_mutes = hold_mutes
        self.assistant = assistant
        self.led: Any = None
        self.button: Any = None
        self.mute_button: Any = None
        self.available = False
        self._held = False

    def open(self) -> str | None:
        """Creates the LEDs and buttons; what is wrong when they cannot be used (it runs without them)."""
        s = self.settings
        if not s.enabled:
            log.info("GPIO off (gpio.enabled = false): no LEDs or buttons")
            return None
        if s.led == "none" and s.button_pin is None and s.mute_pin is None:
            return None
        problem = check_pins(s)
        if problem:
            log.error("%s. Running without LEDs and buttons until that is fixed.", problem)
            return problem
        try:
            # gpiozero warns once per pin backend it could not load: kept for the one line below, which
            # says why each failed (the reason a Pi's GPIO does not work is in there, not in BadPinFactory).
            with warnings.catch_warnings(record=True) as fallbacks:
                warnings.simplefilter("always")
                self._create()
        except Exception as e:  # noqa: BLE001 - BadPinFactory, permissions, pins in use...
            self.close()
            why = "; ".join(str(w.message).removeprefix("Falling back from ") for w in fallbacks
                            if str(w.message).startswith("Falling back from "))
            problem = (f"GPIO not available ({type(e).__name__}: {e}{f' [{why}]' if why else ''}): running without "
                       f"LEDs and buttons. On a Pi, the user pivoice runs as must be in the 'gpio' group.")
            log.warning("%s", problem)
            return problem
        self.available = True
        parts = []
        if self.led is not None:
            parts.append(f"{s.led} LED on GPIO{','.join(map(str, s.led_pins))}")
        if self.button is not None:
            parts.append(f"button on GPIO{s.button_pin}")
        if self.mute_button is not None:
            parts.append(f"mute button on GPIO{s.mute_pin}")
        log.info("GPIO: %s", ", ".join(parts))
        return None

    def _create(self) -> None:
        from gpiozero import LED, PWMLED, RGBLED, Button

        s = self.settings
        if s.led == "led":
            self.led = LED(s.led_pins[0], active_high=s.led_active_high)
        elif s.led == "pwm":
            self.led = PWMLED(s.led_pins[0], active_high=s.led_active_high)
        elif s.led == "rgb":
            self.led = RGBLED(*s.led_pins, active_high=s.led_active_high)
        bounce = s.button_bounce_ms / 1000 or None
        if s.button_pin is not None:
            self.button = Button(s.button_pin, pull_up=s.button_pull_up, bounce_time=bounce,
                                 hold_time=s.long_press_seconds)
            self.button.when_pressed = self._pressed
            if self.hold_mutes:
                self.button.when_held = self._long_pressed
            self.button.when_released = self._released
        if s.mute_pin is not None:
            self.mute_button = Button(s.mute_pin, pull_up=s.button_pull_up, bounce_time=bounce)
            self.mute_button.when_pressed = lambda: self.assistant.mute_toggle()

    # gpiozero calls these from its own thread; the assistant hands them to its event loop.
    def _pressed(self) -> None:
        self._held = False
        self.assistant.button_down()

    def _long_pressed(self) -> None:
        self._held = True
        self.assistant.mute_toggle()

    def _released(self) -> None:
        self.assistant.button_up(self._held)

    def show(self, state: State) -> None:
        """Set the LED's pattern for `state`."""
        led = self.led
        if led is None:
            return
        kind = self.settings.led
        if state in (State.IDLE, State.STOPPED):
            led.off()
        elif kind == "rgb":
            colour = COLOURS[state]
            if state in (State.CONNECTING, State.RINGING):
                led.blink(*FAST, on_color=colour)
            elif state is State.ERROR:
                led.blink(*ERROR, on_color=colour)
            elif state is State.RESPONDING:
                led.pulse(0.5, 0.5, on_color=colour)
            else:
                led.color = colour
        elif state in (State.CONNECTING, State.RINGING):
            led.blink(*FAST)
        elif state is State.ERROR:
            led.blink(*ERROR)
        elif state in (State.LISTENING, State.STARTING):
            led.on()
        elif state is State.RESPONDING:
            led.pulse(0.5, 0.5) if kind == "pwm" else led.blink(*SLOW)
        elif state is State.MUTED:
            if kind == "pwm":
                led.value = DIM
            else:
                led.blink(*BLIP)

    def on_transition(self, t: Transition) -> None:
        self.show(t.new)

    def close(self) -> None:
        for dev in (self.led, self.button, self.mute_button):
            if dev is not None:
                try:
                    dev.close()
                except Exception:  # noqa: BLE001
                    pass
        self.led = self.button = self.mute_button = None
