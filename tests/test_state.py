"""State: state_dict / load_state_dict on every layer and the model, save / load to .npz
(no pickle, validated, copies not references), bit-identical eval outputs after a round
trip, moving models between devices, eval_mode, and the memory an eval pass keeps."""
import numpy as np
import pytest
from _helpers import blobs
from _helpers import randn as _randn

from course_lib import backend
from course_lib import layers as L
from course_lib.model import MLP, eval_mode
from course_lib.trainer import evaluate, fit


def randn(*shape, **kw):
    """float32 (the default dtype of layers) seeded normals on the active backend."""
    return _randn(*shape, dtype=np.float32, **kw)

LAYERS = {
    "linear": lambda: L.Linear(6, 6, seed=1),
    "linear_nobias": lambda: L.Linear(6, 6, bias=False, seed=1),
    "relu": L.ReLU,
    "leaky_relu": lambda: L.LeakyReLU(0.2),
    "sigmoid": L.Sigmoid,
    "tanh": L.Tanh,
    "batchnorm": lambda: L.BatchNorm1d(6),
    "batchrenorm": lambda: L.BatchRenorm1d(6, schedule=lambda step: (2.0, 1.0)),
    "layernorm": lambda: L.LayerNorm(6),
    "groupnorm": lambda: L.GroupNorm(6, 3),
    "dropout": lambda: L.Dropout(0.3, seed=2),
    "sequential": lambda: L.Sequential([("lin", L.Linear(6, 6, seed=4)), ("bn", L.BatchNorm1d(6)),
                                        ("act", L.ReLU())]),
}


def _trained(layer, steps=3):
    """The layer after a few training passes and parameter changes (non-trivial state)."""
    for i in range(steps):
        layer.train()
        out = layer.forward(randn(8, 6, seed=10 + i, shift=0.5))
        layer.backward(randn(*out.shape, seed=20 + i))
        for k, p in layer.params.items():
            p -= 0.1 * layer.grads[k]
    return layer


@pytest.mark.parametrize("name", LAYERS)
def test_every_layer_round_trips_its_state(xp, name):
    src = _trained(LAYERS[name]())
    state = src.state_dict()
    assert set(state) == set(src._state_keys())
    dst = LAYERS[name]()
    dst.load_state_dict(state)
    x = randn(5, 6, seed=99)
    with eval_mode(src), eval_mode(dst):
        a, b = src.forward(x), dst.forward(x)
    assert np.array_equal(backend.to_numpy(a), backend.to_numpy(b))
    for k, v in dst.state_dict().items():
        assert np.array_equal(backend.to_numpy(v), backend.to_numpy(state[k])), k


def test_state_includes_bn_running_statistics_and_counter(xp):
    bn = _trained(L.BatchNorm1d(6), steps=4)
    state = bn.state_dict()
    assert sorted(state) == ["beta", "gamma", "num_batches_tracked", "running_mean", "running_var"]
    assert int(state["num_batches_tracked"]) == 4
    fresh = L.BatchNorm1d(6).load_state_dict(state)
    assert fresh.num_batches_tracked == 4
    assert np.array_equal(backend.to_numpy(fresh.buffers["running_var"]),
                          backend.to_numpy(bn.buffers["running_var"]))


def test_state_dict_is_a_copy_and_load_copies_in(xp):
    bn = _trained(L.BatchNorm1d(6))
    state = bn.state_dict()
    assert state["running_mean"] is not bn.buffers["running_mean"]
    state["gamma"] += 1.0                   # changing the state leaves the layer alone
    assert not np.array_equal(backend.to_numpy(state["gamma"]), backend.to_numpy(bn.params["gamma"]))
    other = L.BatchNorm1d(6).load_state_dict(state)
    state["gamma"] += 1.0                   # ... and the loaded layer keeps its own copy
    assert not np.array_equal(backend.to_numpy(state["gamma"]), backend.to_numpy(other.params["gamma"]))


def _trained_mlp(xp, **kw):
    x, y = blobs(xp)
    model = MLP([10, 16, 16, 3], norm="batch", dropout=0.1, seed=3, **kw)
    fit(model, (x, y), num_epochs=2, batch_size=32, progress=False)
    return model, x, y


def test_save_load_round_trip_gives_bit_identical_eval_outputs(xp, tmp_path):
    model, x, y = _trained_mlp(xp)
    path = model.save(tmp_path / "net")
    assert path.endswith(".npz")
    with np.load(path, allow_pickle=False) as f:        # plain arrays: no pickle needed
        assert "linear0.W" in f.files and "batchnorm0.running_var" in f.files
    fresh = MLP([10, 16, 16, 3], norm="batch", dropout=0.1, seed=99).load(path)
    with eval_mode(model), eval_mode(fresh):
        assert np.array_equal(backend.to_numpy(model.forward(x)), backend.to_numpy(fresh.forward(x)))
    assert evaluate(model, x, y) == evaluate(fresh, x, y)
    assert fresh.layer("batchnorm1").num_batches_tracked == model.layer("batchnorm1").num_batches_tracked


