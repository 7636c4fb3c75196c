"""The Keras callback that writes a run folder while training (see `gender.runs`)."""

import math
import time
from pathlib import Path

import keras

from gender import UserError, interrupt
from gender.atomic import atomic_path
from gender.config import RunRecord
from gender.report import plain_figure
from gender.runs import link_over, run_kept, write_history


def versions() -> dict[str, str]:
    import tensorflow as tf

    return {"keras": keras.__version__, "tensorflow": tf.__version__}


class RunRecorder(keras.callbacks.Callback):
    """Save every epoch's checkpoint, best/last, the history table and curves, and run.json.

    Args:
        run_dir: the run folder.
        record: the run's record (run.json); updated with epochs_done, best_epoch and best
            metric, and written at each epoch's end.
        monitor: the logged metric that picks best.keras (lower is better).
        keep: how many epoch_NNN.keras files to keep (0 = all).
        history: rows of earlier epochs when resuming.
        announce: keep the stop line of an interruption (`gender.interrupt`) up to date with
            the last committed epoch (off on a worker, whose run folder is temporary).
    """

    def __init__(
        self,
        run_dir: str | Path,
        record: RunRecord,
        monitor: str,
        keep: int = 0,
        history: list[dict] | None = None,
        announce: bool = True,
    ) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.record = record
        self.monitor = monitor
        self.keep = keep
        self.history = list(history or [])
        self.announce = announce
        scores = [row[monitor] for row in self.history if monitor in row]
        self.best = min(scores) if scores else float("inf")
        self._started = 0.0
        # The model to save when Keras trains another one: the suffix of a cached model shares
        # its layers with the full model, and the full model is what the other scripts load.
        self.full_model = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._diverged(len(self.history) + 1, "loss", float(loss))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        number = epoch + 1  # epochs are numbered from 1 in file names and tables
        for name in ("loss", "val_loss"):  # never commit an epoch whose weights are ruined
            if name in logs and not math.isfinite(float(logs[name])):
                self._diverged(number, name, float(logs[name]))
        row = {"epoch": number, "seconds": round(time.perf_counter() - self._started, 2)}
        row.update({k: float(v) for k, v in logs.items()})
        row["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self.history.append(row)

        # run.json's epochs_done is the commit, written last: a kill before it leaves at most
        # files of the uncommitted epoch, which gender.runs.reconcile_run discards on resume.
        checkpoint = self.run_dir / f"epoch_{number:03d}.keras"
        with atomic_path(checkpoint) as tmp:
            (self.full_model or self.model).save(tmp)
        write_history(self.run_dir, self.history)
        link_over(checkpoint, self.run_dir / "last.keras")
        score = row.get(self.monitor)
        if score is not None and score < self.best:
            self.best = score
            link_over(checkpoint, self.run_dir / "best.keras")
            self.record.best_epoch, self.record.best_metric = number, {self.monitor: score}
        switches = [phase["last_epoch"] for phase in (self.record.phases or [])[:-1]]
        best = self.record.best_epoch
        plot_curves(self.history, self.run_dir / "curves.png", best, switches, self.monitor)
        self.record.epochs_done = number
        self.record.write(self.run_dir)
        if self.announce:
            interrupt.keep(run_kept(self.run_dir, number))
        self._rotate(number)  # after the commit: the committed epoch's checkpoint always exists

    def _diverged(self, number: int, name: str, value: float) -> None:
        """Stop the run: a loss of nan or inf means the weights are ruined from here on.

        No resume command: resuming keeps the learning rate that diverged."""
        done = len(self.history)
        kept = (
            "the chief's run folder keeps its last good epoch"
            if not self.announce
            else f"{self.run_dir} keeps epoch {done}, the last good one"
            if done
            else f"no epoch of {self.run_dir} was finished"
        )
        raise UserError(
            f"training stopped: {name} became {value} in epoch {number}; {kept}; train again "
            "with a lower --lr"
        )

    def _rotate(self, number: int) -> None:
        if self.keep <= 0:
            return
        old = self.run_dir / f"epoch_{number - self.keep:03d}.keras"
        if number - self.keep >= 1 and old.exists():
            old.unlink()  # best.keras and last.keras are separate links and stay


def plot_curves(
    history: list[dict],
    path: str | Path,
    best_epoch: int | None = None,
    switches: list[int] | None = None,
    monitor: str = "val_loss",
) -> None:
    """Loss and accuracy per epoch for train and validation, as a PNG.

    Args:
        best_epoch: marked with a dashed line (the epoch best.keras holds).
        switches: the last epoch of each phase but the last: a dotted line after each, where
            training went from the head alone to fine-tuning the backbone (the curves jump there).
        monitor: the metric that picked the best epoch, named in the legend.
    """
    # The object API needs no pyplot and so no global backend choice (matplotlib.use).
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    fig = plain_figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, label in (("", "train"), ("val_", "validation")):
            values = [row.get(prefix + metric) for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, marker="o", label=label)
        for k, switch in enumerate(switches or []):
            ax.axvline(switch + 0.5, color="grey", linestyle=":",
                       label="head -> fine-tuning" if k == 0 else None)  # fmt: skip
        if best_epoch:
            ax.axvline(best_epoch, color="green", linestyle="--",
                       label=f"best epoch {best_epoch} ({monitor})")  # fmt: skip
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
