"""One error type for bad input, and the wrapper that turns it into one line and exit code 1."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable


class PipelineError(Exception):
    """Bad input a user can fix: a corrupt file, a missing mask, a wrong param.

    The message names the file or param key and says what is wrong; it is printed as one line.
    Anything else that escapes a stage is a bug and keeps its traceback.
    """


# OSErrors the machine causes, not the code: a full disk or quota, a read-only or forbidden path.
# They get one line like bad input; any other OSError may be a bug and keeps its traceback.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS})


def one_line(error: BaseException) -> str:
    """The message of a PipelineError or an environment OSError, as one line naming the path."""
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename is not None else ""
        message = f"{where}{error.strerror or error}"
    else:
        message = str(error)
    return " ".join(message.split())


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); on bad input or a full/forbidden disk print `error: <message>` to stderr, exit 1."""
    try:
        main()
    except PipelineError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(1)
    except OSError as error:
        if error.errno not in ENVIRONMENT_ERRNOS:
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(1)
