#!/usr/bin/env python
"""Speed of course_lib's numerical core against a GEMM-only lower bound and PyTorch (CPU).

    python benchmarks/bench_core.py [--repeats N] [--quick] [--threads T] [--only W1,W3]
                                    [--clock wall|cpu] [--no-torch] [--busy-wait] [--lr LR]
    python benchmarks/bench_core.py --device gpu      # course_lib alone on cupy (make bench-gpu)

Workloads (float32 everywhere, batch 128, ReLU, He init):

W1   MLP 784-1000-1000-10, momentum SGD (lr 0.1, momentum 0.9), one epoch of
     10,240 samples (80 steps), without and with batch normalization.
W2   the same with 15 linear layers (784-1000x14-10), at lr 0.01: at lr 0.1 the plain
     15-layer net diverges within 80 steps on some BLAS kernels and thread counts, and
     a run that stops early times less work (the step's cost does not depend on lr).

A run that still diverges is reported as such (its row says where, and is left out of
the ratios); the other workloads go on.
W3   a BatchNorm1d forward + backward on a (128, 1000) batch, 1000 times.
W4   chapter 09's CNN (``course_lib.convnet.CNN``: conv 3x3 8 -> [BN] -> ReLU -> pool ->
     conv 3x3 16 -> [BN] -> ReLU -> pool -> Linear 784-10), one epoch of 4,000 images in
     batches of 64 (63 steps), momentum SGD lr 0.03, without and with BatchNorm2d; against
     the same network in PyTorch only (no GEMM-only or floor column: a convolution's
     non-GEMM work -- im2col, pooling, transposes -- is the point of the row).  A profile of
     one extra epoch (not interleaved) says where course_lib's time goes, layer by layer.

Each is timed four ways, in one process:

course_lib  ``trainer.fit`` for one epoch (what a notebook runs: shuffling, loss and
            accuracy bookkeeping included); for W3 the BatchNorm1d layer.
GEMM-only   only the matrix products one training step needs, in numpy, with the
            same shapes and dtype: forward ``x @ W``; backward ``dout @ W.T`` (not
            for the first layer, whose input is data) and ``x.T @ dout``.  No
            framework can do a step with less work, so it is a lower bound.
numpy floor the same step written as bare numpy statements, the fewest elementwise
            passes it needs and nothing else (no classes, checks or bookkeeping): about
            the best a numpy implementation of the step can do.  course_lib / floor is
            the framework's own overhead, floor / GEMM-only what numpy's elementwise
            work costs.
torch       the same network as ``torch.nn.Sequential``, ``torch.optim.SGD`` with
            momentum, the same batches, loss and accuracy read every step as fit
            does; skipped (with a note) when torch is not installed.

The machine this runs on is shared, so they are interleaved STEP BY STEP:
a hook in ``fit`` runs step k of the GEMM-only bound, the numpy floor and PyTorch
right after course_lib's step k (hook time is not counted against course_lib).  A
burst of load from other programs then hits all of them alike, and the ratios stay
meaningful even when the absolute times do not.  W3 alternates blocks of 50
iterations.  Each repeat builds fresh models (not timed); the table shows
medians over the repeats and ratios of those medians.

BN overhead (BN net / plain net) compares two different epochs, so it is given
both raw and normalised by the GEMM-only time measured alongside each epoch
(both nets do the same matrix products): the normalised figure is the one that
survives load changes between the two runs.

BLAS threads are pinned to the same number for everyone (``--threads``, default
2) through the environment variables below, set before numpy or torch is
imported, and ``torch.set_num_threads``.  Idle BLAS/OpenMP threads are told to
sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``, ``OPENBLAS_THREAD_TIMEOUT=4``,
for both libraries; ``--busy-wait`` keeps the defaults): with two libraries in one
process, one library's spinning threads otherwise take the cores the other one
needs.  On a busy machine, two threads on two shared cores also wait for other
programs; ``--threads 1 --clock cpu`` (this process's CPU time) gives figures
that other programs cannot inflate.
"""
from __future__ import annotations

