"""What every step of the trainer shares: the cut-off K of MAP@K, a week in ms (the rows' cutoffs
are weekly), the error a user can act on (with its exit code) and the progress log on stderr
(stdout carries the summary line only)."""

from __future__ import annotations

import sys

K = 12
WEEK_MS = 7 * 24 * 3600 * 1000
EXIT_INPUT = 1
EXIT_PARITY = 3


class TrainError(Exception):
    """A failure the user can act on; main prints the message and exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_INPUT) -> None:
        super().__init__(message)
        self.code = code


def log(message: str) -> None:
    print(f"train: {message}", file=sys.stderr, flush=True)
