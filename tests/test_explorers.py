"""course_lib.explorers: the pure figure functions and the widgets around them (headless).

Sizes are kept tiny through the functions' keyword arguments, so the whole
file runs in seconds; the default sizes are timed by benchmarks/bench_explorers.py.
"""
import base64

import numpy as np
import pytest

from course_lib import explorers as E
from course_lib import plots

SMALL_TRAIN = dict(n_train=96, n_val=48, steps=10, width=16)
SMALL_OVERFIT = dict(n_train=60, n_test=60, depth=2, width=16, num_epochs=4, batch_size=30, eval_every=2)


@pytest.fixture(autouse=True)
def _raise_errors(monkeypatch):
    monkeypatch.setattr(E, "RAISE_ERRORS", True)
    monkeypatch.setattr(E, "DPI", 30)  # small PNGs: the tests compare them, nobody looks


@pytest.fixture(scope="module")
def data():
    """MNIST-shaped synthetic data on numpy (the widget tests; the backend does not matter there)."""
    return E.synthetic_splits(n_train=200, n_val=100, n_test=100)


def _is_twin(ax, fig):
    return any(o is not ax and o.get_position().bounds == ax.get_position().bounds for o in fig.axes)


def assert_labelled(fig):
    """Every visible panel has a title and both axis labels (a twin axis: its y label); the figure a title."""
    assert fig.get_suptitle(), "figure without a title"
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert axes
    for ax in axes:
        assert ax.get_ylabel(), f"panel {ax.get_title()!r} has no y label"
        if not _is_twin(ax, fig) or ax.get_title():
            assert ax.get_xlabel(), f"panel {ax.get_title()!r} has no x label"
            assert ax.get_title(), "a panel has no title"


# ------------------------------------------------------------------------ pure functions
PURE = {
    "init_histograms": (lambda d, v: E.init_histograms(*v, width=20, n_samples=100),
                        [(3, "xavier", "tanh"), (12, 1.0, "sigmoid"), (4, "he", "relu")]),
    "bn_batch_stats": (lambda d, v: E.bn_batch_stats(v, n_batches=30, batch_sizes=(2, 8, 32)), [2, 32]),
    "depth_curves": (lambda d, v: E.depth_curves(d, *v, **SMALL_TRAIN), [(2, True), (3, False)]),
    "batch_size_effects": (lambda d, v: E.batch_size_effects(d, v, depth=2, batch_sizes=(2, 8, 32),
                                                             **SMALL_TRAIN), [4, 32]),
    "weight_decay_curves": (lambda d, v: E.weight_decay_curves(d, v, **SMALL_OVERFIT), [0.0, 0.1]),
    "dropout_curves": (lambda d, v: E.dropout_curves(d, v, **SMALL_OVERFIT), [0.0, 0.5]),
    # the options of issue 15.5 (norm menu, equal data, BN switch)
    "batch_size_effects options": (lambda d, v: E.batch_size_effects(d, v[0], norm=v[1], hold_fixed=v[2], depth=2,
                                                                     batch_sizes=(2, 8, 32), **SMALL_TRAIN),
                                   [(4, "group", "data"), (8, None, "steps"), (16, "renorm", "data")]),
    "overfit curves with BN": (lambda d, v: v(d, 0.1, batch_norm=True, **SMALL_OVERFIT),
                               [E.weight_decay_curves, E.dropout_curves]),
}


@pytest.mark.parametrize("name", list(PURE))
def test_pure_function_returns_labelled_figure(name, xp):
    from course_lib import backend
    data = E.synthetic_splits(n_train=150, n_val=60, n_test=60)  # on the active backend
    fn, values = PURE[name]
    # every parameter value on the CPU; one on the stand-in device (it checks the array handling)
    for v in values if backend.device == "cpu" else values[:1]:
        fig = fn(data, v)
        assert_labelled(fig)


def test_pure_functions_are_deterministic(data):
    for name in ("bn_batch_stats", "depth_curves"):
        fn, values = PURE[name]
        a = plots.to_png(fn(data, values[0]), dpi=30)
        b = plots.to_png(fn(data, values[0]), dpi=30)
        assert a == b, f"{name} drew two different figures for the same parameters"