import argparse
import gc
import gzip
import os
import platform
import statistics
import sys
import time
from pathlib import Path


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=None,
                   help="timed epochs per workload (default 5, --quick 3)")
    p.add_argument("--quick", action="store_true",
                   help="20 steps per epoch, 250 BN iterations, 3 repeats: a smoke run")
    p.add_argument("--threads", type=int, default=2, help="BLAS / OpenMP threads for numpy and torch")
    p.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W3 (default: all)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: elapsed time (default); cpu: this process's CPU time, which other "
                        "programs cannot inflate -- meaningful with --threads 1 only, since waiting "
                        "BLAS/OpenMP threads spin and burn CPU time")
    p.add_argument("--busy-wait", action="store_true",
                   help="keep the libraries' default busy-waiting thread pools (see below)")
    p.add_argument("--lr", type=float, default=None,
                   help="one learning rate for every workload (default: 0.1 for W1, 0.01 for W2); "
                        "a huge one shows how a diverged run is reported")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if it is installed")
    p.add_argument("--check", action="store_true",
                   help="time nothing: check that the numpy floor computes course_lib's gradients, then exit")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist",
                   help="folder with the Fashion-MNIST IDX files (random data when missing)")
    p.add_argument("--device", choices=("cpu", "gpu", "standin"), default="cpu",
                   help="gpu (cupy) or standin: time course_lib alone on that backend (W1, W2 and one "
                        "full epoch of Source A's 15-layer BN net at width 1000), no CPU peers; "
                        "default cpu: the interleaved comparison below")
    return p.parse_args(argv)


ARGS = parse_args()
# BLAS libraries read their thread count once, when they load: set it before importing numpy.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)
# Idle worker threads busy-wait by default (OpenBLAS for about 2**28 cycles, OpenMP for a
# spin count).  With numpy and torch interleaved in one process, the pool that just ran
# keeps the second core spinning while the other library's threads need it: measured
# here, that alone made torch 5x the GEMM-only time and course_lib 2.3x.  Both pools are
# told to sleep when idle, the same for everyone (unless --busy-wait or already set).
if not ARGS.busy_wait:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # spin 2**4 cycles, then sleep

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from course_lib import backend  # noqa: E402
from course_lib.convnet import CNN  # noqa: E402
from course_lib.layers import BatchNorm1d  # noqa: E402
from course_lib.model import MLP  # noqa: E402
from course_lib.optim import Momentum  # noqa: E402
from course_lib.trainer import Hook, fit  # noqa: E402

try:
    if ARGS.no_torch:
        raise ImportError("--no-torch was given")
    import torch
    torch.set_num_threads(ARGS.threads)
    TORCH_NOTE = ""
except ImportError as e:
    torch = None
    TORCH_NOTE = f"PyTorch column skipped ({e}); `pip install torch` (CPU wheel) to compare."

