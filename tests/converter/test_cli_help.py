"""Every minicpmv-convert flag has help text, and every flag a message tells the user to pass exists on the command
the user would pass it to."""
from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from converter.cli import COMMANDS, _parser

REPO = Path(__file__).resolve().parents[2]
FLAG = re.compile(r"(--[a-z][a-z0-9-]*)(?: ([a-z0-9][^\s,;:()]*))?")  # a flag and the literal value after it
NAMED_COMMAND = re.compile(r"minicpmv-convert ([a-z][a-z-]*)([^,;:()]*)")
# Where a message without a command name is shown: source file (and function, for the CLI's own messages) -> the
# commands whose runs reach it. A new message naming a flag in a place not listed here fails the test below.
REACHED_BY = {
    "converter/checkpoint_layout.py": ["inspect", "export", "convert", "bench"],  # verify passes its own advice
    "converter/checkpoint_layout.py:with_downsample_mode": ["export", "convert"],
    "converter/family.py": ["inspect", "export", "convert", "bench"],
    "converter/sizing.py": ["export", "convert"],
    "converter/calibration_settings.py": ["calibrate", "convert"],
    "converter/trt_ops.py": ["check-ops"],  # convert passes its own advice
    "converter/verify.py": ["verify"],
    "converter/cli.py:_convert": ["convert"],
    "converter/cli.py:_check_ops": ["check-ops"],
    "converter/cli.py:_slice_patches": ["bench"],
    "converter/cli.py:_make_gguf": ["make-gguf"],
    "converter/gguf_writer.py:recipe_for": ["make-gguf"],
    "edge/fsutil.py": ["make-checkpoint", "make-gguf", "export", "convert"],
    "edge/device/profiles.py": ["export", "convert"],
}


def _subparsers() -> Tuple[argparse._SubParsersAction, Dict[str, argparse.ArgumentParser]]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action, dict(action.choices)


def _options() -> Dict[str, Dict[str, argparse.Action]]:
    """Command -> flag -> its argparse action."""
    return {name: {flag: action for action in sub._actions for flag in action.option_strings}
            for name, sub in _subparsers()[1].items()}


def test_every_command_and_flag_has_help():
    action, subparsers = _subparsers()
    assert set(subparsers) == set(COMMANDS)
    assert all(choice.help for choice in action._choices_actions)
    missing = [(name, option.option_strings[0]) for name, sub in subparsers.items() for option in sub._actions
               if option.option_strings and not (option.help and option.help.strip())]
    assert missing == []


def _check(command: str, flag: str, value: str, where: str, text: str) -> None:
    """`command` takes `flag`, and `value` (a literal written after it) where the flag has choices."""
    options = _options()
    assert command in options, "%s: %r names command %s, which does not exist" % (where, text, command)
    assert flag in options[command], "%s: %r names %s, which %s does not take" % (where, text, flag, command)
    choices = options[command][flag].choices
    all_choices = {c for flags in options.values() for a in flags.values() for c in a.choices or ()}
    if choices and (re.search(r"\d", value) or value in all_choices):  # a value, not the next word ("or")
        assert value in choices, "%s: %r: %s %s is not one of %s" % (where, text, command, flag, list(choices))


def _strings(path: Path) -> Iterator[Tuple[str, str, bool]]:
    """(enclosing function, text, inside a raise) of every string constant of a source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    raised = {id(node) for r in ast.walk(tree) if isinstance(r, ast.Raise) for node in ast.walk(r)}

    def visit(node: ast.AST, function: str) -> Iterator[Tuple[str, str, bool]]:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.ClassDef)) else function
            if isinstance(child, ast.Constant) and isinstance(child.value, str):
                yield function, child.value, id(child) in raised
            yield from visit(child, name)

    yield from visit(tree, "")


def _sources() -> List[Path]:
    return sorted(REPO.glob("converter/**/*.py")) + sorted(REPO.glob("edge/**/*.py"))


def test_flags_named_with_their_command_exist():
    """"minicpmv-convert calibrate --bundle": calibrate is a command and takes --bundle (any string of the code)."""
    seen = 0
    for path in _sources():
        for _, text, _ in _strings(path):
            for command, rest in NAMED_COMMAND.findall(text):
                for flag, value in FLAG.findall(rest):
                    _check(command, flag, value, str(path.relative_to(REPO)), text)
                    seen += 1
    assert seen >= 4  # calibrate --bundle, convert --target, export --precision (edge and verify)


def test_flags_in_error_messages_exist_where_the_message_is_shown():
    """A flag in a raised message without a command name exists on every command that can show the message."""
    seen = 0
    for path in _sources():
        relative = path.relative_to(REPO).as_posix()
        for function, text, raised in _strings(path):
            bare = FLAG.findall(NAMED_COMMAND.sub("", text))
            if not raised or not bare:
                continue
            where = "%s:%s" % (relative, function)
            commands = REACHED_BY.get(where, REACHED_BY.get(relative))
            if relative.startswith("edge/") and commands is None:
                continue  # minicpmv-edge's own messages
            assert commands is not None, "%s: %r names a flag: add %s to REACHED_BY" % (where, text, where)
            for command in commands:
                for flag, value in bare:
                    _check(command, flag, value, where, text)
                    seen += 1
    assert seen >= 20


@pytest.mark.parametrize("text", ["run minicpmv-convert export --calibrate", "export it with minicpmv-convert export "
                                  "--precision int8", "minicpmv-convert build --bundle"])
def test_wrong_hints_are_caught(text):
    """The checks above refuse a flag the command lacks, a value outside its choices and an unknown command."""
    with pytest.raises(AssertionError):
        for command, rest in NAMED_COMMAND.findall(text):
            for flag, value in FLAG.findall(rest):
                _check(command, flag, value, "here", text)