def test_pure_functions_reject_bad_parameters(data):
    with pytest.raises(ValueError, match="activation"):
        E.init_histograms(3, "xavier", "softplus")
    with pytest.raises(ValueError, match="batch_size"):
        E.bn_batch_stats(1)
    with pytest.raises(ValueError, match="drop probability"):
        E.dropout_curves(data, 1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        E.weight_decay_curves(data, -1.0)


def test_bn_batch_stats_spread_shrinks_like_inverse_sqrt_m():
    fig = E.bn_batch_stats(8, n_batches=400, batch_sizes=(2, 8, 32, 128, 512))
    ax = fig.axes[1]
    m, spread = (np.asarray(v, dtype=float) for v in ax.lines[0].get_data())
    np.testing.assert_allclose(spread, 1 / np.sqrt(m), rtol=0.2)


def test_bn_batch_stats_takes_a_population(xp):
    pop = xp.asarray(np.random.default_rng(1).normal(5.0, 2.0, (3000, 3)))
    fig = E.bn_batch_stats(16, n_batches=40, population=pop, feature=2, batch_sizes=(2, 16))
    assert_labelled(fig)
    assert "skewed" not in fig.get_suptitle()


def test_data_subsets_are_cached(data):
    a = E._subset(data, "train", 50)
    assert E._subset(data, "train", 50) is a
    assert len(a[0]) == 50 and a[0].shape[1] == 784


# ------------------------------------------------------------------------------- widgets
WIDGETS = {
    "init_explorer": (lambda d: E.init_explorer(width=20, n_samples=100),
                      {"depth": 7, "init": "he", "std": 0.05, "activation": "relu"}),
    "bn_stats_explorer": (lambda d: E.bn_stats_explorer(n_batches=30, batch_sizes=(2, 8, 32)),
                          {"batch_size": 128}),
    "depth_explorer": (lambda d: E.depth_explorer(d, depth=3, **SMALL_TRAIN),
                       {"depth": 2, "batch_norm": False}),
    "batch_size_explorer": (lambda d: E.batch_size_explorer(d, depth=2, batch_sizes=(2, 8, 32), **SMALL_TRAIN),
                            {"batch_size": 8, "norm": "layer", "hold_fixed": "data"}),
    "weight_decay_explorer": (lambda d: E.weight_decay_explorer(d, **SMALL_OVERFIT),
                              {"weight_decay": 0.0, "batch_norm": True}),
    "dropout_explorer": (lambda d: E.dropout_explorer(d, **SMALL_OVERFIT), {"p": 0.5, "batch_norm": True}),
}
DESCRIPTIONS = {"init_explorer": ["depth (layers)", "init", "init std", "activation"],
                "bn_stats_explorer": ["batch size"], "depth_explorer": ["depth (hidden layers)", "batch norm (BN)"],
                "batch_size_explorer": ["batch size", "normalization", "hold fixed"],
                "weight_decay_explorer": ["weight decay λ", "batch norm (BN)"],
                "dropout_explorer": ["dropout p (drop prob.)", "batch norm (BN)"]}


@pytest.mark.parametrize("name", list(WIDGETS))
def test_widget_redraws_on_every_control(name, data):
    build, new_values = WIDGETS[name]
    ex = build(data)
    assert "course-explorer" in ex._dom_classes
    assert [c.description for c in ex.controls.values()] == DESCRIPTIONS[name]
    assert ex.n_draws == 1 and ex.status.value.startswith("drawn in")
    for control in ex.controls.values():
        if hasattr(control, "continuous_update"):
            assert control.continuous_update is False
    for key, value in new_values.items():
        before_png, before_draws, before_params = ex.png, ex.n_draws, ex.params
        ex.controls[key].value = value
        assert ex.last_error is None and ex.status.value.startswith("drawn in"), ex.status.value
        assert ex.n_draws == before_draws + 1, f"setting {key} did not redraw"
        assert ex.params != before_params and ex.last_params == ex.params
        assert ex.png != before_png, f"setting {key} did not change the picture"
        assert ex.image.value == ex.png
        assert not any(c.disabled for c in ex.controls.values())
    # unchanged parameters: no redraw
    draws = ex.n_draws
    assert ex.redraw() is False and ex.n_draws == draws and ex.n_skipped >= 1


@pytest.mark.parametrize("name", ["bn_stats_explorer", "depth_explorer"])
def test_mimebundle_carries_the_static_png(name, data):
    ex = WIDGETS[name][0](data)
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]) == ex.png
    assert bundle["text/plain"].startswith(ex.explorer_title) and "\n" not in bundle["text/plain"]


