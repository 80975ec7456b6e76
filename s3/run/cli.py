"""How every entry point speaks: a job's expected failures end in one line, ``error: <what>``, with
exit status 1; anything else (a bug) keeps its traceback."""

from __future__ import annotations

import sys
from typing import Callable, TypeVar

from s3.config.validation import ConfigError
from s3.data.palette import MaskFileError
from s3.eval.datasets import DatasetError
from s3.eval.run_results import RunResultsError
from s3.model.weights import CheckpointError
from s3.run.evaluate import RunFolderError

T = TypeVar("T")

# Failures caused by the user's input (settings, files, folders), each with a message naming it.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    CheckpointError,
    DatasetError,
    MaskFileError,
    RunFolderError,
    RunResultsError,
    FileExistsError,
)


def run_job(job: Callable[[], T]) -> T:
    """Run ``job``; an expected failure exits with ``error: <message>`` (its first line) and status 1."""
    try:
        return job()
    except EXPECTED_ERRORS as err:
        message = str(err).strip().splitlines()
        print(f"error: {message[0] if message else type(err).__name__}", file=sys.stderr)
        raise SystemExit(1) from None
