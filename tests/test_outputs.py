"""Outputs appear whole or not at all, readable by others, and what killed runs leave behind is cleaned up."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from landcover.io import outputs
from landcover.io.errors import PipelineError, run_stage
from landcover.io.outputs import atomic_dir, atomic_file, clean_stale, process_alive, write_json
from tests.conftest import REPO

TOKEN = "0123456789abcdef"  # the 16 hex digits of a staging name


def siblings(final: Path) -> list[str]:
    """Everything beside `final` in its folder, `final` itself left out."""
    return sorted(path.name for path in final.parent.iterdir() if path != final)


@pytest.fixture
def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def umask():
    """Set a umask for one test; the old one comes back after it."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


# --- atomic_file ---------------------------------------------------------------------------------


def test_atomic_file_replaces_the_output_only_when_the_block_ends(tmp_path):
    final = tmp_path / "out.json"
    final.write_text("old")
    with atomic_file(final) as staging:
        assert staging.parent == tmp_path
        assert re.fullmatch(rf"\.out\.json\.{os.getpid()}\.[0-9a-f]{{16}}\.tmp", staging.name)
        assert staging.is_file() and staging.read_text() == ""  # reserved, empty
        staging.write_text("new")
        assert final.read_text() == "old"
    assert final.read_text() == "new"
    assert siblings(final) == []


@pytest.mark.parametrize("failure", [RuntimeError("bug"), KeyboardInterrupt()])
def test_atomic_file_keeps_the_old_output_when_the_block_fails(tmp_path, failure):
    final = tmp_path / "out.json"
    final.write_text("old")
    with pytest.raises(type(failure)):
        with atomic_file(final) as staging:
            staging.write_text("half")
            raise failure
    assert final.read_text() == "old"
    assert siblings(final) == []


def test_atomic_file_without_a_previous_output_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "a" / "b" / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_file(final) as staging:
            assert staging.parent == final.parent  # parents made
            raise RuntimeError("bug")
    assert list(final.parent.iterdir()) == []


def test_atomic_file_tolerates_the_block_removing_its_staging_file(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_file(tmp_path / "out.txt") as staging:
            staging.unlink()
            raise RuntimeError("bug")
    assert list(tmp_path.iterdir()) == []


def test_write_json_keeps_key_order_indents_and_ends_with_a_newline(tmp_path):
    write_json(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "m.json").read_text() == '{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ]\n}\n'


# --- atomic_dir ----------------------------------------------------------------------------------


def test_atomic_dir_yields_an_empty_staging_folder_beside_the_output(tmp_path):
    final = tmp_path / "tiles"
    with atomic_dir(final) as staging:
        assert staging.parent == tmp_path and staging.is_dir() and list(staging.iterdir()) == []
        assert re.fullmatch(rf"\.tiles\.{os.getpid()}\.[0-9a-f]{{16}}\.tmp", staging.name)
        assert not final.exists()
        (staging / "a.txt").write_text("new")
    assert (final / "a.txt").read_text() == "new"
    assert siblings(final) == []


@pytest.mark.parametrize("old_kind", ["dir", "file", "symlink"])
def test_atomic_dir_replaces_whatever_was_there(tmp_path, old_kind):
    final = tmp_path / "tiles"
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    if old_kind == "dir":
        final.mkdir()
        (final / "stale.txt").write_text("stale")
    elif old_kind == "file":
        final.write_text("stale")
    else:
        final.symlink_to(target)
    with atomic_dir(final) as staging:
        (staging / "a.txt").write_text("new")
    assert final.is_dir() and not final.is_symlink()
    assert sorted(path.name for path in final.iterdir()) == ["a.txt"]
    assert (target / "keep.txt").read_text() == "keep"  # a link is replaced, not followed
    assert siblings(final) == ["elsewhere"]


@pytest.mark.parametrize("failure", [RuntimeError("bug"), KeyboardInterrupt()])
def test_atomic_dir_keeps_the_old_output_when_the_block_fails(tmp_path, failure):
    final = tmp_path / "tiles"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(type(failure)):
        with atomic_dir(final) as staging:
            (staging / "sub").mkdir()
            (staging / "sub" / "half.txt").write_text("half")
            raise failure
    assert sorted(path.name for path in final.iterdir()) == ["old.txt"]
    assert siblings(final) == []


@pytest.mark.parametrize("code, raised", [(errno.EXDEV, OSError), (errno.ENOSPC, PipelineError)])
def test_atomic_dir_puts_the_old_output_back_when_renaming_the_new_one_in_fails(tmp_path, monkeypatch, code, raised):
    final = tmp_path / "tiles"
    final.mkdir()
    (final / "old.txt").write_text("old")
    real_rename = os.rename

    def rename(source, destination):
        if Path(source).name.endswith(".tmp"):
            raise OSError(code, os.strerror(code))
        real_rename(source, destination)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(raised, match=os.strerror(code)):
        with atomic_dir(final) as staging:
            (staging / "new.txt").write_text("new")
    assert sorted(path.name for path in final.iterdir()) == ["old.txt"]
    assert siblings(final) == []


def test_atomic_dir_sets_the_old_output_aside_before_the_new_one_goes_in(tmp_path, monkeypatch):
    """Never a moment without either: the old output is renamed away (not deleted) first, deleted last."""
    final = tmp_path / "tiles"
    final.mkdir()
    (final / "old.txt").write_text("old")
    seen = []
    real_rename = os.rename

    def rename(source, destination):
        seen.append((Path(source).name, Path(destination).name, sorted(siblings(final))))
        real_rename(source, destination)

    monkeypatch.setattr(os, "rename", rename)
    with atomic_dir(final) as staging:
        (staging / "new.txt").write_text("new")
    (aside_from, aside_to, _), (new_from, new_to, before_new) = seen
    assert aside_from == "tiles" and re.fullmatch(rf"\.tiles\.{os.getpid()}\.[0-9a-f]{{16}}\.old", aside_to)
    assert new_from == staging.name and new_to == "tiles"
    assert aside_to in before_new  # the old output still existed, aside, when the new one went in
    assert aside_to[: -len(".old")] == new_from[: -len(".tmp")]  # one run's aside and staging share a name
    assert (final / "new.txt").read_text() == "new" and siblings(final) == []


# --- permissions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_outputs_get_the_umask_permissions_not_private_ones(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    write_json(tmp_path / "m.json", {})
    with atomic_file(tmp_path / "c.csv") as staging:
        staging.write_text("x")
    with atomic_dir(tmp_path / "tiles") as staging:
        (staging / "a.txt").write_text("x")
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "c.csv").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "tiles").stat().st_mode & 0o777 == dir_mode


