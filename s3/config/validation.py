"""Bad input and how it is reported: the error and warning classes of the user's input, one-line
summaries of any error, and small checks with one-line messages that name the offending config key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class InputError(ValueError):
    """The user's input (a setting, a file, a folder) cannot be used; the one-line message names it
    and says what to do. Every job ends on it with ``error: <message>`` (``s3.run.cli.run_job``)."""


class ConfigError(InputError):
    """A configuration value is invalid; the message names the key."""


class InputWarning(UserWarning):
    """Input used after a documented adjustment; the one-line message names the file and what was done."""


def first_line(err: BaseException) -> str:
    """The first non-empty line of ``err``'s message (of the original message when a DataLoader worker
    re-raised it with its traceback), or the class name when the message is empty."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    if any(line.startswith("Original Traceback") for line in lines):  # "module.Class: message" ends it
        return lines[-1].split(": ", 1)[-1]
    return lines[0]


def check_choice(key: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of {list(choices)}")


def check_probability(key: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key} must be in [0, 1], got {value!r}")


def check_positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{key} must be > 0, got {value!r}")