def test_set_params_alone_does_not_restore_bn_but_load_state_dict_does(xp):
    model, x, y = _trained_mlp(xp)
    only_params = MLP([10, 16, 16, 3], norm="batch", dropout=0.1, seed=99)
    only_params.set_params(model.params)
    full = MLP([10, 16, 16, 3], norm="batch", dropout=0.1, seed=99)
    full.load_state_dict(model.state_dict())
    assert evaluate(full, x, y) == evaluate(model, x, y)
    assert evaluate(only_params, x, y) != evaluate(model, x, y)   # running stats still 0 / 1


def test_set_params_copies_and_validates(xp):
    model = MLP([4, 3, 2], seed=0)
    W = backend.xp.zeros((4, 3), dtype=backend.default_dtype)
    model.set_params({"linear0.W": W})
    W += 5.0
    assert float(backend.to_numpy(model.params["linear0.W"]).max()) == 0.0   # a copy, not a reference
    with pytest.raises(ValueError, match="dtype float64.*astype"):
        model.set_params({"linear0.W": np.zeros((4, 3))})
    with pytest.raises(ValueError, match=r"shape \(3, 4\).*expects \(4, 3\)"):
        model.set_params({"linear0.W": np.zeros((3, 4), np.float32)})
    with pytest.raises(ValueError, match="no layer 'linear9'"):
        model.set_params({"linear9.W": np.zeros((4, 3), np.float32)})


def test_load_refuses_a_different_architecture(tmp_path):
    backend.use("cpu")
    path = MLP([10, 16, 3], norm="batch", seed=0).save(tmp_path / "a.npz")
    with pytest.raises(ValueError, match="holds a model with layers.*build the model with the same"):
        MLP([10, 16, 3], seed=0).load(path)
    with pytest.raises(ValueError, match=r"shape \(10, 16\).*expects \(10, 8\)"):
        MLP([10, 8, 3], norm="batch", seed=0).load_state_dict(dict(np.load(path)))


def test_load_refuses_a_wrong_dtype_without_changing_anything(tmp_path):
    backend.use("cpu")
    path = MLP([10, 16, 3], norm="batch", seed=0).save(tmp_path / "a.npz")
    model = MLP([10, 16, 3], norm="batch", seed=1, dtype=np.float64)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="dtype float32.*model has float64"):
        model.load(path)
    for k, v in model.state_dict().items():
        assert np.array_equal(v, before[k])


@pytest.mark.parametrize("content, match", [
    (b"", "not a course_lib model file"),
    (b"this is text, not a zip archive", "not a course_lib model file"),
    ("npy", "single array"),
    ("foreign_npz", "no __format__"),
    ("truncated", "not a course_lib model file|damaged"),
], ids=["empty", "text", "npy", "foreign-npz", "truncated"])
def test_load_refuses_bad_files_with_advice(tmp_path, content, match):
    backend.use("cpu")
    model = MLP([10, 16, 3], seed=0)
    path = tmp_path / "bad.npz"
    if content == "npy":
        np.save(tmp_path / "arr.npy", np.zeros(3))
        path = tmp_path / "arr.npy"
    elif content == "foreign_npz":
        np.savez(path, a=np.zeros(3))
    elif content == "truncated":
        good = model.save(tmp_path / "good.npz")
        path.write_bytes(open(good, "rb").read()[:200])
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        model.load(path)
    assert "model.save" in str(info.value)


def test_load_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model.save"):
        MLP([3, 2]).load(tmp_path / "nothing.npz")