def test_the_tile_stage_output_is_readable_by_others(plain_dataset, tmp_path, umask):
    from stages import tile
    from tests.conftest import write_params

    params = write_params(tmp_path / "params.yaml", tile={"size": 32, "stride": 32})
    tile.main([str(plain_dataset), str(tmp_path / "tiles"), "--params", str(params)])
    assert (tmp_path / "tiles").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "tiles" / "index.csv").stat().st_mode & 0o777 == 0o644


# --- what killed runs leave behind ---------------------------------------------------------------


def test_process_alive(dead_pid, monkeypatch):
    assert process_alive(os.getpid())
    assert not process_alive(dead_pid)

    def forbidden(pid, sig):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "kill", forbidden)
    assert process_alive(dead_pid)  # another user's process: alive, its files are not ours to remove


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="process states are read from Linux's /proc")
def test_a_running_process_whose_name_holds_parentheses_is_alive(tmp_path):
    # /proc/<pid>/stat is "pid (name) state ...": a name like "x) Z (y" must not be read as a zombie
    odd_name = tmp_path / "x) Z (y"
    odd_name.symlink_to(shutil.which("sleep"))
    child = subprocess.Popen([str(odd_name), "60"])
    try:
        deadline = time.monotonic() + 10
        while "x) Z (y" not in Path(f"/proc/{child.pid}/stat").read_text():  # until it has exec'd
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert process_alive(child.pid)
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombies are told apart through Linux's /proc")
def test_a_killed_process_not_yet_reaped_is_dead():
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert process_alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not process_alive(child.pid)  # a zombie: it still has a pid, but writes nothing any more
    finally:
        child.kill()
        child.wait()


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from landcover.io.outputs import atomic_dir, atomic_file
    final, kind = Path(sys.argv[1]), sys.argv[2]
    with (atomic_dir if kind == "dir" else atomic_file)(final) as staging:
        (staging / "half.txt" if kind == "dir" else staging).write_text("half")
        os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_the_next_run_removes_what_a_killed_run_left(tmp_path, kind):
    final = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(final), kind], cwd=REPO)
    assert killed.returncode == -signal.SIGKILL
    assert len(siblings(final)) == 1  # the killed run's staging copy
    with (atomic_dir if kind == "dir" else atomic_file)(final) as staging:
        assert siblings(final) == [staging.name]
        (staging / "a.txt" if kind == "dir" else staging).write_text("new")
    assert siblings(final) == []


