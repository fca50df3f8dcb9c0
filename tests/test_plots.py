"""course_lib.plots: every helper draws labelled, titled axes from arrays of any backend."""
import numpy as np
import pytest
from matplotlib.figure import Figure

from course_lib import plots
from course_lib.trainer import History


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt
    plt.close("all")


def labelled(ax, title=True):
    assert ax.get_xlabel(), f"axes {ax} has no x label"
    assert ax.get_ylabel(), f"axes {ax} has no y label"
    if title:
        assert ax.get_title(), f"axes {ax} has no title"


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def history(n=5, diverged=False):
    h = History()
    h.train_acc = list(np.linspace(0.5, 0.99, n))
    h.val_acc = list(np.linspace(0.4, 0.9, n))
    h.train_loss = list(np.linspace(2.0, 0.1, n))
    h.step_loss = list(np.linspace(2.3, 0.1, 4 * n))
    h.diverged = diverged
    return h


def test_layer_histograms_dict_and_list(xp):
    acts = {f"layer {i}": xp.asarray(np.random.default_rng(i).standard_normal((200, 10)) * (i + 1))
            for i in range(3)}
    fig = plots.layer_histograms(acts, bins=20, fig=Figure())
    axes = visible_axes(fig)
    assert len(axes) == 3
    for ax in axes:
        assert ax.get_xlabel() and ax.get_title().startswith("layer")
    assert axes[0].get_ylabel() == "fraction of values"
    assert fig.get_suptitle()
    # a list, a fixed range, ReLU-style zeros, more layers than one row holds
    relu = [xp.maximum(a, 0) for a in acts.values()] * 4
    fig = plots.layer_histograms(relu, range=(0, 3), exclude_zeros=True, max_cols=5, fig=Figure())
    axes = visible_axes(fig)
    assert len(axes) == 12 and "zeros" in axes[0].get_title()
    assert axes[0].get_xlim() == (0, 3)
    assert axes[5].get_ylabel()  # first panel of the second row


def test_layer_histograms_into_given_axes(xp):
    fig = Figure()
    axes = fig.subplots(1, 2)
    out = plots.layer_histograms([xp.ones((5, 5)), xp.zeros((5, 5))], axes=axes, title="mine")
    assert out is fig and fig.get_suptitle() == "mine"
    with pytest.raises(ValueError, match="axes"):
        plots.layer_histograms([xp.ones(3)] * 3, axes=axes)


def test_layer_ridgeline(xp):
    acts = [xp.asarray(np.random.default_rng(i).uniform(-1, 1, 500) * 0.5 ** i) for i in range(12)]
    ax = plots.layer_ridgeline(acts, range=(-1, 1), ax=Figure().add_subplot())
    labelled(ax)
    assert ax.get_xlim() == (-1, 1)
    assert len(ax.get_yticks()) == 12


def test_learning_curves_per_epoch_and_per_step():
    ax = plots.learning_curves({"BN": history(), "no BN": history(diverged=True)}, metric="val_acc",
                               ax=Figure().add_subplot())
    labelled(ax)
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "validation accuracy"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["BN", "no BN (diverged)"]
    ax = plots.learning_curves({"a": history()}, metric="step_loss", smooth=3, logy=True,
                               ax=Figure().add_subplot())
    labelled(ax)
    assert ax.get_xlabel() == "step" and ax.get_yscale() == "log"
    assert len(ax.lines[0].get_xdata()) == 20 - 2


def test_learning_curves_new_figure_is_pyplot_managed():
    import matplotlib.pyplot as plt
    ax = plots.learning_curves({"a": [0.1, 0.5, 0.7]}, metric="val_acc")
    assert ax.figure in [plt.figure(n) for n in plt.get_fignums()]


def test_train_test_gap(xp):
    ax = plots.train_test_gap(history(), ax=Figure().add_subplot())
    labelled(ax)
    assert any("gap" in t.get_text() for t in ax.texts)
    ax = plots.train_test_gap(train=xp.asarray([0.5, 0.9, 1.0]), test=xp.asarray([0.5, 0.7, 0.75]),
                              x=xp.asarray([3, 6, 9]), test_label="test", ax=Figure().add_subplot())
    labelled(ax)
    assert list(ax.lines[0].get_xdata()) == [3, 6, 9]
    assert "+0.250" in ax.texts[0].get_text()
    with pytest.raises(ValueError):
        plots.train_test_gap(train=[1.0])


