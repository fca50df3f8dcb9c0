"""The 3-vs-15-layer experiment of Source A at full scale: plain vs batch-normalized deep ReLU MLPs.

Source A: "Batch Normalization を実装する" (takataka, blog まんぼう日記, Dec 2015; see SOURCES.md).

Usage::

    python -m tools.full_scale --dataset mnist            # Source A's setting (needs the fetched data)
    python -m tools.full_scale --dataset fashion-mnist --epochs 5 --out results.md

Four networks, 784-W-...-W-10 with 3 and with 15 Linear layers, each with and
without BN after every hidden Linear; ReLU; std 1/sqrt(fan_in) init (Source A does
not state its init: this is the usual reading; ``--init`` changes it); momentum
SGD (lr 0.1, momentum 0.9), mini-batches of 128; ``--train-size`` training
images, the next 10,000 (``--val-size``) for per-epoch validation, and the
official 10,000 test images for the final test error.  The defaults are
Source A's: full MNIST (fetch it first: ``python -m course_lib.data fetch mnist``),
width 1000, 50,000 training images, 50 epochs, where Source A reports test
errors of 1.56 % / 1.31 % (3 layers, plain / BN) and 88.65 % / 1.58 % (15 layers).

A tqdm progress bar (``tqdm.auto``: a widget in Jupyter, a text bar in a terminal,
on stderr) counts the epochs of all runs with the time left; one line per epoch
goes to stdout (so a ``nohup`` log shows progress too).  ``--quiet`` turns both
off; ``TQDM_DISABLE=1`` turns off the bar only.

Prints a markdown table of the final test errors (beside Source A's numbers for
MNIST) and, with ``--out FILE``, writes it to FILE: JSON when FILE ends in
``.json``, markdown otherwise.  Chapter 04 runs the same code at a small size;
``COURSE_FULL_SCALE=1`` makes the notebook use this setting.

Cost: one epoch of the 15-layer, width-1000 net is ~13 GFLOP x 390 steps; on a
laptop CPU that is minutes per epoch (50 epochs: hours).  ``--device gpu`` runs
on cupy.  For a quick look use fewer epochs or a smaller ``--width``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from course_lib import backend
from course_lib import depth as D
from course_lib.data import load_mnist
from course_lib.trainer import Hook


class _EpochLog(Hook):
    """One flushed line per epoch, so that a log file (nohup) shows progress; advances ``bar``."""

    name = "epoch_log"

    def __init__(self, label, bar=None):
        self.label, self.start, self.bar = label, time.perf_counter(), bar

    def on_epoch(self, epoch, model, history):
        val = f", val acc {history.val_acc[-1]:.4f}" if history.val_acc else ""
        line = (f"  [{self.label}] epoch {epoch + 1}: train loss {history.train_loss[-1]:.4f}{val} "
                f"({time.perf_counter() - self.start:.0f} s)")
        if self.bar is None:
            print(line, flush=True)
            return
        self.bar.write(line, file=sys.stdout)  # above the bar, which stays at the bottom
        sys.stdout.flush()
        self.bar.set_postfix_str(self.label, refresh=False)
        self.bar.update(1)


def progress_bar(total, quiet=False):
    """A ``tqdm.auto`` bar over ``total`` epochs (all runs together), or ``None`` when ``quiet``."""
    if quiet:
        return None
    from tqdm.auto import tqdm

    # TQDM_DISABLE is read here, at call time (tqdm reads it once, when it is first imported)
    disable = os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes")
    return tqdm(total=total, unit="epoch", desc="full scale", dynamic_ncols=True, disable=disable)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m tools.full_scale",
                                description="3 vs 15 layers, with and without BN, at the scale of Source A "
                                            "(takataka 2015, 'Batch Normalization を実装する').")
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist",
                   help="full 60k training set "
                        "(default: mnist; fetch it with `python -m course_lib.data fetch mnist`)")
    p.add_argument("--epochs", type=int, default=D.SOURCE_A_SETTING["num_epochs"], help="default: 50")
    p.add_argument("--width", type=int, default=D.SOURCE_A_SETTING["width"],
                   help="hidden units per layer (default: 1000)")
    p.add_argument("--train-size", type=int, default=D.SOURCE_A_SETTING["n_train"],
                   help="training images (default: 50000)")
    p.add_argument("--val-size", type=int, default=10_000,
                   help="validation images held out of the training set (default: 10000)")
    p.add_argument("--depths", type=int, nargs="+", default=[3, 15], help="Linear layers per net (default: 3 15)")
    p.add_argument("--init", default=D.SOURCE_A_SETTING["init"],
                   help="weight init: lecun (std 1/sqrt(n), the usual reading of Source A's unstated init), "
                        "xavier, he, or a number (std)")
    p.add_argument("--lr", type=float, default=D.SOURCE_A_SETTING["lr"])
    p.add_argument("--momentum", type=float, default=D.SOURCE_A_SETTING["momentum"])
    p.add_argument("--batch-size", type=int, default=D.SOURCE_A_SETTING["batch_size"])
    p.add_argument("--seed", type=int, default=0, help="weights and shuffling (default: 0)")
    p.add_argument("--device", choices=backend.DEVICES, default=None,
                   help="cpu (numpy) or gpu (cupy); default: $COURSE_LIB_DEVICE or cpu")
    p.add_argument("--out", type=Path, help="also write the results here (.json: JSON, else markdown)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines and no progress bar")
    return p


def _init_arg(text):
    try:
        return float(text)
    except ValueError:
        return text


def main(argv=None):
    args = build_parser().parse_args(argv)
    for name in ("epochs", "width", "train_size", "batch_size"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if args.device:
        backend.use(args.device)
    try:
        splits = load_mnist(args.dataset, val_size=args.val_size, n_train=args.train_size, seed=args.seed)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    init = _init_arg(args.init)
    setting = {"dataset": args.dataset, "train_size": len(splits.x_train), "val_size": len(splits.x_val),
               "test_size": len(splits.x_test), "epochs": args.epochs, "width": args.width,
               "depths": args.depths, "init": str(init), "lr": args.lr, "momentum": args.momentum,
               "batch_size": args.batch_size, "seed": args.seed, "device": backend.device}
    command = "python -m tools.full_scale " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"{command}\n{splits}\nsetting: {setting}", flush=True)
    start = time.perf_counter()
    bar = progress_bar(2 * len(args.depths) * args.epochs, args.quiet)  # plain and BN per depth

    def hooks(depth, norm):
        return [] if args.quiet else [_EpochLog(f"{depth} layers, {'BN' if norm else 'no BN'}", bar)]

    finished = []

    def log(line):  # one line per finished run; a run that diverged stopped early: skip its epochs
        if bar is None:
            print(line, flush=True)
            return
        finished.append(line)
        bar.update(max(0, len(finished) * args.epochs - bar.n))
        bar.write(line, file=sys.stdout)

    try:
        runs = D.depth_experiment(splits, depths=args.depths, init=init, width=args.width, num_epochs=args.epochs,
                                  lr=args.lr, momentum=args.momentum, batch_size=args.batch_size, seed=args.seed,
                                  hooks=hooks, log=log)
    finally:
        if bar is not None:
            bar.close()
    total = time.perf_counter() - start
    reference = D.SOURCE_A_TEST_ERRORS if args.dataset == "mnist" else None
    ours = (f"{args.dataset}: {len(splits.x_train):,} images, {args.epochs} epochs, width {args.width}")
    table = D.results_table(runs, reference, ours=ours)
    print()
    print(table)
    print(f"\ntotal time {total / 60:.1f} min", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix == ".json":
            text = D.results_json(runs, command=command, seconds=round(total, 1), **setting)
        else:
            text = f"`{command}`\n\n{table}\n\nSetting: {setting}; total time {total / 60:.1f} min.\n"
        args.out.write_text(text + ("" if text.endswith("\n") else "\n"), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
