"""The loss-landscape probe along the gradient direction."""
import numpy as np
from _helpers import blobs

from course_lib import backend, landscape
from course_lib.functional import softmax_cross_entropy
from course_lib.model import MLP
from course_lib.trainer import fit


def test_probe_matches_a_manual_step_and_leaves_the_model_alone(xp):
    x, y = blobs(xp, 120, dtype=np.float64)
    model = MLP([10, 8, 3], norm="batch", seed=0, dtype=np.float64)
    bn = model.layer("batchnorm0")
    params = {k: backend.to_numpy(v).copy() for k, v in model.params.items()}
    rm, count = bn.buffers["running_mean"], bn.num_batches_tracked
    r = landscape.probe_along_gradient(model, x, y, [0.1, 0.5])
    for k, v in model.params.items():
        np.testing.assert_array_equal(backend.to_numpy(v), params[k])
    assert bn.buffers["running_mean"] is rm and bn.num_batches_tracked == count
    # redo the second point by hand
    _, dlogits, _ = model.loss(x, y)
    model.backward(dlogits)
    grads = {k: g.copy() for k, g in model.grads.items()}
    gnorm = np.sqrt(sum(float((backend.to_numpy(g) ** 2).sum()) for g in grads.values()))
    model.set_params({k: p - 0.5 * grads[k] for k, p in model.params.items()})
    loss, _ = softmax_cross_entropy(model.forward(x), y)
    assert abs(r["loss"][1] - float(loss)) < 1e-10 and abs(r["grad_norm"] - gnorm) < 1e-10
    np.testing.assert_allclose(r["beta"] * r["step_sizes"] * r["grad_norm"], r["grad_change"])
    assert r["loss"][0] < r["loss0"]  # a small step down the gradient lowers the loss


def test_smoothness_probe_hook_records(xp):
    x, y = blobs(xp, 120, dtype=np.float64)
    x = x.astype(np.float32)
    model = MLP([10, 8, 3], seed=0)
    h = fit(model, (x, y), num_epochs=2, batch_size=20, progress=False,
            hooks=[landscape.SmoothnessProbe(x[:40], y[:40], [0.05, 0.1, 0.2], every=4)])
    records = h.extras["smoothness"]
    assert [r["step"] for r in records] == [0, 4, 8]
    assert all(r["loss_range"] >= 0 and r["max_beta"] > 0 for r in records)