CLOCK = time.process_time if ARGS.clock == "cpu" else time.perf_counter
BATCH = 128
MOMENTUM = 0.9
LR = {"W1": 0.1, "W2": 0.01} if ARGS.lr is None else {"W1": ARGS.lr, "W2": ARGS.lr}  # W2 at 0.1 can diverge
STEPS = 20 if ARGS.quick else 80
BN_ITERS = 250 if ARGS.quick else 1000
BN_BLOCK = 50
REPEATS = ARGS.repeats or (3 if ARGS.quick else 5)
SIZES = {"W1": [784, 1000, 1000, 10], "W2": [784] + [1000] * 14 + [10]}
TARGET_VS_TORCH = {"W1": 1.0, "W2": 1.0, "W3": 1.5, "W4": 2.0}
CNN_N, CNN_BATCH, CNN_LR = (20 * 64 if ARGS.quick else 4000), 64, 0.03
CNN_STEPS = -(-CNN_N // CNN_BATCH)
TARGET_VS_FLOOR = 1.02  # the old <= 1.25x GEMM-only target is retired: numpy's own floor is above it
TARGET_BN_OVERHEAD = {"W1": 1.10, "W2": 1.15}


# ----------------------------------------------------------------------------- data
def _read_idx(path):
    """A gzipped IDX file: 2 zero bytes, type, ndim, ndim big-endian uint32 sizes, then the data."""
    blob = gzip.open(path).read()
    ndim = blob[3]
    shape = tuple(int(d) for d in np.frombuffer(blob, ">u4", ndim, 4))
    return np.frombuffer(blob, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_data(n):
    """``n`` Fashion-MNIST training images (float32 in [0, 1], int64 labels), else random data."""
    folder = Path(ARGS.data)
    try:
        x = _read_idx(folder / "train-images-idx3-ubyte.gz")[:n].reshape(n, 784)
        y = _read_idx(folder / "train-labels-idx1-ubyte.gz")[:n]
        return x.astype(np.float32) / np.float32(255), y.astype(np.int64), f"Fashion-MNIST ({folder})"
    except (OSError, ValueError) as e:
        rng = np.random.default_rng(0)
        x = rng.random((n, 784), dtype=np.float32)
        y = rng.integers(0, 10, n).astype(np.int64)
        return x, y, f"random float32 (Fashion-MNIST not readable: {e})"


X, Y, DATA_NOTE = load_data(STEPS * BATCH)
ORDER = np.random.default_rng(0).permutation(len(X))  # the order fit(seed=0) draws


# ----------------------------------------------------------------------------- peers, step by step
class GemmSteps:
    """The matrix products of one training step, on fixed random operands of the right shapes."""

    def __init__(self, sizes, bn):
        rng = np.random.default_rng(2)
        self.Ws = [rng.standard_normal((a, b), dtype=np.float32) * np.float32(0.03)
                   for a, b in zip(sizes[:-1], sizes[1:])]
        self.inputs = [rng.standard_normal((BATCH, a), dtype=np.float32) for a in sizes[:-1]]
        self.douts = [rng.standard_normal((BATCH, b), dtype=np.float32) for b in sizes[1:]]

    def step(self, k):
        for x, W in zip(self.inputs, self.Ws):
            x @ W                                            # forward
        for i in reversed(range(len(self.Ws))):
            if i > 0:
                self.douts[i] @ self.Ws[i].T                 # dx (not for the first layer)
            self.inputs[i].T @ self.douts[i]                 # dW


class FloorSteps:
    """A whole training step as bare numpy statements: the GEMMs plus the fewest elementwise passes
    a momentum-SGD step with ReLU (and BN) needs, with no classes, checks or bookkeeping.

    It answers a different question from the GEMM-only bound: how close can numpy itself get?
    course_lib / floor is the framework's own overhead; floor / GEMM-only is what numpy's
    elementwise operations cost on this machine.  The maths is that of course_lib's functional
    module (same operations, same order); lr is 0 so 80 steps on fixed operands stay finite.
    """

    def __init__(self, sizes, bn):
        rng = np.random.default_rng(2)
        f32 = np.float32
        self.bn = bn
        self.Ws = [rng.standard_normal((a, b), dtype=f32) * f32(np.sqrt(2 / a))  # He init
                   for a, b in zip(sizes[:-1], sizes[1:])]
        last = len(self.Ws) - 1
        self.bs = [np.zeros(b, f32) if (i == last or not bn) else None for i, b in enumerate(sizes[1:])]
        self.gammas = [np.ones(b, f32) for b in sizes[1:-1]]
        self.betas = [np.zeros(b, f32) for b in sizes[1:-1]]
        # parameters under the names course_lib's MLP gives them (--check compares by name)
        self.params = {f"linear{i}.W": W for i, W in enumerate(self.Ws)}
        self.params.update({f"linear{i}.b": b for i, b in enumerate(self.bs) if b is not None})
        if bn:
            self.params.update({f"batchnorm{i}.gamma": g for i, g in enumerate(self.gammas)})
            self.params.update({f"batchnorm{i}.beta": b for i, b in enumerate(self.betas)})
        self.velocities = {key: np.zeros_like(p) for key, p in self.params.items()}
        # gradients live between steps, as in a layer's ``grads``: each new one is allocated while the
        # old one is still held, then replaces it.  (A fresh dict per step frees ~60 MB at the end of
        # every W2 step; glibc hands that back to the OS and page-faults it in again: ~25 % slower.)
        self.grads = {}

    def step(self, k):
        idx = ORDER[k * BATCH:(k + 1) * BATCH]
        x, y, n = X[idx], Y[idx], BATCH
        Ws, bs, bn, L = self.Ws, self.bs, self.bn, len(self.Ws)
        inputs, masks, caches = [], [], []
        for i in range(L):                                          # forward
            inputs.append(x)
            h = x @ Ws[i]
            if bs[i] is not None:
                h += bs[i]
            if i == L - 1:
                break
            if bn:
                mean = h.mean(axis=0)
                xc = h - mean
                inv_std = 1.0 / np.sqrt(np.einsum("ij,ij->j", xc, xc) / n + 1e-5)
                xc *= inv_std
                caches.append((xc, inv_std))
                h = xc * self.gammas[i]
                h += self.betas[i]
            x = np.maximum(h, 0)
            masks.append(x)
        shifted = h - h.max(axis=1, keepdims=True)                  # softmax cross-entropy
        exp = np.exp(shifted)
        sum_exp = exp.sum(axis=1, keepdims=True)
        float(-(shifted[np.arange(n), y] - np.log(sum_exp[:, 0])).sum() / n)
        d = exp / sum_exp
        d[np.arange(n), y] -= 1
        d /= n
        int((h.argmax(1) == y).sum())
        grads = self.grads
        for i in reversed(range(L)):                               # backward
            grads[f"linear{i}.W"] = inputs[i].T @ d
            if bs[i] is not None:
                grads[f"linear{i}.b"] = d.sum(axis=0)
            if i == 0:
                break
            d = d @ Ws[i].T
            d = d * (masks[i - 1] > 0)
            if bn:
                xhat, inv_std = caches[i - 1]
                dbeta = d.sum(axis=0)
                dgamma = np.einsum("ij,ij->j", d, xhat)
                dx = xhat * (dgamma * (-1.0 / n))
                dx -= dbeta * (1.0 / n)
                dx += d
                dx *= self.gammas[i - 1] * inv_std
                grads[f"batchnorm{i - 1}.gamma"], grads[f"batchnorm{i - 1}.beta"], d = dgamma, dbeta, dx
        for key, p in self.params.items():                         # momentum SGD (lr 0)
            v = self.velocities[key]
            v *= MOMENTUM
            v += grads[key]
            p -= 0.0 * v


class TorchSteps:
    """The same network and optimizer in PyTorch, fed the same batches."""

    def __init__(self, sizes, bn, lr):
        nn = torch.nn
        torch.manual_seed(0)
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            linear = nn.Linear(fan_in, fan_out, bias=last or not bn)  # no bias before BN, as course_lib
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
            layers.append(linear)
            if last:
                break
            if bn:
                layers.append(nn.BatchNorm1d(fan_out, momentum=0.1))
            layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers).train()
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=lr, momentum=MOMENTUM)
        self.x, self.y = torch.from_numpy(X), torch.from_numpy(Y)
        self.order = torch.from_numpy(ORDER)
        self.batch, self.losses, self.correct = BATCH, [], 0

    def step(self, k):
        idx = self.order[k * self.batch:(k + 1) * self.batch]
        xb, yb = self.x[idx], self.y[idx]
        logits = self.net(xb)
        loss = torch.nn.functional.cross_entropy(logits, yb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.losses.append(loss.item())                        # as fit: loss and accuracy every step
        self.correct += int((logits.argmax(1) == yb).sum())


class TorchCNNSteps(TorchSteps):
    """Chapter 09's CNN in PyTorch (same layers, He init, no conv bias before BN), same batches."""

    def __init__(self, bn, lr):
        nn = torch.nn
        torch.manual_seed(0)
        layers, c_in = [], 1
        for c_out in (8, 16):
            conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=not bn)
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            layers.append(conv)
            if bn:
                layers.append(nn.BatchNorm2d(c_out, momentum=0.1))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        layers += [nn.Flatten(), nn.Linear(16 * 7 * 7, 10)]
        self.net = nn.Sequential(*layers).train()
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=lr, momentum=MOMENTUM)
        self.x = torch.from_numpy(X[:CNN_N].reshape(-1, 1, 28, 28))
        self.y = torch.from_numpy(Y[:CNN_N])
        self.order = torch.from_numpy(np.random.default_rng(0).permutation(CNN_N))  # fit(seed=0)'s order
        self.batch, self.losses, self.correct = CNN_BATCH, [], 0