def test_busy_state_while_computing():
    ex = E.bn_stats_explorer(n_batches=20, batch_sizes=(2, 8))
    seen = []
    render = ex.render_fn

    def spy(**kw):
        seen.append((ex.status.value, [c.disabled for c in ex.controls.values()]))
        return render(**kw)

    ex.render_fn = spy
    ex.controls["batch_size"].value = 4
    assert seen == [("computing…", [True])]
    assert ex.status.value.startswith("drawn in") and not ex.controls["batch_size"].disabled


def test_errors_show_in_the_status_line(monkeypatch):
    ex = E.bn_stats_explorer(n_batches=20, batch_sizes=(2, 8))
    png = ex.png

    def broken(**kw):
        raise RuntimeError("no luck")

    ex.render_fn = broken
    with pytest.raises(RuntimeError):
        ex.controls["batch_size"].value = 4
    monkeypatch.setattr(E, "RAISE_ERRORS", False)
    ex.raise_errors = False
    ex.controls["batch_size"].value = 8
    assert ex.status.value == "error: RuntimeError: no luck"
    assert "course-explorer-error" in ex.status._dom_classes
    assert ex.png == png and not ex.controls["batch_size"].disabled
    ex.render_fn = E.bn_batch_stats
    ex.controls["batch_size"].value = 16
    assert ex.status.value.startswith("drawn in") and "course-explorer-error" not in ex.status._dom_classes


def test_init_explorer_std_slider_and_scheme_stay_in_step():
    ex = E.init_explorer(width=20, n_samples=100)
    ex.controls["std"].value = 0.5
    assert ex.controls["init"].value == "custom" and ex.params["init_scale"] == 0.5
    ex.controls["init"].value = "he"
    assert ex.params["init_scale"] == "he"
    assert ex.controls["std"].value == pytest.approx(np.sqrt(2 / 20))
    assert ex.controls["init"].value == "he"      # moving the slider to He's std kept the choice
    ex2 = E.init_explorer(init_scale=0.3, width=20, n_samples=100)
    assert ex2.controls["init"].value == "custom" and ex2.params["init_scale"] == pytest.approx(0.3)


def test_non_default_start_values_are_selectable(data):
    ex = E.bn_stats_explorer(batch_size=50, n_batches=20, batch_sizes=(2, 8))
    assert ex.controls["batch_size"].value == 50
    ex = E.weight_decay_explorer(data, weight_decay=5e-4, **SMALL_OVERFIT)
    assert ex.params == {"weight_decay": 5e-4, "batch_norm": False}
    assert ex.controls["weight_decay"].label == "0.0005"


# ------------------------------------------------------------- the split into one-job modules (issue 13.2)
def test_explorers_keeps_every_public_name_and_has_no_private_copies():
    import inspect

    from course_lib import explorer_figures, quicktrain, regularization, subsets, synthetic, threads, widgets
    for name in E.__all__:
        assert hasattr(E, name), name
    assert E.init_histograms is explorer_figures.init_histograms and E.synthetic_splits is synthetic.synthetic_splits
    assert issubclass(E.Explorer, widgets.Explorer) and E._subset is subsets.subset
    # one EvalEvery (regularization's), no ctypes BLAS hack, no Hook subclass in the explorers any more
    src = "".join(inspect.getsource(m) for m in (E, explorer_figures, quicktrain, subsets, synthetic, threads, widgets))
    assert "ctypes" not in src and "class _EvalEvery" not in src and "/proc/self/maps" not in src
    assert quicktrain.EvalEvery is regularization.EvalEvery


def test_one_blas_thread_limits_and_restores_through_threadpoolctl():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from course_lib.threads import blas_thread_count, blas_threads, one_blas_thread
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = blas_thread_count()
        if before is None:
            pytest.skip("threadpoolctl sees no BLAS library here")
        with one_blas_thread():
            assert blas_thread_count() == 1
        assert blas_thread_count() == before
    with pytest.raises(ValueError, match="integer >= 1"):
        with blas_threads(0):
            pass


