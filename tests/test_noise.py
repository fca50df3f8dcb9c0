"""The noisy-BN layer (injected covariate shift) and the distribution-shift monitor."""
import numpy as np
import pytest
from _helpers import blobs

from course_lib import backend, noise
from course_lib import gradcheck as G
from course_lib.model import MLP
from course_lib.trainer import fit


def test_noise_layer_gradient(xp):
    layer = noise.CovariateShiftNoise(5, scale=3.0, shift=2.0, seed=4)
    x = backend.asarray(np.random.default_rng(1).standard_normal((6, 5)), dtype=np.float64)
    errors = G.check_layer(layer, x, quiet=True)
    assert errors["x"] < 1e-7


def test_noise_is_a_random_affine_map_redrawn_every_step(xp):
    layer = noise.CovariateShiftNoise(50, scale=2.0, shift=0.5, seed=0)
    x = backend.asarray(np.random.default_rng(1).standard_normal((8, 50)), dtype=np.float32)
    out1 = backend.to_numpy(layer(x))
    a1, b1 = backend.to_numpy(layer.last_scale), backend.to_numpy(layer.last_shift)
    np.testing.assert_allclose(out1, backend.to_numpy(x) * a1 + b1, rtol=1e-6)
    assert a1.min() >= 0.5 - 1e-6 and a1.max() <= 2.0 + 1e-6 and np.abs(b1).max() <= 0.5
    assert a1.min() < 0.8 and a1.max() > 1.25  # the range is actually used
    layer(x)
    assert not np.allclose(backend.to_numpy(layer.last_scale), a1)  # a new draw every step
    again = noise.CovariateShiftNoise(50, scale=2.0, shift=0.5, seed=0)
    np.testing.assert_array_equal(backend.to_numpy(again(x)), out1)  # seeded
    layer.eval()
    np.testing.assert_array_equal(backend.to_numpy(layer(x)), backend.to_numpy(x))  # eval: identity
    np.testing.assert_array_equal(backend.to_numpy(layer.backward(x)), backend.to_numpy(x))
    with pytest.raises(ValueError):
        noise.CovariateShiftNoise(3, scale=0.5)


def test_add_noise_after_norm_and_train(xp):
    x, y = blobs(xp, 240)
    model = noise.add_noise_after_norm(MLP([10, 16, 16, 3], norm="batch", seed=0), scale=1.5, shift=0.5)
    assert model.layer_names == ["linear0", "batchnorm0", "noise0", "relu0", "linear1", "batchnorm1",
                                 "noise1", "relu1", "linear2"]
    h = fit(model, (x, y), val=(x, y), num_epochs=3, batch_size=32, progress=False,
            hooks=[noise.DistributionShift("relu0")])
    assert h.val_acc[-1] > 0.9
    records = h.extras["distribution_shift"]
    assert len(records) == len(h.step_loss) and records[0]["mean"].shape == (16,)
    shifts = noise.shift_per_step(records)
    assert shifts.shape == (len(records) - 1,) and (shifts > 0).all()
    with pytest.raises(ValueError, match="no normalization"):
        noise.add_noise_after_norm(MLP([10, 4, 3]))


def test_noise_makes_the_distribution_move_more(xp):
    x, y = blobs(xp, 240)
    shifts = {}
    for kind in ("batch", "noisy"):
        model = MLP([10, 16, 3], norm="batch", seed=0)
        if kind == "noisy":
            noise.add_noise_after_norm(model, scale=2.0, shift=1.0)
        h = fit(model, (x, y), num_epochs=1, batch_size=32, progress=False,
                hooks=[noise.DistributionShift("relu0")])
        shifts[kind] = noise.shift_per_step(h.extras["distribution_shift"]).mean()
    assert shifts["noisy"] > 3 * shifts["batch"]


def test_shift_per_step_formula():
    records = [{"mean": np.array([0.0, 1.0]), "std": np.array([1.0, 1.0])},
               {"mean": np.array([1.0, 1.0]), "std": np.array([1.0, 3.0])}]
    np.testing.assert_allclose(noise.shift_per_step(records), [1.5])
