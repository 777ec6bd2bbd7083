"""A rule's state machine on scripted answers and times: the first word decides the state, unknown answers never
count, a state settles after `debounce` agreeing answers in a row, the first settled state is the initial state (no
alert), a change inside the cooldown is held and released when the cooldown ends, or dropped if the state came back."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from edge.llm.alert_config import AlertRule
from edge.llm.alert_rules import UNKNOWN, RuleMachine, state_of

RULE = AlertRule("door", "Is a person in the doorway? Answer yes or no.", 5.0, ("yes", "no"), debounce=2,
                 cooldown_s=30.0)


def _feed(machine: RuleMachine, script: List[Tuple[float, str]]) -> List[Optional[Dict[str, Any]]]:
    """Each (time, answer) observed as frame 1, 2, ...; what each returned."""
    return [machine.observe({"frame_id": i, "answer": answer, "asked_at": at - 0.5}, now=at)
            for i, (at, answer) in enumerate(script, start=1)]


def test_the_first_word_lowercased_is_the_state() -> None:
    assert state_of("Yes, a person stands there.", RULE) == "yes"
    assert state_of("  no.", RULE) == "no"
    assert state_of("NO", RULE) == "no"
    assert state_of("Maybe yes", RULE) == UNKNOWN
    assert state_of("yesterday", RULE) == UNKNOWN
    assert state_of("", RULE) == UNKNOWN


def test_the_initial_state_settles_without_an_alert() -> None:
    machine = RuleMachine(RULE, "cam1")
    assert _feed(machine, [(100.0, "no"), (105.0, "No.")]) == [None, None]
    assert machine.state == machine.announced == "no"
    assert machine.summary() == {"name": "door", "question": RULE.question, "state": "no", "last_answer": "No.",
                                 "last_frame_id": 2, "asked_at": 104.5}


def test_a_change_needs_debounce_agreeing_answers_in_a_row() -> None:
    machine = RuleMachine(RULE, "cam1")
    fired = _feed(machine, [(100.0, "no"), (105.0, "no"), (110.0, "yes"), (115.0, "no"), (120.0, "yes"),
                            (125.0, "yes")])
    assert fired[:5] == [None] * 5 and machine.state == "yes"
    assert fired[5] == {"device": "cam1", "rule": "door", "state": "yes", "previous": "no", "answer": "yes",
                        "question": RULE.question, "frame_id": 6, "time": 125.0, "asked_at": 124.5}


def test_unknown_answers_never_count_nor_break_a_run() -> None:
    machine = RuleMachine(RULE, "cam1")
    fired = _feed(machine, [(100.0, "no"), (105.0, "no"), (110.0, "yes"), (115.0, "I cannot tell"),
                            (120.0, "yes")])
    assert fired[3] is None and machine.last_answer["answer"] == "yes"
    assert fired[4]["state"] == "yes" and fired[4]["frame_id"] == 5
    machine = RuleMachine(RULE, "cam1")
    assert _feed(machine, [(100.0, "blue"), (105.0, "green")]) == [None, None]
    assert machine.state is None and machine.summary()["state"] is None
    assert machine.summary()["last_answer"] == "green"


def test_a_change_inside_the_cooldown_is_held_then_released() -> None:
    machine = RuleMachine(RULE, "cam1")
    fired = _feed(machine, [(100.0, "no"), (101.0, "no"), (102.0, "yes"), (103.0, "yes"), (104.0, "no"),
                            (105.0, "no")])
    assert fired[3]["state"] == "yes" and fired[5] is None  # 2 s after the alert: held
    assert machine.state == "no" and machine.announced == "yes" and machine.held_until == 133.0
    assert machine.release(now=120.0) is None and machine.held_until == 133.0
    released = machine.release(now=133.0)
    assert released["state"] == "no" and released["previous"] == "yes"
    assert released["frame_id"] == 6 and released["time"] == 133.0 and machine.held_until is None
    assert machine.release(now=200.0) is None


def test_a_held_change_that_reverts_is_dropped() -> None:
    machine = RuleMachine(RULE, "cam1")
    _feed(machine, [(100.0, "no"), (101.0, "no"), (102.0, "yes"), (103.0, "yes"), (104.0, "no"), (105.0, "no"),
                    (106.0, "yes"), (107.0, "yes")])
    assert machine.state == machine.announced == "yes"
    assert machine.release(now=133.0) is None and machine.held_until is None


def test_after_the_cooldown_a_change_fires_at_once() -> None:
    machine = RuleMachine(RULE, "cam1")
    fired = _feed(machine, [(100.0, "no"), (101.0, "no"), (102.0, "yes"), (103.0, "yes"), (140.0, "no"),
                            (141.0, "no")])
    assert [a["state"] for a in fired if a] == ["yes", "no"] and machine.held_until is None


def test_debounce_one_and_three_states() -> None:
    rule = AlertRule("light", "Is the light red, green or off?", 1.0, ("red", "green", "off"), debounce=1,
                     cooldown_s=0.0)
    machine = RuleMachine(rule, "cam1")
    fired = _feed(machine, [(1.0, "off"), (2.0, "red"), (3.0, "green"), (4.0, "green")])
    assert [(a["previous"], a["state"]) for a in fired if a] == [("off", "red"), ("red", "green")]
