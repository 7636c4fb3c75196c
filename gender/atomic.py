"""Atomic file writes, and the checks that an output can be written and touches no input.

An interrupted run never leaves a half-written checkpoint or report; an output path that is a
folder, read-only, or one of the user's images is refused in one line before any work is done.
"""

import contextlib
import fnmatch
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from gender import UserError


def _cannot_write(path, err: OSError) -> UserError:
    return UserError(f"{path}: cannot be written ({err.strerror or err})")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    The temporary name keeps the final suffix, because Keras and matplotlib pick the format from it.

    Raises:
        UserError: the folder cannot be made or written, or `path` is a folder.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    except OSError as err:
        raise _cannot_write(path, err) from None
    os.close(fd)
    # mkstemp makes the file private (0600); a checkpoint or report should get the usual mode
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        _test_pause(path)
        try:
            os.replace(tmp, path)
        except OSError as err:
            raise _cannot_write(path, err) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _test_pause(path: Path) -> None:
    """TEST HOOK (tests/test_resume_kill.py), off unless GENDER_TEST_PAUSE_IN_SAVE is set.

    `SECONDS[:PATTERN]`: sleep that long after the temporary file is written and before it is
    renamed over `path` (only for file names matching the glob PATTERN, when given), so a test
    can kill the process while an interrupted save's temporary exists. Read at each call.
    """
    hook = os.environ.get("GENDER_TEST_PAUSE_IN_SAVE")
    if not hook:
        return
    seconds, _, pattern = hook.partition(":")
    if not pattern or fnmatch.fnmatch(path.name, pattern):
        time.sleep(float(seconds))


def write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically, as UTF-8.

    surrogateescape writes a file name that is not valid UTF-8 back as its own bytes, so a
    path read from the table opens the same file again.
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")


def check_outputs(
    outputs: Iterable[tuple[str | Path | None, bool]], inputs: Iterable[str | Path] = ()
) -> None:
    """Refuse output paths before the work: one that cannot be written or touches an input.

    Args:
        outputs: (path, is_folder) pairs: a file a command will write, or a folder it writes
            files into (it may exist); a None path is skipped (an output not asked for).
        inputs: input files and folders: no output may be one of the files (nor a link to
            one), nor lie in or below one of the folders. Resolved once for all outputs.

    Raises:
        UserError: one line naming the output and the reason.
    """
    outputs = [(Path(path), folder) for path, folder in outputs if path]
    if not outputs:
        return
    folders, files = {}, set()
    for item in inputs:
        real = Path(os.path.realpath(item))
        if os.path.isdir(real):
            folders.setdefault(real, item)
        else:
            files.add(real)
    for path, folder in outputs:
        _check_output(path, folders, files, folder)


def _check_output(path: Path, folders: dict, files: set, folder: bool) -> None:
    real = Path(os.path.realpath(path))
    places = {real, *real.parents} if folder else set(real.parents)
    inside = places & folders.keys()
    if inside:
        raise UserError(
            f"{path}: inside the input folder {folders[inside.pop()]}; outputs never go into "
            "input folders"
        )
    if real in files:
        raise UserError(f"{path}: is an input file; outputs never overwrite inputs")
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder")
    if not folder and path.is_dir():
        raise UserError(f"{path}: is a folder; give a file name")
    probe = path if folder else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{path}: cannot be written ({probe} is not a folder)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{path}: cannot be written ({probe} is read-only)")
    try:  # access() says yes to root everywhere; a real file says what the file system allows
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as err:
        raise UserError(f"{path}: cannot be written in {probe} ({err.strerror})") from None


def make_folder(path: str | Path) -> Path:
    """mkdir -p, with a failure reported as one line (UserError) naming the folder."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _cannot_write(path, err) from None
    return path