def test_quick_training_curves_use_regularization_eval_every(data):
    from course_lib.quicktrain import eval_curve, smooth, train_small
    _, h = train_small(data, depth=2, width=8, norm=None, steps=10, batch_size=32, lr=0.05, init="he", n_train=96,
                       n_eval=48, eval_every=4, per="step", train_curve=True)
    t, loss, acc = eval_curve(h, "eval")
    assert list(t) == [4, 8, 10] and list(eval_curve(h, "train")[0]) == [4, 8, 10]   # every 4 steps and the last
    assert np.all((acc >= 0) & (acc <= 1)) and np.all(np.isfinite(loss))
    _, h = train_small(data, depth=2, width=8, norm="batch", num_epochs=5, batch_size=32, lr=0.05, init="he",
                       n_train=96, n_eval=48, eval_every=2, per="epoch")
    assert list(eval_curve(h, "eval")[0]) == [1, 2, 4, 5]                            # first, every 2, last
    x, y = smooth([1.0, 2.0, 3.0, 4.0], 2)
    assert list(x) == [1, 2, 3] and list(y) == [1.5, 2.5, 3.5]


def test_subsets_refuse_an_unknown_split(data):
    from course_lib.subsets import subset
    with pytest.raises(ValueError, match="'train', 'val' or 'test'"):
        subset(data, "validation", 10)


# ------------------------------------------------- explorers that match their chapter (issue 15.5)
@pytest.fixture
def trained(monkeypatch):
    """Every (kwargs, model, history) that the explorers' figures train, in order."""
    from course_lib import explorer_figures
    runs, real = [], explorer_figures.train_small

    def spy(data, **kw):
        model, h = real(data, **kw)
        runs.append((kw, model, h))
        return model, h

    monkeypatch.setattr(explorer_figures, "train_small", spy)
    return runs


def _norm_layers(model):
    return [name for name, _ in model.layers if "norm" in name]


@pytest.mark.parametrize("name", ["weight_decay_explorer", "dropout_explorer"])
def test_bn_toggle_trains_a_network_with_bn(name, data, trained):
    ex = WIDGETS[name][0](data)
    assert ex.controls["batch_norm"].value is False                     # default: as before, no BN
    kw, model, _ = trained[-1]
    assert kw["norm"] is None and _norm_layers(model) == []
    title_off = ex.figure().get_suptitle()
    assert "BN" not in title_off
    ex.controls["batch_norm"].value = True
    kw, model, h = trained[-1]
    depth = SMALL_OVERFIT["depth"]
    assert kw["norm"] == "batch" and _norm_layers(model) == [f"batchnorm{i}" for i in range(depth)]
    assert not h.diverged
    fig = ex.figure()
    assert ", with BN:" in fig.get_suptitle()
    assert_labelled(fig)
    # weight decay reaches the weights of a BN network too; dropout stays in it
    if name == "weight_decay_explorer":
        assert kw["weight_decay"] == ex.controls["weight_decay"].value > 0
    else:
        assert [n for n, _ in model.layers if n.startswith("dropout")] == [f"dropout{i}" for i in range(depth)]


def test_bn_toggle_default_draws_the_old_figure(data):
    """batch_norm=False (the default) is the figure the functions drew before the switch existed."""
    for fn, v in ((E.weight_decay_curves, 0.1), (E.dropout_curves, 0.5)):
        a = plots.to_png(fn(data, v, **SMALL_OVERFIT), dpi=30)
        b = plots.to_png(fn(data, v, batch_norm=False, **SMALL_OVERFIT), dpi=30)
        c = plots.to_png(fn(data, v, batch_norm=True, **SMALL_OVERFIT), dpi=30)
        assert a == b and a != c


@pytest.mark.parametrize("choice, norm, layer", [("none", None, None), ("batch", "batch", "batchnorm"),
                                                 ("renorm", "renorm", "batchrenorm"), ("layer", "layer", "layernorm"),
                                                 ("group", "group", "groupnorm")])