def cnn_epoch(bn, impls, steps=None):
    """W4: one epoch of chapter 09's CNN, torch interleaved step by step."""
    model = CNN((8, 16), norm="batch" if bn else None, seed=0)
    peers = {"torch": TorchCNNSteps(bn, CNN_LR)} if "torch" in impls else {}
    hook = Interleave(peers)
    gc.collect()
    hook.last = CLOCK()
    history = fit(model, (X[:CNN_N], Y[:CNN_N]), optimizer=Momentum(lr=CNN_LR, momentum=MOMENTUM),
                  num_epochs=1, batch_size=CNN_BATCH, seed=0, hooks=[hook], progress=False,
                  max_steps=steps)
    hook.times["course_lib"] += CLOCK() - hook.last
    if history.diverged:
        return Diverged(history.diverged_at_step, history.message)
    return hook.times


def cnn_profile(bn):
    """Where one epoch of W4 spends course_lib's time: forward and backward of every layer,
    loss and optimizer, measured by wrapping each call (one epoch, not interleaved)."""
    model = CNN((8, 16), norm="batch" if bn else None, seed=0)
    totals = {}

    def timed(key, fn):
        def wrapper(*a):
            t0 = CLOCK()
            out = fn(*a)
            totals[key] = totals.get(key, 0.0) + CLOCK() - t0
            return out
        return wrapper

    for name, layer in model.layers:
        layer.forward = timed((name, "forward"), layer.forward)
        layer.backward = timed((name, "backward"), layer.backward)
    optimizer = Momentum(lr=CNN_LR, momentum=MOMENTUM)
    optimizer.update = timed(("optimizer", "update"), optimizer.update)
    gc.collect()
    t0 = CLOCK()
    fit(model, (X[:CNN_N], Y[:CNN_N]), optimizer=optimizer, num_epochs=1, batch_size=CNN_BATCH, seed=0,
        progress=False)
    total = CLOCK() - t0
    print(f"\nWhere the time goes, W4 {'+BN' if bn else 'no BN'} (course_lib, one epoch {total:.3f} s):")
    for (name, what), t in sorted(totals.items(), key=lambda kv: -kv[1]):
        if t / total >= 0.01:
            print(f"  {name:<9} {what:<9} {t:.3f} s  {100 * t / total:5.1f} %")
    rest = total - sum(totals.values())
    print(f"  {'rest':<9} {'(fit: batches, loss, accuracy)':<9} {rest:.3f} s  {100 * rest / total:5.1f} %")


