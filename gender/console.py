"""What the toolkit says on stderr while it works: warnings and a progress count."""

import sys


def warn(message: str) -> None:
    """One line `warning: ...` on stderr (a skipped file, an odd input)."""
    print(f"warning: {message}", file=sys.stderr)


class Progress:
    """A one-line progress count on stderr (a line per 10% when stderr is not a terminal)."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label = total, label
        self.tty = sys.stderr.isatty()
        self.shown = -1

    def update(self, done: int) -> None:
        if self.tty:
            print(f"\r{self.label}: {done}/{self.total}", end="", file=sys.stderr, flush=True)
            return
        tenth = done * 10 // max(self.total, 1)
        if tenth > self.shown:
            self.shown = tenth
            print(f"{self.label}: {done}/{self.total}", file=sys.stderr, flush=True)

    def done(self) -> None:
        """Close the count: the final figure on a terminal (the periodic lines already end on
        it otherwise, so it is not printed twice)."""
        if self.tty:
            print(f"\r{self.label}: {self.total}/{self.total}", file=sys.stderr, flush=True)
        elif self.shown < 10:
            print(f"{self.label}: {self.total}/{self.total}", file=sys.stderr, flush=True)