def test_batch_size_norm_choice_trains_that_norm(choice, norm, layer, data, trained):
    ex = E.batch_size_explorer(data, depth=2, batch_sizes=(2, 8, 32), **SMALL_TRAIN)
    assert ex.controls["norm"].value == "batch"                          # default: BN vs no BN, as before
    assert [kw["norm"] for kw, _, _ in trained] == ["batch", None]
    trained.clear()
    ex.controls["norm"].value = "renorm" if choice == "batch" else choice
    if choice == "batch":
        trained.clear()
        ex.controls["norm"].value = "batch"
    assert ex.params["norm"] == norm and ex.last_error is None
    models = [m for _, m, _ in trained]
    if norm is None:                                                     # only the plain network
        assert len(models) == 1 and _norm_layers(models[0]) == []
    else:
        assert [m.norm for m in models] == [norm, None]
        assert _norm_layers(models[0]) == [f"{layer}{i}" for i in range(2)] and _norm_layers(models[1]) == []
    fig = ex.figure()
    short = E.NORM_CHOICES[norm][0]
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert (f"with {short}" in labels) == (norm is not None)
    assert_labelled(fig)


def test_batch_size_budget_equal_steps_and_equal_data():
    # equal steps (the default, as before): images seen grow with the batch
    assert E.batch_size_budget(2) == (100, 200) and E.batch_size_budget(512) == (100, 51_200)
    # equal data: 100 steps x 32 = 3,200 images; small batches take more steps, whole batches only
    assert E.batch_size_budget(2, "data") == (1600, 3200)
    assert E.batch_size_budget(512, "data") == (7, 3584)
    assert E.batch_size_budget(32, "data") == E.batch_size_budget(32, "steps") == (100, 3200)
    assert E.batch_size_budget(8, "data", steps=10, images=1000) == (125, 1000)
    with pytest.raises(ValueError, match="'steps'.*'data'"):
        E.batch_size_budget(8, "epochs")
    with pytest.raises(ValueError, match="images >= batch_size"):
        E.batch_size_budget(64, "data", images=10)


def test_equal_data_takes_more_steps_at_small_batch(data, trained):
    ex = E.batch_size_explorer(data, batch_size=4, depth=2, batch_sizes=(2, 8, 32), **SMALL_TRAIN)
    steps = SMALL_TRAIN["steps"]
    assert [len(h.step_loss) for _, _, h in trained] == [steps, steps]   # equal steps: 4 x 10 = 40 images
    fig = ex.figure()
    assert f"equal steps ({steps} updates each: {4 * steps} images seen)" in fig.get_suptitle()
    assert fig.axes[0].get_xlabel() == "training step"
    trained.clear()
    ex.controls["hold_fixed"].value = "data"                             # equal data: 10 x 32 = 320 images
    assert [len(h.step_loss) for _, _, h in trained] == [80, 80] and [kw["steps"] for kw, _, _ in trained] == [80, 80]
    fig = ex.figure()
    assert "equal data (320 images each: 80 updates of 4)" in fig.get_suptitle()
    assert fig.axes[0].get_xlabel() == "training images seen"
    assert fig.axes[0].lines[0].get_xdata()[-1] == 320                   # the curve ends at the images seen
    trained.clear()
    ex.controls["batch_size"].value = 32                                 # fewer steps at a larger batch
    assert [len(h.step_loss) for _, _, h in trained] == [10, 10]
    # the radio buttons say what is held fixed, with the numbers of this explorer
    labels = [label for label, _ in ex.controls["hold_fixed"].options]
    assert labels[0].startswith(f"equal steps: {steps} updates") and labels[1].startswith("equal data: 320 images")


def test_batch_size_explorer_default_draws_the_old_figure(data):
    """The defaults (BN vs none, equal steps) train exactly the runs the explorer trained before."""
    kw = dict(depth=2, batch_sizes=(2, 8, 32), **SMALL_TRAIN)
    ex = E.batch_size_explorer(data, batch_size=8, **kw)
    assert ex.params == {"batch_size": 8, "norm": "batch", "hold_fixed": "steps"}
    assert ex.png == plots.to_png(E.batch_size_effects(data, 8, **kw), dpi=30)
    fig = E.batch_size_effects(data, 8, **kw)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["with BN", "without BN", "chance"]


def test_new_controls_reject_bad_values(data):
    with pytest.raises(ValueError, match="norm must be one of"):
        E.batch_size_effects(data, 8, norm="instance", **SMALL_TRAIN)
    with pytest.raises(ValueError, match="norm must be one of"):
        E.batch_size_explorer(data, norm="instance", **SMALL_TRAIN)
    with pytest.raises(ValueError, match="hold_fixed"):
        E.batch_size_explorer(data, hold_fixed="epochs", **SMALL_TRAIN)
