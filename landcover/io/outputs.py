"""Write outputs so that a failing stage leaves nothing half-written behind.

Everything goes to a hidden staging sibling first and is renamed into place only on success;
renames within one directory are atomic on POSIX. Staging names carry the writer's process id,
`.<name>.<pid>.<random>.tmp` (and `.old` for a replaced output set aside during the swap), so a
later run can tell what a killed run left behind from what a running one is still writing.
Outputs get the usual permissions (0666/0777 less the umask), not tempfile's private 0600/0700:
a shared DVC cache or a second user must be able to read them.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from landcover.io.errors import PipelineError

STAGING_SUFFIX = ".tmp"
ASIDE_SUFFIX = ".old"
# Errors that mean the disk, not the code, stopped the write: reported as one line naming the output.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one of another user counts as alive).

    A zombie is dead: a killed stage whose parent was killed too (`kill -9` of a whole `dvc repro`)
    stays a zombie until init reaps it, and that can take longer than the next run takes to start.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # /proc/<pid>/stat: "pid (command) state ...", and the command may itself hold ") "
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux) or the process just ended: assume it runs
    return state not in ("Z", "X")


# `.<output name>.<pid>.<16 hex digits>.tmp` or `.old`: a staging or set-aside copy of an output
STAGING_NAME = re.compile(
    r"\.(?P<output>.+)\.(?P<pid>\d+)\.[0-9a-f]{16}"
    + f"(?P<suffix>{re.escape(STAGING_SUFFIX)}|{re.escape(ASIDE_SUFFIX)})"
)

# What this process found in each output folder the one time it listed it: {output name: [(path, pid,
# suffix)]}. Listing the folder again for every output written would make writing N outputs into
# one folder (mapping a region's scenes) cost N listings of up to N entries. Keyed by process id,
# so that a forked child lists for itself. Leftovers that appear after the listing belong to
# runs still going, or are the next process's to clean.
_FOLDER_LEFTOVERS: dict[tuple[int, Path], dict[str, list[tuple[Path, int, str]]]] = {}


def _list_leftovers(folder: Path) -> dict[str, list[tuple[Path, int, str]]]:
    found: dict[str, list[tuple[Path, int, str]]] = {}
    for path in folder.iterdir():
        match = STAGING_NAME.fullmatch(path.name)
        if match:
            found.setdefault(match["output"], []).append((path, int(match["pid"]), match["suffix"]))
    return found


def _leftovers(final: Path) -> list[tuple[Path, int, str]]:
    """(path, pid, suffix) of every staging or set-aside sibling of `final`, whoever wrote it, as this process
    first found them; each output's are handed out once."""
    key = (os.getpid(), final.parent.resolve())
    if key not in _FOLDER_LEFTOVERS:
        _FOLDER_LEFTOVERS[key] = _list_leftovers(final.parent)
    return _FOLDER_LEFTOVERS[key].pop(final.name, [])


def clean_stale(final: str | Path) -> None:
    """Remove what killed runs left beside `final`; first put back an old output they had set aside.

    A run killed between setting the old output aside and renaming the new one in leaves no
    `final` but an `.old` copy: that copy is the last good output, so it is restored. Leftovers of
    processes that are still running are theirs and stay.
    """
    final = Path(final)
    # _exists: another process may have cleaned up since this one listed the folder
    dead = [(path, suffix) for path, pid, suffix in _leftovers(final) if not process_alive(pid) and _exists(path)]
    asides = sorted((path for path, suffix in dead if suffix == ASIDE_SUFFIX), key=lambda path: path.stat().st_mtime)
    if asides and not _exists(final):
        os.rename(asides[-1], final)  # the newest aside is the output most recently in place
    for path, _ in dead:
        if _exists(path):
            _remove(path)


def _staging_name(final: Path, token: str, suffix: str) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.{token}{suffix}")


class OutputNotWritten(PipelineError):
    """The disk (or quota) was full while an output was written; `reason` is the OS's words for it."""

    def __init__(self, final: Path, reason: str) -> None:
        super().__init__(f"{final}: cannot write output ({reason}); the previous output, if any, is unchanged")
        self.reason = reason


@contextmanager
def _translate_no_space(final: Path) -> Iterator[None]:
    try:
        yield
    except OutputNotWritten as error:
        # Raised for a file inside this output's staging folder: name this output, not the staging path.
        raise OutputNotWritten(final, error.reason) from None
    except OSError as error:
        if error.errno in NO_SPACE_ERRNOS:
            raise OutputNotWritten(final, os.strerror(error.errno)) from None
        raise


def _swap_in(staging: Path, final: Path, token: str) -> None:
    """Rename `staging` to `final`, never leaving a moment in which a crash loses both.

    The old output is renamed aside, the new one in, and only then is the old one deleted; a
    crash in between leaves the aside copy, which the next run's clean_stale puts back.
    """
    aside = _staging_name(final, token, ASIDE_SUFFIX)
    had_old = _exists(final)
    if had_old:
        os.rename(final, aside)
    try:
        os.rename(staging, final)
    except BaseException:
        if had_old:
            os.rename(aside, final)
        raise
    if had_old:
        _remove(aside)


def _staging_dir(final: Path) -> tuple[Path, str]:
    """A new, empty staging directory beside `final` (what killed runs left there cleaned first), and its token."""
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(final)
    while True:
        token = secrets.token_hex(8)
        staging = _staging_name(final, token, STAGING_SUFFIX)
        try:
            staging.mkdir()  # mode 0777 less the umask, unlike mkdtemp's 0700
            return staging, token
        except FileExistsError:
            continue


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty staging directory that replaces `final` when the block succeeds."""
    final = Path(final)
    staging, token = _staging_dir(final)
    try:
        with _translate_no_space(final):
            yield staging
            _swap_in(staging, final, token)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def scratch_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty folder, named as a staging copy of `final`, that is removed when the block ends: scratch
    space for making `final`. A killed run's is removed by the next run's cleanup of `final`, as its staging
    copies are (a folder in /tmp would stay until the machine is cleaned)."""
    final = Path(final)
    staging, _ = _staging_dir(final)
    try:
        with _translate_no_space(final):
            yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def output_folder(folder: str | Path) -> Iterator[Path]:
    """`folder`, made with its missing parents; when the block fails, the folders it made are removed again,
    so that a refusal leaves no empty --output behind (a folder that was there stays)."""
    folder = Path(folder)
    made = [path for path in (folder, *folder.parents) if not _exists(path)]
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield folder
    except BaseException:
        if made:
            shutil.rmtree(made[-1], ignore_errors=True)
        raise


@contextmanager
def atomic_file(final: str | Path) -> Iterator[Path]:
    """Yield a staging file path (the file exists, empty) that replaces `final` when the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(final)
    while True:
        staging = _staging_name(final, secrets.token_hex(8), STAGING_SUFFIX)
        try:
            # mode 0666 less the umask, unlike mkstemp's 0600; O_EXCL: never another run's file
            os.close(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        with _translate_no_space(final):
            yield staging
            os.replace(staging, final)  # one atomic step for a file: nothing needs setting aside
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, payload: object) -> None:
    """Write JSON atomically, keys in the order given, so diffs between runs stay readable."""
    with atomic_file(path) as staging:
        staging.write_text(json.dumps(payload, indent=2) + "\n")
