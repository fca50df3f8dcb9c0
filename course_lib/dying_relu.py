r"""Dying ReLU units and batch normalization in the configuration of t-tkd3a's
"dying ReLU について学ぶ (その3) Batch Normalization" (Qiita, May 2017).

The source trains a one-hidden-layer network, 784-256-10 ("NNL2_L1P256"), with
Adam at its default learning rate (1e-3), reshuffling the training images every
epoch, and records per epoch the training and test accuracy and the number of
*dying* ReLU units: hidden units whose output is 0 for every training image.
Its picture is the first layer's weight gradient dW, one 28 x 28 tile per unit,
each tile min-max scaled to the brightness range 0-255 with 0.0001 added to
(max - min)::

    tile = (dW_j - min(dW_j)) / (max(dW_j) - min(dW_j) + 0.0001) * 255

so an all-zero gradient (a unit that got no gradient at all) is a black tile.

:func:`run` trains one such network and returns its per-epoch record (and,
optionally, the 256 dW tiles at the last step of chosen epochs);
:func:`dw_tiles` and :func:`tile_grid` turn a dW matrix into the source's
picture.  The source's weight initialisation is not stated; we use He.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from course_lib.backend import to_numpy
from course_lib.model import MLP, eval_mode
from course_lib.optim import Adam
from course_lib.trainer import Hook, accuracy, fit

SOURCE_SIZES = (784, 256, 10)
SOURCE_BATCH_SIZES = (10, 50, 100, 200, 500)
SOURCE_SLOPES = (0.001, 0.01, 0.18, 0.5)
TILE_EPS = 0.0001   # what the source adds to (max - min) before scaling a tile


@dataclass
class Record:
    """Per-epoch record of one run (lists have one entry per finished epoch)."""

    train_acc: list = field(default_factory=list)   # eval mode, on all training images
    test_acc: list = field(default_factory=list)    # eval mode
    dead: list = field(default_factory=list)        # hidden units with output <= 0 on every training image
    tiles: dict = field(default_factory=dict)       # epoch -> (256, 28, 28) uint8, see dw_tiles
    diverged: bool = False

    @property
    def final(self):
        """(train accuracy, test accuracy, dead units) after the last epoch (NaN if none)."""
        if not self.test_acc:
            return math.nan, math.nan, math.nan
        return self.train_acc[-1], self.test_acc[-1], self.dead[-1]


def dw_tiles(dW, eps=TILE_EPS):
    """The source's picture of a first-layer gradient: dW (784, units) -> uint8 (units, 28, 28).

    Each unit's column is min-max scaled on its own:
    ``(g - g.min()) / (g.max() - g.min() + eps) * 255``, then truncated to an integer.
    A column that is all zeros (no gradient reached the unit) becomes 0: black."""
    g = np.asarray(to_numpy(dW), dtype=np.float64)
    if g.ndim != 2 or g.shape[0] != 784:
        raise ValueError(f"dW must have shape (784, units), got {g.shape}")
    lo, hi = g.min(axis=0), g.max(axis=0)
    scaled = (g - lo) / (hi - lo + eps) * 255.0
    return scaled.T.reshape(-1, 28, 28).astype(np.uint8)


def tile_grid(tiles, ncols=16, gap=1, fill=255):
    """Arrange (n, h, w) tiles in a grid with ``ncols`` columns and ``gap`` pixels of ``fill`` between."""
    tiles = np.asarray(tiles)
    n, h, w = tiles.shape
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap), fill, dtype=tiles.dtype)
    for k in range(n):
        r, c = divmod(k, ncols)
        grid[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tiles[k]
    return grid


def make_model(norm=None, activation="relu", slope=0.01, seed=0, sizes=SOURCE_SIZES):
    """The source's 784-256-10 network (He init; BN between Linear and activation when ``norm="batch"``)."""
    return MLP(list(sizes), norm=norm, activation=activation, leaky_slope=slope, seed=seed)


class _EpochProbe(Hook):
    """One eval-mode pass over the training images per epoch: accuracy and dead units together;
    plus test accuracy; optionally the dW tiles at the last step of chosen epochs."""

    name = "source_d"

    def __init__(self, record, x_train, y_train, x_test, y_test, steps_per_epoch, tile_epochs):
        self.record, self.steps_per_epoch = record, steps_per_epoch
        self.x_train, self.y_train, self.x_test, self.y_test = x_train, y_train, x_test, y_test
        self.tile_epochs = set(tile_epochs)

    def on_step(self, step, model, history):
        epoch, k = divmod(step + 1, self.steps_per_epoch)
        if k == 0 and epoch in self.tile_epochs:   # the last step of epoch `epoch` (1-based)
            self.record.tiles[epoch] = dw_tiles(model.layer("linear0").grads["W"])

    def on_epoch(self, epoch, model, history):
        with eval_mode(model):
            logits = model.forward(self.x_train)
            hidden = [a for name, a in model.activations.items() if name.startswith(("relu", "leaky_relu"))][0]
            self.record.dead.append(int(to_numpy(hidden.max(axis=0) <= 0).sum()))
            self.record.train_acc.append(accuracy(logits, self.y_train))
            self.record.test_acc.append(accuracy(model.forward(self.x_test), self.y_test))


def run(train, test, *, norm=None, batch_size=100, activation="relu", slope=0.01, epochs=10, seed=0,
        lr=1e-3, tile_epochs=(), sizes=SOURCE_SIZES):
    """Train the source's network with Adam (reshuffled every epoch, shuffle order from ``seed``).

    train, test: (x, y) pairs.  ``tile_epochs``: epochs (1-based; 0 = before training, from a
    gradient on the first batch) whose last-step dW tiles are kept.  Returns a :class:`Record`."""
    (x_train, y_train), (x_test, y_test) = train, test
    record = Record()
    model = make_model(norm, activation, slope, seed, sizes)
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    if 0 in tile_epochs:   # the gradient at the initial weights, on the first batch of the first epoch
        idx = np.random.default_rng(seed).permutation(len(x_train))[:batch_size]
        loss, dlogits, _ = model.loss(x_train[idx], y_train[idx])
        model.backward(dlogits)
        record.tiles[0] = dw_tiles(model.layer("linear0").grads["W"])
    probe = _EpochProbe(record, x_train, y_train, x_test, y_test, steps_per_epoch, tile_epochs)
    history = fit(model, (x_train, y_train), optimizer=Adam(lr), num_epochs=epochs, batch_size=batch_size,
                  seed=seed, hooks=[probe], progress=False)
    record.diverged = history.diverged
    return record


def summarize(values):
    """mean, sample SD (0 for one value), min and max of the finite values, as floats."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": math.nan, "sd": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}
