"""course_lib.dying_relu: the source-D runner and the source's dW tiles."""
import numpy as np
import pytest

from course_lib import dying_relu as D


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    centers = rng.random((10, 784))
    x = (centers[y] * (rng.random((n, 784)) < 0.5)).astype(np.float32)
    x[:, :28] = 0.0   # a "background" row that is 0 in every image
    return x, y


def test_dw_tiles_scales_each_column_like_the_source():
    g = np.zeros((784, 3))
    g[:, 0] = np.linspace(-2.0, 2.0, 784)        # min -> 0, max -> 255 * 4 / 4.0001
    g[:, 2] = 5.0                                 # constant: (g - min) = 0 -> black
    tiles = D.dw_tiles(g)
    assert tiles.shape == (3, 28, 28) and tiles.dtype == np.uint8
    expected = ((g[:, 0] + 2.0) / (4.0 + D.TILE_EPS) * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(tiles[0].ravel(), expected)
    assert tiles[0].ravel()[0] == 0 and tiles[0].ravel()[-1] == 254   # 255 * 4 / 4.0001 truncates to 254
    assert tiles[1].max() == 0                     # an all-zero gradient (dead unit) is a black tile
    assert tiles[2].max() == 0
    # a zero pixel of a gradient with both signs in equal amounts sits in the middle: grey
    g2 = np.zeros((784, 1))
    g2[0, 0], g2[1, 0] = -1.0, 1.0
    assert D.dw_tiles(g2)[0].ravel()[5] == 127


def test_dw_tiles_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        D.dw_tiles(np.zeros((100, 4)))


def test_tile_grid_places_tiles_row_major():
    tiles = np.arange(5, dtype=np.uint8)[:, None, None] * np.ones((5, 2, 3), np.uint8)
    grid = D.tile_grid(tiles, ncols=2, gap=1, fill=255)
    assert grid.shape == (3 * 3 - 1, 2 * 4 - 1)
    assert grid[0, 0] == 0 and grid[0, 4] == 1 and grid[3, 0] == 2 and grid[6, 4] == 255
    assert grid[2, 0] == 255   # the gap


def test_run_records_every_epoch_and_the_requested_tiles():
    x, y = _data()
    rec = D.run((x, y), (x[:50], y[:50]), norm="batch", batch_size=50, epochs=2, seed=0, tile_epochs=(0, 2))
    assert len(rec.train_acc) == len(rec.test_acc) == len(rec.dead) == 2
    assert sorted(rec.tiles) == [0, 2] and rec.tiles[2].shape == (256, 28, 28)
    assert all(0.0 <= a <= 1.0 for a in rec.train_acc + rec.test_acc) and not rec.diverged
    assert rec.dead == [0, 0]                      # BN re-centres every unit on every batch
    assert rec.final[2] == 0                       # final = (train acc, test acc, dead units)


def test_run_counts_dead_units_without_bn():
    x, y = _data()
    model = D.make_model(None, seed=0)
    model.layer("linear0").params["b"][:7] = -1e6   # seven units that can never fire
    rec = D.Record()
    probe = D._EpochProbe(rec, x, y, x, y, steps_per_epoch=1, tile_epochs=())
    probe.on_epoch(0, model, None)
    assert rec.dead == [7]


def test_leaky_relu_runs_and_summarize():
    x, y = _data(n=100)
    rec = D.run((x, y), (x, y), norm=None, activation="leaky_relu", slope=0.01, batch_size=50, epochs=1, seed=1)
    assert len(rec.dead) == 1
    s = D.summarize([0.9, 0.8, float("nan"), 1.0])
    assert s["n"] == 3 and s["min"] == 0.8 and s["max"] == 1.0 and abs(s["mean"] - 0.9) < 1e-12
    assert abs(s["sd"] - 0.1) < 1e-12
    assert np.isnan(D.summarize([])["mean"])


def test_dw_tiles_explorer_browses_epochs():
    from course_lib import explorers as E
    data = E.synthetic_splits(n_train=200, n_val=50, n_test=50)
    train, test = (data.x_train, data.y_train), (data.x_test, data.y_test)
    records = {norm or "no BN": D.run(train, test, norm=norm, batch_size=50, epochs=2, seed=0,
                                              tile_epochs=range(0, 3)) for norm in (None, "batch")}
    ex = E.dw_tiles_explorer(records, epoch=0)
    ex.raise_errors = True
    assert list(ex.controls["epoch"].options) == [0, 1, 2]
    first = ex.png
    ex.controls["epoch"].value = 2
    assert ex.n_draws == 2 and ex.png and ex.png != first
    with pytest.raises(ValueError, match="no dW tiles for epoch 5"):
        E.dw_tiles_figure(records, 5)