KILLED_BETWEEN_RENAMES = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from landcover.io.outputs import atomic_dir
    real_rename = os.rename
    def rename(source, destination):
        real_rename(source, destination)
        if destination.name.endswith(".old"):
            os.kill(os.getpid(), signal.SIGKILL)  # old output aside, new one not yet in
    os.rename = rename
    with atomic_dir(Path(sys.argv[1])) as staging:
        (staging / "new.txt").write_text("new")
""")


def test_an_old_output_set_aside_by_a_killed_run_is_put_back(tmp_path):
    final = tmp_path / "tiles"
    final.mkdir()
    (final / "old.txt").write_text("old")
    killed = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_RENAMES, str(final)], cwd=REPO)
    assert killed.returncode == -signal.SIGKILL
    assert not final.exists()
    assert sorted(name.rsplit(".", 1)[1] for name in siblings(final)) == ["old", "tmp"]
    clean_stale(final)
    assert sorted(path.name for path in final.iterdir()) == ["old.txt"]
    assert siblings(final) == []


def test_an_aside_copy_is_removed_when_the_output_is_there(tmp_path, dead_pid):
    final = tmp_path / "tiles"
    final.mkdir()
    (final / "new.txt").write_text("new")
    aside = tmp_path / f".tiles.{dead_pid}.{TOKEN}.old"
    aside.mkdir()
    (aside / "old.txt").write_text("old")
    clean_stale(final)
    assert sorted(path.name for path in final.iterdir()) == ["new.txt"]
    assert siblings(final) == []


def test_of_several_aside_copies_the_newest_is_put_back(tmp_path, dead_pid):
    final = tmp_path / "out.json"
    for age, content in ((300, "oldest"), (100, "newest"), (200, "middle")):
        aside = tmp_path / f".out.json.{dead_pid}.{age:016x}.old"
        aside.write_text(content)
        os.utime(aside, (1_000_000 - age, 1_000_000 - age))
    clean_stale(final)
    assert final.read_text() == "newest"
    assert siblings(final) == []


def test_leftovers_of_live_runs_and_of_other_outputs_stay(tmp_path, dead_pid):
    final = tmp_path / "tiles"
    keep = [
        f".tiles.{os.getpid()}.{TOKEN}.tmp",  # a run still going (this process)
        f".tiles.{os.getpid()}.{TOKEN}.old",  # its aside copy, while it swaps
        f".tiles2.{dead_pid}.{TOKEN}.tmp",  # another output's
        f".tiles.{dead_pid}.{TOKEN}.tmpx",  # not a staging name
        f".tiles.{dead_pid}.{TOKEN[:-1]}.tmp",  # nor this
        f"x.tiles.{dead_pid}.{TOKEN}.tmp",  # nor this
        "tiles.csv",
    ]
    removed = [f".tiles.{dead_pid}.{TOKEN}.tmp", f".tiles.{dead_pid}.{TOKEN[::-1]}.old"]
    for name in keep + removed:
        (tmp_path / name).mkdir()
    (tmp_path / removed[0] / "half.txt").write_text("half")
    final.mkdir()
    clean_stale(final)
    assert siblings(final) == sorted(keep)
    assert final.is_dir() and list(final.iterdir()) == []  # an existing output is not replaced by an aside copy


def test_a_leftover_file_of_a_dead_run_is_removed(tmp_path, dead_pid):
    (tmp_path / f".out.{dead_pid}.{TOKEN}.tmp").write_text("half")
    (tmp_path / f".out.{dead_pid}.{TOKEN[::-1]}.tmp").symlink_to(tmp_path / "missing")
    clean_stale(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_writing_many_outputs_into_one_folder_lists_it_once(tmp_path, dead_pid, monkeypatch):
    """Mapping thousands of scenes into one folder must not list it once per file written (quadratic time)."""
    (tmp_path / f".out7.json.{dead_pid}.{TOKEN}.tmp").write_text("half")  # a killed run's, found by the one listing
    listed = []
    iterdir = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: listed.append(self) or iterdir(self))
    for number in range(30):
        write_json(tmp_path / f"out{number}.json", {"number": number})
    with atomic_dir(tmp_path / "folder") as staging:
        (staging / "a.txt").write_text("a")
    assert listed == [tmp_path]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["folder", *(f"out{number}.json" for number in range(30))]
    )


def test_a_leftover_another_process_removed_after_the_listing_is_no_error(tmp_path, dead_pid):
    (tmp_path / "a.json").write_text("{}")
    leftover = tmp_path / f".b.json.{dead_pid}.{TOKEN}.old"
    leftover.write_text("old b")
    write_json(tmp_path / "a.json", {})  # lists the folder, leftover included
    leftover.unlink()  # another run cleaned it meanwhile
    write_json(tmp_path / "b.json", {"b": 1})
    assert json.loads((tmp_path / "b.json").read_text()) == {"b": 1}


# --- a full disk ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG])
@pytest.mark.parametrize("kind", ["dir", "file"])
def test_a_full_disk_is_one_error_naming_the_output_and_the_old_output_stays(tmp_path, kind, code):
    final = tmp_path / "out"
    (final.mkdir() if kind == "dir" else final.write_text("old"))
    with pytest.raises(PipelineError) as raised:
        with (atomic_dir if kind == "dir" else atomic_file)(final):
            raise OSError(code, os.strerror(code))
    assert str(raised.value) == (
        f"{final}: cannot write output ({os.strerror(code)}); the previous output, if any, is unchanged"
    )
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert final.is_dir() if kind == "dir" else final.read_text() == "old"
    assert siblings(final) == []


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_other_os_errors_stay_os_errors(tmp_path, kind):
    with pytest.raises(FileNotFoundError):
        with (atomic_dir if kind == "dir" else atomic_file)(tmp_path / "out"):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", "input.csv")
    assert list(tmp_path.iterdir()) == []


def test_no_space_errnos():
    assert outputs.NO_SPACE_ERRNOS == {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


# --- run_stage -----------------------------------------------------------------------------------


def stage_that_raises(error: BaseException):
    def main() -> None:
        raise error

    return main


@pytest.mark.parametrize(
    "error, line",
    [
        (PipelineError("a.csv: bad\n  row"), "error: a.csv: bad row"),
        (
            OSError(errno.ENOSPC, "No space left on device", "/data/tiles/x.png"),
            "error: /data/tiles/x.png: No space left on device",
        ),
        (OSError(errno.ENOSPC, "No space left on device"), "error: No space left on device"),
        (PermissionError(errno.EACCES, "Permission denied", "/data/tiles"), "error: /data/tiles: Permission denied"),
        (OSError(errno.EROFS, "Read-only file system", "/ro"), "error: /ro: Read-only file system"),
        (OSError(errno.EDQUOT, "Disk quota exceeded", "/q"), "error: /q: Disk quota exceeded"),
        (OSError(errno.EPERM, "Operation not permitted", "/p"), "error: /p: Operation not permitted"),
        (OSError(errno.EFBIG, "File too large", "/f"), "error: /f: File too large"),
    ],
)
def test_run_stage_prints_one_line_and_exits_1(capsys, error, line):
    with pytest.raises(SystemExit) as exited:
        run_stage(stage_that_raises(error))
    assert exited.value.code == 1
    assert capsys.readouterr().err == line + "\n"


@pytest.mark.parametrize(
    "error", [FileNotFoundError(errno.ENOENT, "No such file", "x"), OSError("no errno"), ValueError("a bug")]
)
def test_run_stage_keeps_the_traceback_of_anything_else(capsys, error):
    with pytest.raises(type(error)):
        run_stage(stage_that_raises(error))
    assert capsys.readouterr().err == ""


def test_run_stage_returns_quietly_on_success(capsys):
    calls = []
    run_stage(lambda: calls.append(1))
    assert calls == [1] and capsys.readouterr().err == ""


def test_a_full_disk_inside_a_staging_folder_names_the_output_not_the_staging_path(tmp_path):
    final = tmp_path / "predictions"
    with pytest.raises(PipelineError) as raised:
        with atomic_dir(final) as staging:
            with atomic_file(staging / "1.png"):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(raised.value).startswith(f"{final}: cannot write output (No space left on device)")
    assert list(tmp_path.iterdir()) == []
