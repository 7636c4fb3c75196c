"""Stopping on SIGINT and SIGTERM: one line saying what was kept, exit status 130 or 143.

Every CLI's main runs its work under `gender.console.run_cli`, which installs the handlers
here for the time of the work. A signal raises `Interrupted` (a KeyboardInterrupt, so code
that cleans up after Ctrl-C cleans up after `kill`, `timeout` and `docker stop` too) in the main
thread. Work that must not be cut in two (renaming a bundle's files into place) runs inside
`deferred()`: a signal there takes effect when the block ends.

Python runs a signal handler only between bytecodes of the main thread, so a main thread blocked
inside TensorFlow (a collective waiting for a worker that never comes) would never see it. A
watcher thread woken through `signal.set_wakeup_fd` gives the main thread GRACE_SECONDS to stop;
after that it prints the same line and ends the process itself. Nothing is half-written then
either: files are written under temporary names and renamed whole (gender.atomic).
"""

import _thread
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How long the main thread has to stop by itself after a signal before the watcher ends the
# process: long enough to finish a checkpoint's rename, short enough for `timeout` and
# schedulers, which send SIGKILL after about 10 s (docker stop's default).
GRACE_SECONDS = 4.0

DEFAULT_KEPT = "stopped; no file was left half-written"


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; `status` is the conventional exit status, 128 + signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def status(self) -> int:
        return 128 + self.signum


_state = {"kept": DEFAULT_KEPT, "deferred": 0, "pending": None, "stopping": None}
_lock = threading.Lock()


def keep(text: str) -> None:
    """Say what an interruption from now on leaves behind (the stop line's second half)."""
    _state["kept"] = text


def stop_line(signum: int) -> str:
    """The one line printed on a stop: which signal, and what was kept."""
    return f"interrupted ({signal.Signals(signum).name}): {_state['kept']}"


def _handler(signum, frame) -> None:
    if _state["stopping"] is not None:
        return  # a second Ctrl-C while stopping: the watcher makes sure the stop ends
    if _state["deferred"]:
        _state["pending"] = signum
        return
    if _in_finalizer(frame):
        # Python prints and drops an exception raised in __del__ (TensorFlow's objects have
        # them), and the work would go on: the watcher delivers the signal again shortly.
        return
    _state["stopping"] = signum
    raise Interrupted(signum)


def _in_finalizer(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def stopping() -> int | None:
    """The signal that is stopping the work, or None."""
    return _state["stopping"]


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends (a set of renames that belong together)."""
    with _lock:
        _state["deferred"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["deferred"] -= 1
            pending = _state["pending"] if not _state["deferred"] else None
            _state["pending"] = None
        if pending is not None and threading.current_thread() is threading.main_thread():
            _state["stopping"] = pending
            raise Interrupted(pending)


def rearm() -> None:
    """Install the handlers again: TensorFlow's multi-worker start-up installs its own SIGTERM
    handler (for preemption notices), which would swallow `kill`."""
    if _state.get("installed"):
        for signum in SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, _handler)


@contextlib.contextmanager
def native_wait() -> Iterator[None]:
    """The signals' default action (end the process at once) during a block that waits in
    TensorFlow's C++ while holding Python's lock, where no handler or thread could run
    (MultiWorkerMirroredStrategy's start-up waiting for its peers). Nothing is written there."""
    if not _state.get("installed") or threading.current_thread() is not threading.main_thread():
        yield
        return
    for signum in SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
    try:
        yield
    finally:
        rearm()


def _watch(read_fd: int, closed: threading.Event) -> None:
    """The watcher thread: after a signal, end the process if the main thread cannot."""
    while True:
        try:
            data = os.read(read_fd, 16)
        except OSError:
            return
        if not data:
            return  # the pipe was closed: the work ended
        signums = [b for b in data if b in SIGNALS]
        if not signums:
            continue
        started = time.monotonic()
        while time.monotonic() - started < GRACE_SECONDS or _state["deferred"]:
            if closed.wait(0.25):
                return
            if _state["stopping"] is None and not _state["deferred"]:
                _thread.interrupt_main(signums[0])  # the handler declined (in a __del__)
        signum = _state["stopping"] or signums[0]
        if not _state.get("reported"):
            print(f"\n{stop_line(signum)}", file=sys.stderr, flush=True)
        os._exit(128 + signum)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted in the block (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    old_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    saved = dict(_state)
    _state.update(kept=DEFAULT_KEPT, pending=None, stopping=None, installed=True)
    _state.update(reported=False)
    closed = threading.Event()
    for signum in SIGNALS:
        # a job a shell started in the background has SIGINT ignored, and keeps it so
        if previous[signum] is not signal.SIG_IGN:
            signal.signal(signum, _handler)
    watcher = threading.Thread(
        target=_watch, args=(read_fd, closed), daemon=True, name="stop-watch"
    )
    watcher.start()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(old_fd)
        if _state["stopping"] is None:
            closed.set()
            os.close(write_fd)  # the watcher reads the end of the pipe and returns
            watcher.join(1)
            os.close(read_fd)
        else:  # stopping: the watcher stays, to end the process if shutting down hangs
            _state["reported"] = True
        _state.update({k: v for k, v in saved.items() if k in ("kept", "installed")})