class Interleave(Hook):
    """Runs the peers' step k right after course_lib's step k; times everyone separately."""

    name = "interleave"

    def __init__(self, peers):
        self.peers = peers
        self.times = {"course_lib": 0.0, **{name: 0.0 for name in peers}}
        self.last = None

    def on_step(self, step, model, history):
        now = CLOCK()
        self.times["course_lib"] += now - self.last           # course_lib since the hook last returned
        for name, peer in self.peers.items():
            t0 = CLOCK()
            peer.step(step)
            self.times[name] += CLOCK() - t0
        self.last = CLOCK()


def epoch(workload, bn, impls, steps=STEPS):
    """One interleaved epoch of every implementation in ``impls``; returns {impl: seconds}."""
    sizes = SIZES[workload]
    model = MLP(sizes, activation="relu", norm="batch" if bn else None, init="he", seed=0)
    optimizer = Momentum(lr=LR[workload], momentum=MOMENTUM)
    peers = {}
    if "gemm" in impls:
        peers["gemm"] = GemmSteps(sizes, bn)
    if "floor" in impls:
        peers["floor"] = FloorSteps(sizes, bn)
    if "torch" in impls:
        peers["torch"] = TorchSteps(sizes, bn, LR[workload])
    hook = Interleave(peers)
    gc.collect()
    hook.last = CLOCK()
    history = fit(model, (X, Y), optimizer=optimizer, num_epochs=1, batch_size=BATCH, seed=0,
                  hooks=[hook], progress=False, max_steps=steps)
    hook.times["course_lib"] += CLOCK() - hook.last
    if history.diverged:  # fit stops at a NaN loss: the time covers fewer steps, so it is not kept
        return Diverged(history.diverged_at_step, history.message)
    assert len(history.step_loss) == steps
    return hook.times


class Diverged:
    """An epoch that stopped at a non-finite loss: reported in its row, left out of the ratios."""

    def __init__(self, step, message):
        self.step, self.message = step, message

    def __str__(self):
        return f"diverged at step {self.step}"


