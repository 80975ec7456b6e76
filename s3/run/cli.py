"""How every entry point speaks: a job's expected failures end in one line, ``error: <file or
key>: <what and what to do>``, with exit status 1; input used after a documented adjustment says so
in one line, ``warning: <file>: <what was done>``; anything else (a bug) keeps its traceback.

Expected failures are the user's input (every :class:`~s3.config.validation.InputError`: settings,
weight files, datasets, mask and frame files, run folders; the scorer's ``RunResultsError``) and the
operating system's refusals (an ``OSError``: a read-only or full output folder, a missing file, no
permission; with its file and a hint when it has an error number). An error raised in a DataLoader
worker is reported by its original message.
"""

from __future__ import annotations

import errno
import sys
import warnings
from typing import Any, Callable, Optional, TextIO, TypeVar

from s3.config.validation import InputError, InputWarning, first_line
from s3.eval.run_results import RunResultsError

T = TypeVar("T")

EXPECTED_ERRORS: tuple[type[BaseException], ...] = (InputError, RunResultsError, OSError)
_OS_HINTS = {
    errno.EACCES: "no permission; choose a folder you can write to",
    errno.EPERM: "no permission; choose a folder you can write to",
    errno.EROFS: "read-only file system; choose another output folder",
    errno.ENOSPC: "the disk is full; free space or choose another output folder",
    errno.EDQUOT: "the disk quota is used up; free space or choose another output folder",
}


def error_summary(err: BaseException) -> str:
    """The one line an expected failure ends with."""
    if isinstance(err, OSError) and err.errno is not None:
        where = f"{err.filename}: " if err.filename else ""
        hint = _OS_HINTS.get(err.errno)
        return f"{where}{err.strerror or first_line(err)}" + (f" ({hint})" if hint else "")
    return first_line(err)


def _show_input_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int,
    file: Optional[TextIO] = None, line: Optional[str] = None, *, fallback: Callable[..., Any],
) -> None:
    if issubclass(category, InputWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        fallback(message, category, filename, lineno, file, line)


def run_job(job: Callable[[], T]) -> T:
    """Run ``job``; an expected failure exits with ``error: <one line>`` and status 1, every input
    warning prints ``warning: <one line>``."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", InputWarning)
        fallback = warnings.showwarning
        warnings.showwarning = lambda *args, **kwargs: _show_input_warning(*args, **kwargs, fallback=fallback)
        try:
            return job()
        except EXPECTED_ERRORS as err:
            print(f"error: {error_summary(err)}", file=sys.stderr)
            raise SystemExit(1) from None
