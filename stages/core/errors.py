"""One error type for bad input, and the wrapper that turns it into one line and exit code 1."""
from __future__ import annotations

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """Bad input a user can fix: a corrupt file, a missing mask, a wrong param.

    The message names the file or param key and says what is wrong; it is printed as one line.
    Anything else that escapes a stage is a bug and keeps its traceback.
    """


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); on PipelineError print `error: <message>` to stderr and exit 1."""
    try:
        main()
    except PipelineError as error:
        message = " ".join(str(error).split())  # one line, whatever the message held
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