def bn_blocks(impls, iters=BN_ITERS):
    """W3: BatchNorm1d forward + backward, course_lib and torch alternating blocks of BN_BLOCK."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((BATCH, 1000), dtype=np.float32) * 2 + 0.5
    dout = rng.standard_normal((BATCH, 1000), dtype=np.float32)
    layer = BatchNorm1d(1000)

    def course_lib_block(n):
        for _ in range(n):
            layer.forward(x)
            layer.backward(dout)

    runners = {"course_lib": course_lib_block}
    if "torch" in impls:
        bn = torch.nn.BatchNorm1d(1000).train()
        tx = torch.from_numpy(x.copy()).requires_grad_()
        tdout = torch.from_numpy(dout)
        wrt = [tx, bn.weight, bn.bias]

        def torch_block(n):
            for _ in range(n):
                out = bn(tx)
                torch.autograd.grad(out, wrt, tdout)  # dx, dgamma, dbeta, like course_lib's backward

        runners["torch"] = torch_block
    times = dict.fromkeys(runners, 0.0)
    gc.collect()
    for start in range(0, iters, BN_BLOCK):
        for name, run in runners.items():
            t0 = CLOCK()
            run(min(BN_BLOCK, iters - start))
            times[name] += CLOCK() - t0
    return times


def check_floor():
    """The floor must do course_lib's work, not less: one step from zero velocity leaves each
    velocity equal to the gradient, which must match course_lib's on the same weights and batch."""
    for bn in (False, True):
        floor = FloorSteps(SIZES["W1"], bn)
        model = MLP(SIZES["W1"], activation="relu", norm="batch" if bn else None, seed=0)
        params = model.params
        assert sorted(floor.params) == sorted(params), (sorted(floor.params), sorted(params))
        for key, p in floor.params.items():
            params[key][...] = p
        floor.step(0)
        idx = ORDER[:BATCH]
        _, dlogits, _ = model.loss(X[idx], Y[idx])
        model.backward(dlogits)
        grads = model.grads
        for key, v in floor.velocities.items():
            err = float(np.abs(v - grads[key]).max() / max(float(np.abs(grads[key]).max()), 1e-30))
            assert err <= 1e-5, (f"numpy floor and course_lib disagree on {key} (bn={bn}): "
                                 f"relative error {err:.1e}")
        print(f"numpy floor == course_lib gradients ({'with' if bn else 'without'} BN, {len(grads)} arrays)")


# ----------------------------------------------------------------------------- the run
def workloads():
    wanted = [w.strip().upper() for w in ARGS.only.split(",") if w.strip()]
    rows = [(w, bn) for w in ("W1", "W2") for bn in (False, True)] + [("W3", True)] + \
        [("W4", bn) for bn in (False, True)]
    return [r for r in rows if not wanted or r[0] in wanted]


def label(workload, bn):
    if workload == "W3":
        return f"W3 BN fwd+bwd x{BN_ITERS}"
    if workload == "W4":
        return f"W4 CNN{' +BN2d' if bn else ''}"
    return f"{workload} {len(SIZES[workload]) - 1} layers{' +BN' if bn else ''}"


def run_all():
    impls = ["course_lib", "gemm", "floor"] + (["torch"] if torch is not None else [])
    rows = workloads()
    # warm-up: first calls pay for imports, page faults and BLAS thread start-up
    for w, bn in rows:
        if w == "W3":
            bn_blocks(impls, iters=2 * BN_BLOCK)
        elif w == "W4":
            cnn_epoch(bn, impls, steps=3)
        else:
            epoch(w, bn, impls, steps=3)
    raw = {(r, i): [] for r in rows for i in impls}
    diverged = {}
    for rep in range(REPEATS):
        for w, bn in rows:
            if (w, bn) in diverged:
                continue
            times = (bn_blocks(impls) if w == "W3" else cnn_epoch(bn, impls) if w == "W4"
                     else epoch(w, bn, impls))
            if isinstance(times, Diverged):
                diverged[(w, bn)] = times
                print(f"  {label(w, bn)}: {times.message}; not timed, the other workloads go on",
                      file=sys.stderr, flush=True)
                continue
            for impl, t in times.items():
                raw[((w, bn), impl)].append(t)
        print(f"  repeat {rep + 1}/{REPEATS} done (load average {os.getloadavg()[0]:.1f})",
              file=sys.stderr, flush=True)
    return rows, {k: v for k, v in raw.items() if v}, diverged


def fmt(v, spec=".3f", suffix=""):
    return "—" if v is None else format(v, spec) + suffix