def test_save_leaves_no_partial_file(tmp_path):
    backend.use("cpu")
    MLP([3, 2], seed=0).save(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_model_moves_between_cpu_and_standin():
    backend.use("cpu")
    x, y = blobs(np)
    model = MLP([10, 16, 3], norm="batch", dropout=0.2, seed=0)
    fit(model, (x, y), num_epochs=1, batch_size=32, progress=False)
    with eval_mode(model):
        ref = model.forward(x)
    model.to("standin")          # the active backend stays "cpu": the model carries its device
    assert model.device == "standin" and backend.device == "cpu"
    xs, ys = backend.move(x, "standin"), backend.move(y, "standin")
    with eval_mode(model):
        out = model.forward(xs)
    assert type(out).__name__ == "DeviceArray" and np.array_equal(backend.to_numpy(out), ref)
    h = fit(model, (xs, ys), num_epochs=1, batch_size=32, progress=False)   # dropout masks on the device
    assert not h.diverged
    with pytest.raises(TypeError, match=r"lives on 'standin'.*model.to\('cpu'\)"):
        model.forward(x)
    model.to("cpu")
    assert model.device == "cpu" and isinstance(model.params["linear0.W"], np.ndarray)
    model.forward(x)


def test_to_an_unknown_device_says_which_exist():
    with pytest.raises(ValueError, match="choose one of"):
        MLP([3, 2]).to("tpu")


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is visible here")
def test_to_gpu_without_gpu_says_what_to_do():
    model = MLP([3, 2], seed=0)
    with pytest.raises(RuntimeError, match="use the CPU"):
        model.to("gpu")
    assert model.device == "cpu"            # nothing moved


def test_eval_mode_restores_every_layers_previous_mode(xp):
    model = MLP([4, 8, 8, 2], norm="batch", dropout=0.5, seed=0)
    model.layer("dropout0").eval()          # a mixed state, as predict_with_batch_stats makes
    before = [(n, m.training) for n, m in model.named_modules()]
    with eval_mode(model) as m:
        assert m is model and not model.training
        assert not any(layer.training for _, layer in model.named_modules())
    assert [(n, m.training) for n, m in model.named_modules()] == before and model.training
    with pytest.raises(RuntimeError):
        with eval_mode(model):
            raise RuntimeError("boom")
    assert [(n, m.training) for n, m in model.named_modules()] == before


def test_eval_mode_keep_activations_is_restored(xp):
    model = MLP([4, 3, 2], seed=0)
    with eval_mode(model, keep_activations=False):
        assert model.keep_activations is False
    assert model.keep_activations is True


def test_eval_pass_without_activations_keeps_no_layer_caches(xp):
    model = MLP([10, 32, 32, 3], norm="batch", dropout=0.2, seed=0)
    x = randn(64, 10, seed=1)
    model.forward(x)                          # training pass: caches for backward
    assert all(layer._cache is not None for _, layer in model.layers if not isinstance(layer, L.Dropout))
    with eval_mode(model, keep_activations=False):
        model.forward(x)
        assert all(layer._cache is None for _, layer in model.layers)
        with pytest.raises(RuntimeError, match="keep_activations=True"):
            model.backward(randn(64, 3, seed=2))
    evaluate(model, x, backend.xp.zeros(64, dtype="int64"))
    assert all(layer._cache is None for _, layer in model.layers)


def test_sequential_is_a_layer_with_dotted_keys(xp):
    inner = L.Sequential([L.Linear(4, 4, seed=0), L.BatchNorm1d(4)])
    seq = L.Sequential([("block", inner), ("act", L.ReLU()), ("head", L.Linear(4, 2, seed=1))])
    assert isinstance(seq, L.Layer) and L.has_batch_stats(seq) and not L.is_norm(seq)
    assert sorted(seq.params) == ["block.0.W", "block.0.b", "block.1.beta", "block.1.gamma",
                                  "head.W", "head.b"]
    assert sorted(seq.buffers) == ["block.1.running_mean", "block.1.running_var"]
    assert "block.1.num_batches_tracked" in seq.state_dict()
    assert seq.layer("block.1") is inner.layer("1") and seq.layer_names == ["block", "act", "head"]
    x = randn(6, 4, seed=3)
    loss, dlogits, logits = seq.loss(x, backend.xp.asarray(np.array([0, 1, 0, 1, 1, 0])))
    seq.backward(dlogits)
    assert sorted(seq.grads) == sorted(seq.params)
    seq.eval()
    assert not inner.layer("1").training
    with pytest.raises(ValueError, match="already a layer"):
        seq.add("act", L.ReLU())
    with pytest.raises(ValueError, match="without dots"):
        seq.add("a.b", L.ReLU())


def test_role_predicates_are_the_one_place(xp):
    assert [L.is_norm(c(6)) for c in (L.BatchNorm1d, L.BatchRenorm1d, L.LayerNorm)] == [True] * 3
    assert L.is_norm(L.GroupNorm(6, 3)) and not L.is_norm(L.Linear(6, 6)) and not L.is_norm(object())
    assert [L.has_batch_stats(c(6)) for c in (L.BatchNorm1d, L.BatchRenorm1d, L.LayerNorm)] == \
        [True, True, False]
    assert not L.has_batch_stats(L.Dropout(0.1)) and L.has_batch_stats(MLP([4, 4, 2], norm="batch"))
    assert not L.has_batch_stats(MLP([4, 4, 2], norm="layer"))


def test_mlp_is_a_sequential_and_keeps_its_old_api(xp):
    model = MLP([4, 8, 2], norm="batch", seed=0)
    assert isinstance(model, L.Sequential) and model.sizes == [4, 8, 2]
    assert model.layer_names == ["linear0", "batchnorm0", "relu0", "linear1"]
    assert model.num_parameters() == 4 * 8 + 8 + 8 + 8 * 2 + 2
    model.layers.insert(1, ("extra", L.Tanh()))      # editing the list in place still works
    assert "extra" in model.layer_names
    assert repr(model).startswith("MLP(")


def test_evaluate_on_large_data_keeps_no_memory_behind():
    """Issue 13's memory case, scaled down: after an eval pass with keep_activations off, the
    layers hold no (N, width) caches; with them it would be several MB here."""
    import tracemalloc
    backend.use("cpu")
    model = MLP([64, 512, 512, 10], norm="batch", seed=0)
    x = np.random.default_rng(0).standard_normal((4000, 64)).astype(np.float32)
    y = np.zeros(4000, dtype=np.int64)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        evaluate(model, x, y, batch_size=4000)
        kept = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    caches = 4000 * 512 * 4 * 4          # what Linear/BN/ReLU caches of one batch would hold
    assert kept < caches / 20, f"{kept / 1e6:.1f} MB kept after evaluate"
