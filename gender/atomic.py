"""Atomic file writes, and the checks that an output can be written and touches no input.

An interrupted run never leaves a half-written checkpoint or report; an output path that is a
folder, read-only, or one of the user's images is refused in one line before any work is done.
"""

import contextlib
import errno
import fnmatch
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from gender import UserError, interrupt

# errors of a write that no check before it could foresee: the disk filled up, a quota, a
# file-size limit, a file system remounted read-only, a disk that failed
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


# file_set's temporaries -> the outputs they stand for: an error names what the user asked for
_STANDS_FOR: dict[str, str] = {}


def _cannot_write(path, err: OSError) -> UserError:
    name = str(path)
    for tmp, final in _STANDS_FOR.items():
        if name == tmp or name.startswith(f"{tmp}/"):
            name = final
    return UserError(f"{name}: cannot be written ({err.strerror or err})")


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
        try:
            yield Path(tmp)
        except OSError as err:
            if err.errno not in WRITE_ERRORS:
                raise
            raise _cannot_write(path, err) from None  # the disk filled up while writing
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
    _check_distinct(outputs)
    folders, files = {}, set()
    for item in inputs:
        real = Path(os.path.realpath(item))
        if os.path.isdir(real):
            folders.setdefault(real, item)
        else:
            files.add(real)
    for path, folder in outputs:
        _check_output(path, folders, files, folder)


def _check_distinct(outputs: list[tuple[Path, bool]]) -> None:
    """Two outputs of one command must not be one file (or one inside the other's folder): the
    last written would silently replace the first, and both be reported as written."""
    seen: dict[Path, Path] = {}
    folders: dict[Path, Path] = {}
    for path, folder in outputs:
        real = Path(os.path.realpath(path))
        if real in seen:
            raise UserError(
                f"{path}: given for two outputs of this command ({seen[real]} too); give each "
                "output its own path"
            )
        seen[real] = path
        if folder:
            folders[real] = path
    for real, path in seen.items():
        for parent, folder in folders.items():
            if real != parent and real.is_relative_to(parent):
                raise UserError(
                    f"{path}: inside {folder}, the folder another output of this command is "
                    "written into; give each output its own place"
                )


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


def check_space(folder: str | Path, need: int) -> None:
    """Refuse before the work when the file system of `folder` has less than `need` bytes free.

    An estimate (the work's outputs and their temporaries): a disk that fills up anyway is
    still one line, from the write that failed.
    """
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        stats = os.statvfs(probe)
    except OSError:
        return  # no figure to compare with: the writes themselves will tell
    free = stats.f_bavail * stats.f_frsize
    if free < need:
        raise UserError(
            f"{folder}: {_size(free)} free on its disk, about {_size(need)} needed; free "
            "some space or choose another folder"
        )


def _size(count: float) -> str:
    return f"{count / 2**20:,.1f} MB" if count >= 2**20 else f"{count / 2**10:,.0f} kB"


def make_folder(path: str | Path) -> Path:
    """mkdir -p, with a failure reported as one line (UserError) naming the folder."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _cannot_write(path, err) from None
    return path


class FileSet:
    """Outputs that belong together, committed at once (see `file_set`).

    `add(path)` gives the temporary to write instead of `path` (a file beside it, keeping the
    suffix; or, with folder=True, a temporary folder whose files go into `path`); `drop(path)`
    removes `path` at the commit (a member of an older set that this one lacks).
    """

    def __init__(self) -> None:
        self.members: list[tuple[Path, Path | None, bool]] = []  # (final, temporary, folder)

    def add(self, path: str | Path, folder: bool = False) -> Path:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if folder:  # the folder itself is made at the commit: never left empty
                tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
            else:
                fd, name = tempfile.mkstemp(
                    dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix
                )
                os.close(fd)
                os.unlink(name)  # the writer makes it (Keras refuses to overwrite some files)
                tmp = Path(name)
        except OSError as err:
            raise _cannot_write(path, err) from None
        self.members.append((path, tmp, folder))
        _STANDS_FOR[str(tmp)] = str(path)
        return tmp

    def drop(self, path: str | Path) -> None:
        self.members.append((Path(path), None, False))

    def _commit(self) -> None:
        umask = os.umask(0)
        os.umask(umask)
        for path, tmp, folder in self.members:
            if tmp is None:
                if path.is_file() or path.is_symlink():
                    path.unlink()
            elif folder:
                path.mkdir(exist_ok=True)
                for item in sorted(tmp.iterdir()):
                    os.replace(item, path / item.name)
            elif tmp.is_dir():  # a SavedModel: the old folder goes aside, then away
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                if path.exists():
                    os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.chmod(tmp, 0o666 & ~umask)
                os.replace(tmp, path)
            _test_pause(path)  # between two members: what a concurrent set must never enter

    def _discard(self) -> None:
        for _, tmp, _ in self.members:
            _STANDS_FOR.pop(str(tmp), None)
            if tmp is not None and tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            elif tmp is not None and tmp.exists():
                tmp.unlink()


@contextlib.contextmanager
def file_set(lock: str | Path | None = None) -> Iterator[FileSet]:
    """Write several outputs that belong together: all of them, or none (the older set intact).

    Every member is written to a temporary first; when the block succeeds they are renamed into
    place one after the other, with SIGINT and SIGTERM held (`gender.interrupt.deferred`) so a
    stop never falls between two renames. With `lock` (a folder), the renames hold an exclusive
    lock on it and on every folder a member goes into (in one order, so two sets never wait on
    each other): two processes writing the same outputs end with one complete set, the last,
    never one's JSON beside the other's page.

    Raises:
        UserError: a temporary or a rename failed (a full disk: one line naming the path).
    """
    files = FileSet()
    try:
        yield files
        folders = {lock} if lock else set()
        folders |= {path.parent for path, tmp, _ in files.members if tmp is not None}
        with _folder_locks(folders), interrupt.deferred():
            _test_pause(Path("file_set"))
            try:
                files._commit()
            except OSError as err:
                raise _cannot_write(err.filename or "an output file", err) from None
    except OSError as err:
        if err.errno not in WRITE_ERRORS:
            raise
        raise _cannot_write(err.filename or "an output file", err) from None
    finally:
        files._discard()


@contextlib.contextmanager
def _folder_locks(folders: Iterable[str | Path]) -> Iterator[None]:
    """Exclusive flocks on several folders, taken in the order of their real paths."""
    reals = sorted({os.path.realpath(folder) for folder in folders})
    with contextlib.ExitStack() as stack:
        for real in reals:
            stack.enter_context(_folder_lock(real))
        yield


@contextlib.contextmanager
def _folder_lock(folder: str | Path | None) -> Iterator[None]:
    """An exclusive flock on a folder (none without one); released when the block ends."""
    if folder is None:
        yield
        return
    import fcntl

    fd = os.open(make_folder(folder), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def whole_folder(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path` (which must be missing or empty) to fill; it
    becomes `path` when the block succeeds and is deleted when it fails or is interrupted, so
    `path` is never left half-filled (dataset.py crop, pack)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.partial-"))
    except OSError as err:
        raise _cannot_write(path, err) from None
    _STANDS_FOR[str(tmp)] = str(path)
    try:
        yield tmp
        try:
            if path.is_dir():
                path.rmdir()  # empty (checked by the caller): the new folder takes its place
            os.replace(tmp, path)
        except OSError as err:
            raise _cannot_write(path, err) from None
    finally:
        _STANDS_FOR.pop(str(tmp), None)
        shutil.rmtree(tmp, ignore_errors=True)