def report(rows, raw, diverged=None):
    diverged = diverged or {}
    med = {k: statistics.median(v) for k, v in raw.items()}
    header = ("workload", "course_lib s", "GEMM-only s", "torch s", "ratio vs torch", "ratio vs floor",
              "target", "PASS/FAIL", "(course_lib vs GEMM)", "(torch vs GEMM)", "(numpy floor vs GEMM)")
    table = []
    for w, bn in rows:
        if (w, bn) in diverged:
            table.append((label(w, bn), str(diverged[(w, bn)]), *["—"] * (len(header) - 2)))
            continue
        cl, gm, th, fl = (med.get(((w, bn), i)) for i in ("course_lib", "gemm", "torch", "floor"))
        vs_torch = cl / th if th else None
        vs_gemm = cl / gm if gm and w not in ("W3", "W4") else None
        vs_floor = cl / fl if fl and w not in ("W3", "W4") else None
        target, checks = [f"≤{TARGET_VS_TORCH[w]:.2f}x torch"], []
        if vs_torch is not None:
            checks.append(vs_torch <= TARGET_VS_TORCH[w])
        if w not in ("W3", "W4"):
            target.append(f"≤{TARGET_VS_FLOOR:.2f}x floor")
            checks.append(vs_floor <= TARGET_VS_FLOOR)
        verdict = "PASS" if all(checks) else "FAIL"
        if vs_torch is None and w in ("W3", "W4"):
            verdict = "— (no torch)"
        torch_vs_gemm = th / gm if th and gm and w != "W3" else None
        table.append((label(w, bn), fmt(cl), fmt(gm if w not in ("W3", "W4") else None), fmt(th),
                      fmt(vs_torch, ".2f", "x"), fmt(vs_floor, ".2f", "x"), ", ".join(target), verdict,
                      fmt(vs_gemm, ".2f", "x"), fmt(torch_vs_gemm, ".2f", "x"),
                      fmt(fl / gm if fl and gm else None, ".2f", "x")))
    widths = [max(len(str(r[c])) for r in table + [header]) for c in range(len(header))]

    def line(r):
        return "| " + " | ".join(str(v).ljust(wd) for v, wd in zip(r, widths)) + " |"

    print(line(header))
    print("|" + "|".join("-" * (wd + 2) for wd in widths) + "|")
    for r in table:
        print(line(r))

    if any(((w, bn), "course_lib") in med for w in ("W1", "W2") for bn in (False, True)):
        print("\nBN overhead, BN net / plain net (course_lib; target in brackets):")
    for w in ("W1", "W2"):
        if ((w, False), "course_lib") not in med or ((w, True), "course_lib") not in med:
            continue
        raw_ratio = med[((w, True), "course_lib")] / med[((w, False), "course_lib")]
        parts = [f"raw {raw_ratio:.3f}x"]
        verdict_ratio = raw_ratio
        if ((w, True), "gemm") in raw:
            # the per-epoch course_lib / GEMM-only ratio cancels the load of that epoch
            norm = {bn: statistics.median(c / g for c, g in zip(raw[((w, bn), "course_lib")],
                                                                  raw[((w, bn), "gemm")]))
                    for bn in (False, True)}
            verdict_ratio = norm[True] / norm[False]
            parts.append(f"GEMM-normalised {verdict_ratio:.3f}x")
        if ((w, True), "torch") in med:
            parts.append(f"(torch raw {med[((w, True), 'torch')] / med[((w, False), 'torch')]:.3f}x)")
        ok = "PASS" if verdict_ratio <= TARGET_BN_OVERHEAD[w] else "FAIL"
        print(f"  {len(SIZES[w]) - 1:>2} layers: {', '.join(parts)}  [≤{TARGET_BN_OVERHEAD[w]:.2f}x] {ok}")

    print("\nEvery repeat (s), in order:")
    for (row, impl), v in raw.items():
        print(f"  {label(*row):<22} {impl:<10} " + " ".join(f"{t:.3f}" for t in v))


def describe():
    blas = "?"
    try:
        b = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{b.get('name')} {b.get('version')}"
    except Exception:  # older numpy has no dict mode
        pass
    parts = [f"python {platform.python_version()}", f"numpy {np.__version__} ({blas})"]
    if torch is not None:
        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print("; ".join(parts))
    print(f"BLAS threads {ARGS.threads}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(default)')}, "
          f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT', '(default)')}; "
          f"{os.cpu_count()} CPUs seen; load average at start "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"data: {DATA_NOTE}; {STEPS} steps of {BATCH} per epoch; W3 {BN_ITERS} iterations; "
          f"W4 {CNN_STEPS} steps of {CNN_BATCH} (lr {CNN_LR}); "
          f"{REPEATS} repeats interleaved step by step; medians")
    print(f"course_lib backend: {backend.device}, dtype {np.dtype(backend.default_dtype).name}; "
          f"clock: {'process CPU time' if ARGS.clock == 'cpu' else 'wall time'}")
    if TORCH_NOTE:
        print(TORCH_NOTE)


