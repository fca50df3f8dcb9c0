"""course_lib.depth (the 3-vs-15-layer experiment, the variance recursion, run verdicts) and the
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


def test_seed_reference_numbers():
    assert D.SEED_TEST_ERRORS[(15, None)] == 88.65 and D.SEED_TEST_ERRORS[(15, "batch")] == 1.58
    assert D.SEED_SETTING["width"] == 1000 and D.SEED_SETTING["n_train"] == 50_000


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
