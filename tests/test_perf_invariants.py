"""Properties the core's speed depends on, checked without timing anything.

The benchmark (benchmarks/bench_core.py) measures speed; these tests make sure
the cheap-to-break conditions behind it stay true on every backend: float32 in
gives float32 everywhere (no silent float64 upcast doubling the memory traffic),
the in-place tricks never touch the caller's arrays, optimizer state is made
once and updated in place, and the first layer skips its input gradient.  The
benchmark's numpy-floor peer is checked to compute what course_lib computes.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from course_lib import backend, optim
from course_lib import functional as F
from course_lib import layers as L
from course_lib.model import MLP
from course_lib.trainer import fit


def rand32(*shape, seed=0, shift=0.0):
    return backend.asarray(np.random.default_rng(seed).standard_normal(shape) + shift, dtype=np.float32)


def host(a):
    return backend.to_numpy(a).copy()


@pytest.mark.parametrize("norm", [None, "batch"])
def test_float32_training_step_stays_float32(xp, norm):
    model = MLP([6, 8, 8, 3], norm=norm, seed=0)
    x = rand32(16, 6)
    y = backend.asarray(np.arange(16) % 3)
    opt = optim.Momentum(lr=0.1, momentum=0.9)
    loss, dlogits, logits = model.loss(x, y)
    dx = model.backward(dlogits)
    opt.update(model.params, model.grads)
    assert dx is None  # the first layer's input is data: no gradient computed for it
    assert loss.dtype == np.float32 and dlogits.dtype == np.float32 and logits.dtype == np.float32
    arrays = {**{f"param {k}": v for k, v in model.params.items()},
              **{f"grad {k}": v for k, v in model.grads.items()},
              **{f"activation {k}": v for k, v in model.activations.items()},
              **{f"state {k}": v for k, v in opt.state.items()}}
    for _, layer in model.layers:
        arrays.update({f"buffer {type(layer).__name__}.{k}": v for k, v in layer.buffers.items()})
    wrong = {k: str(v.dtype) for k, v in arrays.items() if v.dtype != np.float32}
    assert not wrong, f"float64 crept in: {wrong}"


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_pair_never_mutates_its_inputs(xp, training):
    x, dout = rand32(10, 5, shift=0.7), rand32(10, 5, seed=1)
    gamma, beta = rand32(5, seed=2, shift=1.5), rand32(5, seed=3)
    rm, rv = rand32(5, seed=4), backend.asarray(np.full(5, 2.0), dtype=np.float32)
    before = [host(a) for a in (x, dout, gamma, beta, rm, rv)]
    out, cache, new_rm, new_rv = F.batchnorm_forward(x, gamma, beta, rm, rv, training=training)
    dx, dgamma, dbeta = F.batchnorm_backward(dout, cache)
    for name, a, b in zip(("x", "dout", "gamma", "beta", "running_mean", "running_var"),
                          (x, dout, gamma, beta, rm, rv), before):
        np.testing.assert_array_equal(host(a), b, err_msg=f"{name} was modified")
    for a in (out, dx, dgamma, dbeta, new_rm, new_rv):
        assert a.dtype == np.float32
    # the returned arrays are fresh: writing to them cannot reach the inputs
    for a in (out, dx):
        assert not np.shares_memory(backend.to_numpy(a), backend.to_numpy(x))


def test_batchnorm_backward_float32_agrees_with_float64(xp):
    x64 = backend.asarray(np.random.default_rng(5).standard_normal((64, 7)) * 3 + 1)
    d64 = backend.asarray(np.random.default_rng(6).standard_normal((64, 7)))
    g64 = backend.asarray(np.linspace(0.5, 2.0, 7))
    b64 = backend.asarray(np.zeros(7))
    ref = F.batchnorm_backward(d64, F.batchnorm_forward(x64, g64, b64, None, None)[1])
    got = F.batchnorm_backward(d64.astype(np.float32),
                               F.batchnorm_forward(x64.astype(np.float32), g64.astype(np.float32),
                                                   b64.astype(np.float32), None, None)[1])
    for r, g in zip(ref, got):
        r, g = backend.to_numpy(r), backend.to_numpy(g)
        assert np.max(np.abs(r - g)) <= 1e-4 * (np.max(np.abs(r)) + 1e-6)


def test_activations_and_linear_never_mutate_their_inputs(xp):
    x, dout = rand32(6, 4, shift=0.1), rand32(6, 4, seed=1)
    W, b = rand32(4, 4, seed=2), rand32(4, seed=3)
    before = [host(a) for a in (x, dout, W, b)]
    for fwd, bwd in F.ACTIVATIONS.values():
        out, cache = fwd(x)
        bwd(dout, cache)
    out, cache = F.linear_forward(x, W, b)
    F.linear_backward(dout, cache)
    for name, a, ref in zip(("x", "dout", "W", "b"), (x, dout, W, b), before):
        np.testing.assert_array_equal(host(a), ref, err_msg=f"{name} was modified")


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_optimizer_updates_in_place_and_makes_state_once(xp, name):
    p = rand32(5, 3)
    params = {"layer.W": p}
    opt = optim.make_optimizer(name, lr=0.01)
    opt.update(params, {"layer.W": rand32(5, 3, seed=1)})
    state = dict(opt.state)
    grad = rand32(5, 3, seed=2)
    grad_before = host(grad)
    opt.update(params, {"layer.W": grad})
    assert params["layer.W"] is p  # the model's array itself moved
    assert p.dtype == np.float32
    assert all(opt.state[k] is v for k, v in state.items()), "optimizer state was reallocated"
    assert all(v.dtype == np.float32 for v in opt.state.values())
    np.testing.assert_array_equal(host(grad), grad_before, err_msg="the gradient was modified")


def test_fit_float32_end_to_end(xp):
    x = rand32(64, 6)
    y = backend.asarray(np.arange(64) % 3)
    model = MLP([6, 8, 3], norm="batch", seed=0)
    history = fit(model, (x, y), num_epochs=1, batch_size=16, progress=False)
    assert len(history.step_loss) == 4 and all(isinstance(v, float) for v in history.step_loss)
    assert all(v.dtype == np.float32 for v in model.params.values())
    bn = model.layer("batchnorm0")
    assert all(v.dtype == np.float32 for v in bn.buffers.values())
    assert isinstance(model.layer("linear0"), L.Linear) and not model.layer("linear0").need_input_grad


def test_benchmark_numpy_floor_does_course_libs_work():
    """The benchmark's 'numpy floor' peer is only a fair comparison if it computes what a
    course_lib step computes: its --check mode compares one step's gradients (with and without BN)."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_core.py"), "--check", "--no-torch",
                           "--threads", "1"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("numpy floor == course_lib gradients") == 2, proc.stdout


def test_benchmark_reports_a_diverged_run_and_goes_on():
    """A workload whose loss turns NaN is reported in its row; the benchmark still finishes
    and times the rest (it used to stop with a RuntimeError on some BLAS kernels)."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_core.py"), "--quick", "--repeats", "1",
                           "--only", "W1,W3", "--no-torch", "--threads", "1", "--clock", "cpu", "--lr", "1e6"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| W")]
    assert len(rows) == 3, proc.stdout
    assert "diverged at step" in rows[0], proc.stdout        # the plain net blows up at lr 1e6
    assert "diverged at step" not in rows[2] and "W3" in rows[2], proc.stdout  # the rest was timed