# ----------------------------------------------------------------------------- --device gpu
SOURCE_A_EPOCH = 50_000  # Source A's training set: one epoch is 391 steps of 128


def device_run():
    """``--device gpu`` (or ``standin``): course_lib's training epochs on that backend, alone.

    The CPU peers (GEMM-only, numpy floor, torch CPU) make no sense next to a GPU, so nothing is
    interleaved: each row is the median of ``REPEATS`` epochs after a warm-up, the device
    synchronised before the clock is read.  Rows: W1 and W2 (with and without BN) as on the
    CPU, then one full epoch of Source A's 15-layer BN network at width 1000 (50,000 images,
    lr 0.1, momentum 0.9; ``--quick``: 20 steps of it).
    """
    try:
        xp = backend.use(ARGS.device)
    except RuntimeError as e:  # no cupy / no visible GPU: say so, do not time the CPU instead
        print(f"error: --device {ARGS.device}: {e}", file=sys.stderr)
        return 1

    def sync():
        cuda = getattr(xp, "cuda", None)
        if cuda is not None:
            cuda.Stream.null.synchronize()

    def timed_epoch(sizes, bn, lr, x, y, steps):
        model = MLP(sizes, activation="relu", norm="batch" if bn else None, init="he", seed=0)
        sync()
        t0 = time.perf_counter()
        history = fit(model, (x, y), optimizer=Momentum(lr=lr, momentum=MOMENTUM), num_epochs=1,
                      batch_size=BATCH, seed=0, progress=False, max_steps=steps)
        sync()
        seconds = time.perf_counter() - t0
        return (None if history.diverged else seconds), len(history.step_loss)

    x, y = backend.asarray(X), backend.asarray(Y)  # on the device once, as a GPU notebook has it
    print(f"course_lib on {backend.device} ({xp.__name__}), dtype {np.dtype(backend.default_dtype).name}; "
          f"data: {DATA_NOTE}; {REPEATS} repeats after a warm-up; medians\n")
    print(f"| {'workload':<38} | {'steps':>5} | {'s / epoch':>9} | {'ms / step':>9} |")
    print(f"|{'-' * 40}|{'-' * 7}|{'-' * 11}|{'-' * 11}|")
    for w, bn in workloads():
        if w not in SIZES:
            continue
        timed_epoch(SIZES[w], bn, LR[w], x, y, 3)  # warm-up: kernels compiled, memory pool filled
        runs = [timed_epoch(SIZES[w], bn, LR[w], x, y, STEPS) for _ in range(REPEATS)]
        times = [t for t, _ in runs if t is not None]
        if not times:
            print(f"| {label(w, bn):<38} | {STEPS:>5} | {'diverged':>9} | {'':>9} |")
            continue
        t = statistics.median(times)
        print(f"| {label(w, bn):<38} | {STEPS:>5} | {t:9.3f} | {1000 * t / STEPS:9.2f} |", flush=True)
    n = 20 * BATCH if ARGS.quick else SOURCE_A_EPOCH
    xa, ya, note = load_data(n)
    xa, ya = backend.asarray(xa), backend.asarray(ya)
    timed_epoch(SIZES["W2"], True, 0.1, xa, ya, 3)
    t, steps = timed_epoch(SIZES["W2"], True, 0.1, xa, ya, None)
    name = f"Source A: 15 layers +BN, {n:,} images"
    print(f"| {name:<38} | {steps:>5} | {t:9.3f} | {1000 * t / steps:9.2f} |" if t is not None
          else f"| {name:<38} | {steps:>5} | {'diverged':>9} | {'':>9} |")
    print(f"\nSource A's 50 epochs at this speed: {50 * t * SOURCE_A_EPOCH / n / 60:.1f} min "
          f"(data: {note})" if t is not None else "")
    return 0


if __name__ == "__main__":
    if ARGS.device != "cpu":
        print("command: python benchmarks/bench_core.py " + " ".join(sys.argv[1:]))
        sys.exit(device_run())
    if ARGS.check:
        check_floor()
        sys.exit(0)
    print("command: python benchmarks/bench_core.py " + " ".join(sys.argv[1:]))
    describe()
    t_start = time.perf_counter()
    rows, raw, diverged = run_all()
    print()
    report(rows, raw, diverged)
    for w, bn in rows:
        if w == "W4" and (w, bn) not in diverged:
            cnn_profile(bn)
    print(f"\nwall time {time.perf_counter() - t_start:.0f} s; load average at the end "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