def test_percentile_bands(xp):
    steps = xp.arange(10)
    ax = plots.percentile_bands(steps, steps * 0.5, steps * 1.0, steps * 1.5, label="no BN",
                                ax=Figure().add_subplot())
    plots.percentile_bands(steps, -steps, 0 * steps, steps, label="BN", ax=ax, color="C1")
    labelled(ax)
    assert len(ax.lines) == 6 and len(ax.collections) == 2


def test_weight_tiles(xp):
    W = xp.asarray(np.random.default_rng(0).standard_normal((784, 12)))
    fig = plots.weight_tiles(W, n_cols=5, fig=Figure())
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 12
    vmax = float(np.abs(plots._host(W)).max())
    assert all(np.allclose(im.get_clim(), (-vmax, vmax)) for im in images)
    assert fig.get_suptitle()
    colorbar = [ax for ax in fig.axes if ax.get_ylabel() == "weight value"]
    assert colorbar, "the colour scale needs a labelled colorbar"
    fig = plots.weight_tiles(W, n_tiles=3, fig=Figure())
    assert len([ax for ax in fig.axes if ax.images]) == 3
    with pytest.raises(ValueError, match="784"):
        plots.weight_tiles(xp.ones((10, 3)), fig=Figure())


def test_sweep_grid_flat_and_2d():
    cells = [{"BN": history(), "no BN": [0.1, 0.1, 0.1]} for _ in range(6)]
    fig = plots.sweep_grid(cells, titles=[f"W std {s}" for s in range(6)], n_cols=4, title="init sweep",
                           fig=Figure())
    axes = visible_axes(fig)
    assert len(axes) == 6
    assert [ax.get_title() for ax in axes] == [f"W std {s}" for s in range(6)]
    assert axes[0].get_ylabel() and axes[-1].get_xlabel() and axes[3].get_xlabel()
    assert fig.legends and fig.get_suptitle() == "init sweep"
    assert axes[0].lines[1].get_linestyle() == "--"
    fig = plots.sweep_grid([[{"a": [1, 2]}, {"a": [2, 3]}], [{"a": [1, 2]}, {"a": [3, 1]}]],
                           row_labels=["lr 0.1", "lr 0.01"], col_labels=["BN", "no BN"], fig=Figure())
    axes = visible_axes(fig)
    assert [ax.get_title() for ax in axes[:2]] == ["BN", "no BN"]
    assert axes[2].get_ylabel().startswith("lr 0.01") and axes[3].get_xlabel() == "epoch"


def test_batch_statistics_plots(xp):
    rng = np.random.default_rng(0)
    means, variances = xp.asarray(rng.normal(2, 0.3, 50)), xp.asarray(rng.gamma(2, 1, 50))
    ax = plots.batch_stats_scatter(means, variances, 2.0, 2.0, batch_size=8, ax=Figure().add_subplot())
    labelled(ax)
    assert "m = 8" in ax.get_title()
    m = xp.asarray([2, 8, 32, 128])
    ax = plots.batch_noise_curve(m, 1 / xp.sqrt(m), 1.4 / xp.sqrt(m), highlight=8, ax=Figure().add_subplot())
    labelled(ax)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert ax.get_ylim()[1] >= 1.0


def test_to_png_and_log_axis_limits():
    fig = Figure()
    ax = fig.add_subplot()
    ax.semilogy([1, 2], [0.4, 0.5])
    lo, hi = plots.log_axis_limits(ax, [0.4, 0.5], lo=0.01, hi=2)
    assert (lo, hi) == (0.01, 2)
    assert plots.to_png(fig, dpi=30).startswith(b"\x89PNG")


def test_plots_does_not_import_widgets():
    import subprocess
    import sys
    from pathlib import Path
    code = "import sys, course_lib.plots; assert 'ipywidgets' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1]).returncode == 0
