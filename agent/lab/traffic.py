"""A realistic mix of office calls, placed every few seconds until stopped."""

from __future__ import annotations

import csv
import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from agent.lab.processes import LabError

if TYPE_CHECKING:
    from agent.lab.calls import CallHandle
    from agent.lab.lab import Lab

log = logging.getLogger(__name__)

# Seconds between the starts of two calls; calls overlap, as in an office.
CALL_INTERVAL_SECONDS = (3.0, 7.0)

# Ring and talk times are drawn from these ranges, in seconds.
RING_SECONDS = (2.0, 5.0)
TALK_SECONDS = (3.0, 8.0)
GIVE_UP_SECONDS = (4.0, 9.0)


@dataclass(frozen=True)
class Contact:
    """A caller identity from callers.csv."""

    number: str
    name: str
    country: str


def load_contacts() -> list[Contact]:
    """Read the lab's caller identities (Swiss, German and Austrian numbers)."""
    text = resources.files("agent.lab").joinpath("callers.csv").read_text(encoding="utf-8")
    return [Contact(row["number"], row["name"], row["country"]) for row in csv.DictReader(text.splitlines())]


class TrafficMix:
    """Draws the next call of the mix, with its caller, callee and timing."""

    def __init__(self, lab: Lab, rng: random.Random, time_scale: float = 1.0) -> None:
        self.lab = lab
        self.rng = rng
        self.time_scale = time_scale
        self.contacts = load_contacts()
        # Kind of call and its weight: mostly answered and missed inbound calls.
        self.kinds: Sequence[tuple[str, int, Callable[[], dict[str, Any]]]] = (
            ("answered", 4, self.answered),
            ("missed", 2, self.missed),
            ("ring group answered", 2, self.ring_group_answered),
            ("ring group missed", 1, self.ring_group_missed),
            ("outgoing answered", 2, self.outgoing_answered),
            ("outgoing not answered", 1, self.outgoing_not_answered),
            ("withheld", 1, self.withheld),
            ("internal", 1, self.internal),
        )

    def next_call(self) -> tuple[str, dict[str, Any]]:
        """Return the kind of the next call and the arguments for Lab.call."""
        names = [kind[0] for kind in self.kinds]
        weights = [kind[1] for kind in self.kinds]
        index = self.rng.choices(range(len(names)), weights=weights)[0]
        return names[index], self.kinds[index][2]()

    def _seconds(self, bounds: tuple[float, float]) -> float:
        return round(self.rng.uniform(*bounds) * self.time_scale, 1)

    def _contact(self) -> Contact:
        return self.rng.choice(self.contacts)

    def answered(self) -> dict[str, Any]:
        contact = self._contact()
        return {
            "to": self.rng.choice(self.lab.extensions),
            "caller": contact.number,
            "display": contact.name,
            "answer_after": self._seconds(RING_SECONDS),
            "talk": self._seconds(TALK_SECONDS),
        }

    def missed(self) -> dict[str, Any]:
        contact = self._contact()
        return {
            "to": self.rng.choice(self.lab.extensions),
            "caller": contact.number,
            "display": contact.name,
            "answer_after": None,
            "cancel_after": self._seconds(GIVE_UP_SECONDS),
        }

    def ring_group_answered(self) -> dict[str, Any]:
        contact = self._contact()
        members = list(self.lab.ring_group_members)
        winner = self.rng.choice(members)
        answer_after = {member: (self._seconds(RING_SECONDS) if member == winner else None) for member in members}
        return {
            "to": self.lab.ring_group,
            "caller": contact.number,
            "display": contact.name,
            "answer_after": answer_after,
            "talk": self._seconds(TALK_SECONDS),
        }

    def ring_group_missed(self) -> dict[str, Any]:
        contact = self._contact()
        return {
            "to": self.lab.ring_group,
            "caller": contact.number,
            "display": contact.name,
            "answer_after": None,
            "cancel_after": self._seconds(GIVE_UP_SECONDS),
        }

    def outgoing_answered(self) -> dict[str, Any]:
        extension = self.rng.choice(self.lab.extensions)
        return {
            "to": self._contact().number,
            "caller": extension,
            "answer_after": self._seconds(RING_SECONDS),
            "talk": self._seconds(TALK_SECONDS),
        }

    def outgoing_not_answered(self) -> dict[str, Any]:
        extension = self.rng.choice(self.lab.extensions)
        return {
            "to": self._contact().number,
            "caller": extension,
            "answer_after": None,
            "cancel_after": self._seconds(GIVE_UP_SECONDS),
        }

    def withheld(self) -> dict[str, Any]:
        answered = self.rng.random() < 0.5
        call: dict[str, Any] = {"to": self.rng.choice(self.lab.extensions), "withheld": True}
        if answered:
            call.update(answer_after=self._seconds(RING_SECONDS), talk=self._seconds(TALK_SECONDS))
        else:
            call.update(answer_after=None, cancel_after=self._seconds(GIVE_UP_SECONDS))
        return call

    def internal(self) -> dict[str, Any]:
        caller, callee = self.rng.sample(list(self.lab.extensions), 2)
        return {
            "to": callee,
            "caller": caller,
            "answer_after": self._seconds(RING_SECONDS),
            "talk": self._seconds(TALK_SECONDS),
        }


def _report_finished(active: list[CallHandle]) -> list[CallHandle]:
    """Log each call that ended and return the ones still running."""
    running = []
    for handle in active:
        code = handle.returncode
        if code is None:
            running.append(handle)
        elif code == 0:
            log.info("call %s to %s ended as planned", handle.call_id, handle.plan.to)
            handle.errors_path.unlink(missing_ok=True)
        else:
            log.warning(
                "call %s to %s failed with sipp exit code %d; see %s", handle.call_id, handle.plan.to, code, handle.errors_path
            )
    return running


def run_traffic(
    lab: Lab,
    stop_event: threading.Event,
    seed: int | None = None,
    time_scale: float = 1.0,
    on_call: Callable[[str, CallHandle], None] | None = None,
) -> int:
    """Place calls of the mix every few seconds until stop_event is set; return the count.

    time_scale multiplies every ring, talk and pause time (0.3 runs the mix
    about three times faster). on_call receives the kind and handle of each call.
    Calls still running when it returns go on until they end or the lab stops.
    """
    if time_scale <= 0:
        raise ValueError(f"time_scale must be positive, not {time_scale}")
    rng = random.Random(seed)
    mix = TrafficMix(lab, rng, time_scale)
    active: list[CallHandle] = []
    placed = 0
    low, high = (bound * time_scale for bound in CALL_INTERVAL_SECONDS)
    log.info("traffic started: a call every %.1f-%.1f s", low, high)

    while not stop_event.is_set() and lab.running:
        kind, arguments = mix.next_call()
        try:
            handle = lab.call(**arguments)
        except LabError as error:
            log.warning("traffic stopped: the lab no longer takes calls: %s", error)
            break

        placed += 1
        log.info("traffic call %d (%s): %s", placed, kind, handle.call_id)
        if on_call is not None:
            on_call(kind, handle)
        active = _report_finished(active + [handle])
        stop_event.wait(rng.uniform(low, high))

    _report_finished(active)
    log.info("traffic stopped after %d calls", placed)
    return placed
