"""course_lib.depth (Source A's 3-vs-15-layer experiment, the variance recursion, run verdicts,
summaries over seeds, the DLFS init-scale sweep) and the
``python -m tools.full_scale`` command line.  Array code runs on every backend (``xp``)."""
import json
import math

import numpy as np
import pytest

from course_lib import backend
from course_lib import depth as D
from course_lib.data import Splits
from course_lib.trainer import History


def toy_splits(n_train=256, n_val=64, n_test=128, d=20, c=10, seed=0):
    """Linearly separable-ish blobs: a net that learns anything gets far above chance."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((c, d)) * 2.0

    def draw(n):
        y = rng.integers(0, c, n)
        x = (centers[y] + rng.standard_normal((n, d))).astype(np.float32)
        return backend.asarray(x), backend.asarray(y.astype(np.int64))

    (xt, yt), (xv, yv), (xs, ys) = draw(n_train), draw(n_val), draw(n_test)
    return Splits(xt, yt, xv, yv, xs, ys, name="toy", class_names=tuple("0123456789"))


# ------------------------------------------------------------------ variance recursion
def test_predicted_std_follows_the_recursion():
    got = D.predicted_preactivation_std(0.1, [784, 100, 100], [0.05, 0.1, 0.1])
    v1 = 784 * 0.05 ** 2 * 0.1
    v2 = 100 * 0.1 ** 2 * v1 / 2
    v3 = 100 * 0.1 ** 2 * v2 / 2
    np.testing.assert_allclose(got, np.sqrt([v1, v2, v3]), rtol=1e-12)
    assert got.dtype == np.float64 and got.shape == (3,)


def test_lecun_halves_the_variance_per_relu_layer_and_he_keeps_it():
    n = [100] * 6
    lecun = D.predicted_preactivation_std(1.0, n, 1 / math.sqrt(100))
    he = D.predicted_preactivation_std(1.0, n, math.sqrt(2 / 100))
    np.testing.assert_allclose(lecun[1:] / lecun[:-1], 1 / math.sqrt(2), rtol=1e-12)
    np.testing.assert_allclose(he, he[0], rtol=1e-12)                          # He: constant
    ident = D.predicted_preactivation_std(1.0, n, 0.1, activation="identity")
    np.testing.assert_allclose(ident, 1.0, rtol=1e-12)
    leaky = D.predicted_preactivation_std(1.0, n, 0.1, activation="leaky_relu", leaky_slope=1.0)
    np.testing.assert_allclose(leaky, 1.0, rtol=1e-12)                       # slope 1 = identity


def test_predicted_std_rejects_bad_input():
    with pytest.raises(ValueError, match="activation"):
        D.predicted_preactivation_std(1.0, [10], 0.1, activation="sigmoid")
    with pytest.raises(ValueError):
        D.predicted_preactivation_std(-1.0, [10], 0.1)
    with pytest.raises(ValueError):
        D.predicted_preactivation_std(1.0, [0], 0.1)


def test_prediction_matches_a_measured_forward_pass(xp):
    from course_lib.model import MLP
    width, depth = 400, 8
    model = MLP([width] * (depth + 1), activation="relu", init="lecun", seed=0)
    x = backend.asarray(np.random.default_rng(1).standard_normal((2000, width)).astype(np.float32))
    model.forward(x)
    measured = [float(model.activations[f"linear{i}"].std()) for i in range(depth)]
    predicted = D.predicted_preactivation_std(1.0, [width] * depth, 1 / math.sqrt(width))
    # One draw of the weights: each layer's factor is right to a few percent, and these compound.
    measured = np.array(measured)
    np.testing.assert_allclose(measured[1:] / measured[:-1], predicted[1:] / predicted[:-1], rtol=0.1)
    np.testing.assert_allclose(measured, predicted, rtol=0.3)


# ------------------------------------------------------------------------ verdicts
def test_run_verdict():
    assert D.run_verdict(True, 0.1, 0.99) == "diverged"
    assert D.run_verdict(False, float("nan"), 0.1) == "diverged"
    assert D.run_verdict(False, math.log(10) + 0.01, 0.1135) == "chance"
    assert D.run_verdict(False, math.log(10) + 0.2, 0.1) == "above chance"      # loss moved: not chance
    assert D.run_verdict(False, 2.30, 0.4) == "above chance"
    assert D.run_verdict(False, 0.3, 0.9) == "above chance"
    assert D.run_verdict(False, math.log(2), 0.5, num_classes=2) == "chance"
    assert set(D.VERDICTS) == {"diverged", "chance", "above chance"}


def test_mlp_sizes():
    assert D.mlp_sizes(3, 100) == [784, 100, 100, 10]
    assert len(D.mlp_sizes(15, 7)) == 16
    assert D.mlp_sizes(1, 5, n_in=3, n_out=2) == [3, 2]
    with pytest.raises(ValueError):
        D.mlp_sizes(0, 10)


# ---------------------------------------------------------------------- experiment
def test_depth_experiment_runs_every_combination(xp):
    splits = toy_splits()
    lines = []
    runs = D.depth_experiment(splits, depths=(2, 4), width=16, num_epochs=3, init="he", lr=0.05,
                              batch_size=32, keep_models=True, log=lines.append)
    assert [(r.depth, r.norm) for r in runs] == [(2, None), (2, "batch"), (4, None), (4, "batch")]
    assert len(lines) == 4
    for r in runs:
        assert isinstance(r.test_acc, float) and isinstance(r.test_loss, float)
        assert r.history.epochs == 3 and len(r.history.val_acc) == 3
        assert r.verdict == "above chance" and r.test_acc > 0.5
        assert r.test_error == pytest.approx(100 * (1 - r.test_acc))
        assert r.model is not None and r.model.sizes == D.mlp_sizes(r.depth, 16, 20)
    assert runs[1].model.norm == "batch" and runs[0].model.norm is None
    table = D.results_table(runs)
    assert table.count("\n") == 5 and "| 4 layers, BN |" in table and "—" in table   # no seed row for depth 4
    doc = json.loads(D.results_json(runs, dataset="toy"))
    assert doc["setting"] == {"dataset": "toy"} and len(doc["runs"]) == 4
    assert doc["runs"][0]["verdict"] == "above chance"


def test_depth_experiment_reports_divergence_and_same_seed_same_result(xp):
    splits = toy_splits()
    runs = D.depth_experiment(splits, depths=(4,), norms=(None,), width=16, num_epochs=2, init=3.0, lr=10.0,
                              batch_size=32)
    (r,) = runs
    assert r.history.diverged and r.verdict == "diverged" and math.isnan(r.test_acc)
    assert "diverged (NaN)" in D.results_table(runs, reference=None)
    assert r.as_dict()["test_acc"] is None
    a = D.depth_experiment(splits, depths=(3,), norms=("batch",), width=8, num_epochs=1, n_train=64)
    b = D.depth_experiment(splits, depths=(3,), norms=("batch",), width=8, num_epochs=1, n_train=64)
    assert a[0].history.step_loss == b[0].history.step_loss and len(a[0].history.step_loss) == 1  # 64 / 128


def test_source_a_reference_numbers():
    assert D.SOURCE_A_TEST_ERRORS[(15, None)] == 88.65 and D.SOURCE_A_TEST_ERRORS[(15, "batch")] == 1.58
    assert D.SOURCE_A_SETTING["width"] == 1000 and D.SOURCE_A_SETTING["n_train"] == 50_000
    assert D.SEED_TEST_ERRORS is D.SOURCE_A_TEST_ERRORS and D.SEED_SETTING is D.SOURCE_A_SETTING  # old names
    assert "takataka" in D.SOURCE_A and "takataka" in D.SOURCE_A_COLUMN


def test_results_table_names_the_source_not_a_seed():
    h = History(train_loss=[2.3], train_acc=[0.1], val_acc=[0.1])
    runs = [D.DepthRun(15, None, "lecun", 100, h, math.log(10), 0.1135, 1.0)]
    table = D.results_table(runs)
    assert "Source A, takataka 2015" in table and "| 88.65 % |" in table and "seed" not in table
    assert "| my ref |" in D.results_table(runs, seed="my ref").splitlines()[0] + "|"   # the old keyword
    doc = json.loads(D.results_json(runs))
    assert "takataka" in doc["source"] and len(doc["source_test_errors"]) == 4


def test_glorot_uniform_bounds_and_variance():
    W = D.glorot_uniform(300, 100, np.random.default_rng(0))
    a = math.sqrt(6 / 400)
    assert W.shape == (300, 100) and np.abs(W).max() <= a
    assert W.std() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    assert set(D.INIT_CANDIDATES.values()) >= {"lecun", "xavier", "he", D.glorot_uniform}


def test_summarize_seeds_and_table():
    def run(depth, norm, acc, diverged=False, loss=0.5):
        h = History(train_loss=[loss], train_acc=[acc], val_acc=[acc])
        h.diverged = diverged
        return D.DepthRun(depth, norm, "lecun", 100, h, float("nan") if diverged else loss,
                          float("nan") if diverged else acc, 1.0)
    by_seed = {0: [run(15, None, 0.1, loss=math.log(10)), run(15, "batch", 0.9)],
               1: [run(15, None, 0.3), run(15, "batch", 0.92)],
               2: [run(15, None, 0, diverged=True), run(15, "batch", 0.94)]}
    s = D.summarize_seeds(by_seed)
    plain, bn = s[15, None], s[15, "batch"]
    assert plain["n"] == 3 and plain["chance"] == 1 and plain["diverged"] == 1 and plain["learns"] == 0
    assert plain["mean"] == pytest.approx(0.2) and plain["min"] == pytest.approx(0.1)
    assert bn["learns"] == 3 and bn["mean"] == pytest.approx(0.92) and bn["sd"] == pytest.approx(0.02)
    table = D.seeds_table(s)
    assert "| 15 layers, BN | 1.58 % | 8.0 ± 2.0 % (6.0–10.0) | 0 of 3 | 0 of 3 | 3 of 3 |" in table
    assert "| 1 of 3 | 1 of 3 | 0 of 3 |" in table


def test_bias_only_answer_is_what_a_net_without_input_learns():
    from course_lib.model import MLP
    from course_lib.optim import Momentum
    from course_lib.trainer import fit
    rng = np.random.default_rng(3)
    y = rng.integers(0, 10, 500)
    answer, b = D.bias_only_answer(y, num_epochs=3, batch_size=64, seed=5)
    # a net whose input is all zeros: its logits are its output bias, trained on the same batches
    net = MLP([4, 8, 10], init="he", seed=0)
    fit(net, (np.zeros((500, 4), np.float32), y), optimizer=Momentum(lr=0.1, momentum=0.9), num_epochs=3,
        batch_size=64, seed=5, progress=False)
    b_net = backend.to_numpy(net.params["linear1.b"]).astype(np.float64)
    np.testing.assert_allclose(b_net, b, atol=1e-5)
    assert answer == int(b_net.argmax())
    # full-batch training converges to log(class frequencies): the most frequent class
    y2 = np.repeat(np.arange(10), [50, 50, 50, 80, 50, 50, 50, 50, 50, 50])
    assert D.bias_only_answer(y2, num_epochs=400, batch_size=len(y2), lr=0.5, momentum=0.0)[0] == 3


def test_dlfs_init_scale_sweep_shape_and_divergence():
    splits = toy_splits()
    out = D.dlfs_init_scale_sweep(splits.x_train, splits.y_train, seeds=(0, 1), scales=(1e4, 0.3),
                                  hidden=(16, 16), lr=0.5, batch_size=32, num_epochs=3)
    assert set(out) == {"batch", None} and out["batch"].shape == (2, 2)
    assert np.isnan(out[None][:, 0]).all()                       # std 1e4 without BN: NaN, reported
    assert np.isfinite(out["batch"]).all() and (out["batch"][:, 1] > 0.5).all()
    assert len(D.DLFS_BN_SETTING["scales"]) == 16 and D.DLFS_BN_SETTING["scales"][0] == 1.0


def test_depth_run_as_dict_is_json_friendly():
    h = History(train_loss=[2.3], train_acc=[0.1], val_acc=[0.1])
    r = D.DepthRun(15, None, "lecun", 100, h, math.log(10), 0.1135, 1.0)
    d = r.as_dict()
    json.dumps(d)
    assert d["verdict"] == "chance" and d["test_error_percent"] == pytest.approx(88.65)


# -------------------------------------------------------------------- command line
def test_full_scale_cli_small_run(tmp_path, capsys):
    from course_lib.data import locate
    from tools import full_scale
    if any(p is None for p in locate("fashion-mnist").values()):
        pytest.skip("Fashion-MNIST is not installed (Debian package dataset-fashion-mnist)")
    out = tmp_path / "r.json"
    rc = full_scale.main(["--dataset", "fashion-mnist", "--epochs", "1", "--width", "8", "--train-size", "300",
                          "--val-size", "100", "--depths", "2", "--out", str(out), "--quiet"])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["setting"]["train_size"] == 300 and doc["setting"]["width"] == 8
    assert [r["norm"] for r in doc["runs"]] == [None, "batch"]
    printed = capsys.readouterr().out
    assert "| 2 layers, no BN |" in printed and "fashion-mnist: 300 images" in printed
    md = tmp_path / "r.md"
    assert full_scale.main(["--dataset", "fashion-mnist", "--epochs", "1", "--width", "8", "--train-size", "300",
                            "--val-size", "100", "--depths", "2", "--out", str(md), "--quiet"]) == 0
    assert md.read_text().startswith("`python -m tools.full_scale")


def test_full_scale_cli_errors(tmp_path, monkeypatch, capsys):
    from tools import full_scale
    monkeypatch.setenv("COURSE_LIB_DATA_DIR", str(tmp_path))
    assert full_scale.main(["--dataset", "mnist"]) == 1            # full MNIST not fetched into tmp_path
    assert "python -m course_lib.data fetch mnist" in capsys.readouterr().err
    assert full_scale.main(["--epochs", "0"]) == 2
    with pytest.raises(SystemExit):
        full_scale.main(["--dataset", "cifar"])
