"""The maths of every layer as pure forward/backward pairs.

Each ``*_forward`` returns ``(out, cache)`` and each ``*_backward(dout, cache)``
returns the gradients with respect to the forward's array inputs, in order.
Nothing here keeps state or mutates its inputs; the classes in
:mod:`course_lib.layers` wrap these pairs.  Shapes: ``N`` samples, ``D``
features in, ``M`` features out, ``C`` classes.

The array module comes from the inputs (``xp = get_array_module(x)``), so the
same code runs on numpy, cupy and the stand-in device.
"""
from __future__ import annotations

from course_lib.backend import get_array_module


# ----------------------------------------------------------------------------- linear
def linear_forward(x, W, b):
    """Affine map ``out = x @ W + b``.

    x: (N, D), W: (D, M), b: (M,) or None  ->  out: (N, M)
    """
    out = x @ W
    if b is not None:
        out += b
    return out, (x, W, b is not None)


def linear_backward(dout, cache, need_dx=True):
    """Gradients of :func:`linear_forward`.

    dout: (N, M)  ->  dx: (N, D) (None when ``need_dx`` is False, e.g. for the
    first layer, whose input is data), dW: (D, M), db: (M,) or None.
    """
    x, W, has_bias = cache
    dx = dout @ W.T if need_dx else None
    dW = x.T @ dout
    db = dout.sum(axis=0) if has_bias else None
    return dx, dW, db


# ------------------------------------------------------------------------ activations
def relu_forward(x):
    """``out = max(x, 0)``; x: any shape."""
    xp = get_array_module(x)
    out = xp.maximum(x, 0)
    return out, out


def relu_backward(dout, cache):
    """``dx = dout`` where the unit fired (out > 0), else 0.  At x = 0 the slope is taken as 0."""
    out = cache
    return dout * (out > 0)


def leaky_relu_forward(x, slope=0.01):
    """``out = x`` for x > 0, ``slope * x`` otherwise."""
    xp = get_array_module(x)
    if not 0 <= slope < 1:
        raise ValueError(f"LeakyReLU slope must be in [0, 1), got {slope}")
    positive = x > 0
    out = xp.where(positive, x, x * x.dtype.type(slope))
    return out, (positive, slope)


def leaky_relu_backward(dout, cache):
    xp = get_array_module(dout)
    positive, slope = cache
    return xp.where(positive, dout, dout * dout.dtype.type(slope))


def sigmoid_forward(x):
    """``out = 1 / (1 + exp(-x))``, computed as ``(1 + tanh(x/2)) / 2`` to avoid overflow."""
    xp = get_array_module(x)
    out = xp.tanh(x * 0.5)
    out += 1
    out *= 0.5
    return out, out


def sigmoid_backward(dout, cache):
    """``dx = dout * s * (1 - s)``."""
    s = cache
    return dout * s * (1 - s)


def tanh_forward(x):
    xp = get_array_module(x)
    out = xp.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    """``dx = dout * (1 - tanh(x)^2)``."""
    t = cache
    return dout * (1 - t * t)


ACTIVATIONS = {
    "relu": (relu_forward, relu_backward),
    "leaky_relu": (leaky_relu_forward, leaky_relu_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "tanh": (tanh_forward, tanh_backward),
}


# ------------------------------------------------------------------------ batch norm
def _check_batch(x, name):
    if x.ndim != 2:
        raise ValueError(f"{name} expects input of shape (N, D), got shape {tuple(x.shape)}")
    if x.shape[0] < 2:
        raise ValueError(
            f"{name} in training mode needs more than 1 value per feature (got input shape "
            f"{tuple(x.shape)}): the batch variance of one sample is 0. Use a batch of 2 or more, "
            "or switch the layer to eval() mode.")


def _normalize(x, eps):
    """Batch statistics over axis 0: returns xhat, mean, biased var, 1/sqrt(var + eps)."""
    xp = get_array_module(x)
    mean = x.mean(axis=0)
    xc = x - mean
    # var_j = mean_i xc_ij^2; einsum sums the products in one pass without
    # materialising xc * xc, a second (N, D) array (speed, same maths)
    var = xp.einsum("ij,ij->j", xc, xc) / x.shape[0]
    inv_std = 1.0 / xp.sqrt(var + eps)
    xc *= inv_std  # xc becomes xhat; reuse its memory
    return xc, mean, var, inv_std


def _update_running(running_mean, running_var, mean, var, n, momentum):
    """``running = (1 - momentum) * running + momentum * batch``; variance made unbiased (n/(n-1))."""
    if running_mean is None:
        return None, None
    new_mean = (1 - momentum) * running_mean + momentum * mean
    new_var = (1 - momentum) * running_var + (momentum * n / (n - 1)) * var
    return new_mean, new_var


def batchnorm_forward(x, gamma, beta, running_mean, running_var, *, momentum=0.1, eps=1e-5,
                      training=True):
    r"""Batch normalization (Ioffe & Szegedy 2015, Algorithms 1 and 2).

    Training mode, per feature j over the N samples of the batch::

        mu_j    = mean_i x_ij
        var_j   = mean_i (x_ij - mu_j)^2                   (biased: divides by N)
        xhat_ij = (x_ij - mu_j) / sqrt(var_j + eps)
        out_ij  = gamma_j * xhat_ij + beta_j

    and the running statistics move towards the batch ones with
    ``momentum`` = the weight of the NEW batch (PyTorch's convention; Keras and
    Chainer write ``decay = 1 - momentum = 0.9`` for the same update)::

        running_mean <- (1 - momentum) * running_mean + momentum * mu
        running_var  <- (1 - momentum) * running_var  + momentum * var * N / (N - 1)   (unbiased)

    Eval mode normalises with ``running_mean`` / ``running_var`` instead and
    leaves them unchanged.

    x: (N, D); gamma, beta, running_mean, running_var: (D,) (the running ones
    may be None: no update).  Returns ``out (N, D), cache, new_running_mean,
    new_running_var``.  Training with N = 1 raises, as in PyTorch.
    """
    xp = get_array_module(x)
    if training:
        _check_batch(x, "batchnorm_forward")
        xhat, mean, var, inv_std = _normalize(x, eps)
        running_mean, running_var = _update_running(running_mean, running_var, mean, var,
                                                    x.shape[0], momentum)
    else:
        if running_mean is None:
            raise ValueError("batchnorm_forward in eval mode needs running_mean and running_var")
        inv_std = 1.0 / xp.sqrt(running_var + eps)
        xhat = (x - running_mean) * inv_std
    out = xhat * gamma
    out += beta
    return out, (xhat, gamma, inv_std, training), running_mean, running_var


def batchnorm_backward(dout, cache):
    r"""Closed-form gradient of :func:`batchnorm_forward`.

    With ``g = dout * gamma`` (the gradient reaching xhat), training mode gives::

        dx = inv_std / N * (N * g - sum_i g - xhat * sum_i (g * xhat))
           = gamma * inv_std / N * (N * dout - dbeta - xhat * dgamma)

    since ``dbeta = sum_i dout`` and ``dgamma = sum_i dout * xhat``.  In eval
    mode the statistics are constants and ``dx = dout * gamma * inv_std``.

    dout: (N, D)  ->  dx: (N, D), dgamma: (D,), dbeta: (D,)
    """
    xp = get_array_module(dout)
    xhat, gamma, inv_std, training = cache
    dbeta = dout.sum(axis=0)
    # sum_i dout_ij * xhat_ij in one pass, without an (N, D) temporary for the product
    dgamma = xp.einsum("ij,ij->j", dout, xhat)
    scale = gamma * inv_std
    if not training:
        return dout * scale, dgamma, dbeta
    n = dout.shape[0]
    # the -1/n is applied to the (D,) vectors, not to the (N, D) array: one full pass fewer
    dx = xhat * (dgamma * (-1.0 / n))
    dx -= dbeta * (1.0 / n)
    dx += dout
    dx *= scale
    return dx, dgamma, dbeta


def batchnorm_backward_staged(dout, cache):
    """The same gradient as :func:`batchnorm_backward`, one graph node at a time.

    The forward pass as a computational graph (training mode)::

        mu = mean(x)         xc = x - mu          sq = xc**2        var = mean(sq)
        std = sqrt(var+eps)  inv = 1/std          xhat = xc * inv   out = gamma*xhat + beta

    Walk it backwards, applying the chain rule at each node; where a value
    feeds two nodes (``xc`` and ``x``), the gradients from both paths add.
    """
    xp = get_array_module(dout)
    xhat, gamma, inv_std, training = cache
    n = dout.shape[0]
    # out = gamma * xhat + beta
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    if not training:
        return dxhat * inv_std, dgamma, dbeta
    xc = xhat / inv_std                       # recover the centred input
    # xhat = xc * inv
    dinv = (dxhat * xc).sum(axis=0)
    dxc = dxhat * inv_std                     # first path into xc
    # inv = 1 / std
    std = 1.0 / inv_std
    dstd = -dinv / (std * std)
    # std = sqrt(var + eps)
    dvar = dstd * 0.5 / std
    # var = mean(sq)
    dsq = xp.broadcast_to(dvar / n, dout.shape)
    # sq = xc ** 2: second path into xc
    dxc = dxc + 2 * xc * dsq
    # xc = x - mu: x gets dxc directly, and through mu
    dmu = -dxc.sum(axis=0)
    # mu = mean(x)
    dx = dxc + dmu / n
    return dx, dgamma, dbeta


# ------------------------------------------------------------------ batch renormalization
def batchrenorm_forward(x, gamma, beta, running_mean, running_var, *, r_max, d_max,
                        momentum=0.1, eps=1e-5, training=True):
    r"""Batch Renormalization (Ioffe 2017, Algorithm 1).

    Training mode corrects the batch statistics towards the running ones::

        sigma_B = sqrt(var_B + eps)            sigma = sqrt(running_var + eps)
        r = clip(sigma_B / sigma, 1/r_max, r_max)          (treated as a constant)
        d = clip((mu_B - running_mean) / sigma, -d_max, d_max)   (treated as a constant)
        xhat = (x - mu_B) / sigma_B * r + d
        out  = gamma * xhat + beta

    With ``r_max = 1, d_max = 0`` this is exactly batch normalization.  Running
    statistics are updated as in :func:`batchnorm_forward` (momentum = weight of
    the new batch; unbiased variance).  Eval mode is identical to BN's.

    x: (N, D); the rest (D,).  Returns ``out, cache, new_running_mean, new_running_var``.
    """
    if r_max < 1 or d_max < 0:
        raise ValueError(f"need r_max >= 1 and d_max >= 0, got r_max={r_max}, d_max={d_max}")
    if not training:
        return batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum=momentum,
                                 eps=eps, training=False)
    xp = get_array_module(x)
    _check_batch(x, "batchrenorm_forward")
    xhat_bn, mean, var, inv_std = _normalize(x, eps)
    inv_sigma = 1.0 / xp.sqrt(running_var + eps)
    r = xp.clip((1.0 / inv_std) * inv_sigma, 1.0 / r_max, r_max)
    d = xp.clip((mean - running_mean) * inv_sigma, -d_max, d_max)
    xhat = xhat_bn * r + d
    out = xhat * gamma + beta
    new_mean, new_var = _update_running(running_mean, running_var, mean, var, x.shape[0], momentum)
    return out, (xhat_bn, xhat, gamma, inv_std, r), new_mean, new_var


def batchrenorm_backward(dout, cache):
    """Gradient of :func:`batchrenorm_forward` (training mode) with r and d held constant.

    The gradient reaching the plain-BN ``xhat_bn`` is ``dout * gamma * r``; from
    there it is BN's closed form.  dout: (N, D) -> dx (N, D), dgamma (D,), dbeta (D,).
    """
    if len(cache) == 4:  # eval mode: the cache came from batchnorm_forward
        return batchnorm_backward(dout, cache)
    xhat_bn, xhat, gamma, inv_std, r = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    g = dout * (gamma * r)
    dx = inv_std / n * (n * g - g.sum(axis=0) - xhat_bn * (g * xhat_bn).sum(axis=0))
    return dx, dgamma, dbeta


# ----------------------------------------------------------------- layer / group norm
def layernorm_forward(x, gamma, beta, eps=1e-5):
    r"""Layer normalization (Ba et al. 2016): BN's formula per sample, over the features.

    ``xhat_ij = (x_ij - mean_j x_ij) / sqrt(var_j x_ij + eps)``, ``out = gamma * xhat + beta``.
    No batch statistics, so it behaves the same for any batch size and in train
    and eval mode.  x: (N, D); gamma, beta: (D,).
    """
    if x.ndim != 2:
        raise ValueError(f"layernorm_forward expects input of shape (N, D), got {tuple(x.shape)}")
    xhat_t, _, _, inv_std = _normalize(x.T, eps)
    out = xhat_t.T * gamma + beta
    return out, (xhat_t, gamma, inv_std)


def _rownorm_backward(dxhat_t, xhat_t, inv_std):
    """BN's closed form along axis 0 of transposed arrays (shared by layer and group norm)."""
    n = dxhat_t.shape[0]
    return inv_std / n * (n * dxhat_t - dxhat_t.sum(axis=0) - xhat_t * (dxhat_t * xhat_t).sum(axis=0))


def layernorm_backward(dout, cache):
    """Gradient of :func:`layernorm_forward`: BN's closed form with the roles of N and D swapped."""
    xhat_t, gamma, inv_std = cache
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat_t.T).sum(axis=0)
    dx = _rownorm_backward((dout * gamma).T, xhat_t, inv_std).T
    return dx, dgamma, dbeta


def groupnorm_forward(x, gamma, beta, num_groups, eps=1e-5):
    r"""Group normalization (Wu & He 2018) for (N, D) inputs: layer norm within each of
    ``num_groups`` contiguous groups of D / num_groups features.  ``num_groups=1`` is layer
    norm.  x: (N, D); gamma, beta: (D,)."""
    if x.ndim != 2 or x.shape[1] % num_groups:
        raise ValueError(f"groupnorm_forward needs (N, D) input with D divisible by num_groups="
                         f"{num_groups}, got {tuple(x.shape)}")
    n, d = x.shape
    xg = x.reshape(n * num_groups, d // num_groups)
    xhat_t, _, _, inv_std = _normalize(xg.T, eps)
    out = xhat_t.T.reshape(n, d) * gamma + beta
    return out, (xhat_t, gamma, inv_std, num_groups)


def groupnorm_backward(dout, cache):
    xhat_t, gamma, inv_std, num_groups = cache
    n, d = dout.shape
    xhat = xhat_t.T.reshape(n, d)
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat_t = (dout * gamma).reshape(n * num_groups, d // num_groups).T
    dx = _rownorm_backward(dxhat_t, xhat_t, inv_std).T.reshape(n, d)
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------- dropout
def dropout_forward(x, p, *, training, rng):
    r"""Inverted dropout; ``p`` is the DROP probability.

    Training: ``mask_ij = [u_ij >= p] / (1 - p)`` with u uniform on [0, 1), and
    ``out = x * mask``, so ``E[out] = x`` and nothing changes at test time.
    Eval mode (or p = 0): ``out = x``.  ``rng`` is a
    :class:`course_lib.backend.Generator` (or anything with ``random(shape, dtype)``).
    """
    if not 0 <= p < 1:
        raise ValueError(f"dropout p is the drop probability and must be in [0, 1), got {p}")
    if not training or p == 0:
        return x, None
    try:  # draw on x's device (a model moved with .to() may not be on the active backend)
        u = rng.random(x.shape, dtype=x.dtype, like=x)
    except TypeError:  # an rng without ``like`` (anything with random(shape, dtype))
        u = rng.random(x.shape, dtype=x.dtype)
    keep = u >= p
    mask = keep * x.dtype.type(1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dout, cache):
    """``dx = dout * mask`` (the same mask as the forward pass)."""
    mask = cache
    return dout if mask is None else dout * mask


# ------------------------------------------------------------------------------ loss
def softmax_cross_entropy(logits, labels):
    r"""Mean softmax cross-entropy and its gradient.

    ``loss = -mean_i log softmax(logits_i)[y_i]``;  ``dlogits = (softmax - onehot(y)) / N``.
    Shifting each row by its max keeps exp() finite for any logits.

    logits: (N, C) float; labels: (N,) ints in [0, C) or (N, C) one-hot / soft targets.
    Returns ``loss`` (0-d array) and ``dlogits`` (N, C).
    """
    for name, a in (("logits", logits), ("labels", labels)):
        if not hasattr(a, "ndim") or not hasattr(a, "dtype"):
            raise TypeError(f"softmax_cross_entropy: {name} must be an array, got {type(a).__name__}; "
                            "convert it with backend.asarray(...) (labels as integers)")
    xp = get_array_module(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, C), got {tuple(logits.shape)}")
    n, c = logits.shape
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = xp.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)
    log_probs = shifted - xp.log(sum_exp)
    probs = exp / sum_exp
    if labels.ndim == 2:
        if labels.shape != logits.shape:
            raise ValueError(f"one-hot labels must have shape {tuple(logits.shape)}, "
                             f"got {tuple(labels.shape)}")
        loss = -(labels * log_probs).sum() / n
        return loss, (probs - labels) / n
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match logits {tuple(logits.shape)}, "
                         f"got {tuple(labels.shape)}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"integer class labels expected, got dtype {labels.dtype}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= c:
        raise ValueError(f"labels must be in [0, {c - 1}] for {c} classes; found values in [{lo}, {hi}]")
    rows = xp.arange(n)
    loss = -log_probs[rows, labels].sum() / n
    probs[rows, labels] -= 1
    probs /= n
    return loss, probs


# =============================================================================
# convolutional layers (chapter 09): images are (N, C, H, W), channels first,
# as in PyTorch; filters are (F, C, KH, KW).
# =============================================================================
def _pair(v, name):
    """``3`` -> ``(3, 3)``; ``(3, 2)`` stays; anything else raises with the expected form."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair (h, w), got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def conv_output_size(size, kernel, stride=1, padding=0):
    """Output length of a convolution or pooling along one axis:
    ``(size + 2 * padding - kernel) // stride + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def _check_images(x, name, channels=None):
    if getattr(x, "ndim", None) != 4:
        raise ValueError(f"{name} expects images of shape (N, C, H, W), got shape "
                         f"{tuple(getattr(x, 'shape', ()))}; reshape flat MNIST rows with "
                         "x.reshape(-1, 1, 28, 28)")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} expects {channels} input channels (axis 1 of (N, C, H, W)), "
                         f"got shape {tuple(x.shape)}")


def im2col(x, kh, kw, stride=1, padding=0):
    r"""Unfold every (C, kh, kw) patch of ``x`` into a column.

    x: (N, C, H, W)  ->  cols: (C * kh * kw, N * OH * OW), rows ordered (c, i, j) like a
    filter ``W.reshape(F, C * kh * kw)``, columns ordered (n, oh, ow).  Built with kh * kw
    strided slice copies (one per kernel offset), which works on numpy, cupy and the
    stand-in alike; ``OH = (H + 2 * padding - kh) // stride + 1`` and likewise OW.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    if oh < 1 or ow < 1:
        raise ValueError(f"a {kh}x{kw} kernel with padding {padding} does not fit images of "
                         f"size {h}x{w}: use a smaller kernel or more padding")
    if ph or pw:
        xpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
        xpad[:, :, ph:ph + h, pw:pw + w] = x
    else:
        xpad = x
    cols = xp.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = xpad[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
            cols[:, i, j] = patch.transpose(1, 0, 2, 3)
    return cols.reshape(c * kh * kw, n * oh * ow)


def col2im(cols, x_shape, kh, kw, stride=1, padding=0):
    """The adjoint of :func:`im2col`: add every column back onto the patch it came from
    (overlapping patches add up).  cols: (C * kh * kw, N * OH * OW) -> (N, C, H, W)."""
    xp = get_array_module(cols)
    n, c, h, w = x_shape
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    cols = cols.reshape(c, kh, kw, n, oh, ow)
    dxpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxpad[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += \
                cols[:, i, j].transpose(1, 0, 2, 3)
    return dxpad[:, :, ph:ph + h, pw:pw + w] if (ph or pw) else dxpad


def conv2d_forward(x, W, b, stride=1, padding=0):
    r"""2-D convolution (cross-correlation, as in every deep-learning library) via im2col + one GEMM.

    ``out[n, f, y, x] = b[f] + sum_{c, i, j} W[f, c, i, j] * xpad[n, c, y*s + i, x*s + j]``

    x: (N, C, H, W); W: (F, C, KH, KW); b: (F,) or None; ``stride`` and ``padding`` (zeros)
    an int or a pair.  Returns ``out (N, F, OH, OW), cache`` with
    ``OH = (H + 2 * padding - KH) // stride + 1`` (likewise OW).

    All patches are unfolded into a (C*KH*KW, N*OH*OW) matrix, so the convolution is the single
    matrix product ``W.reshape(F, -1) @ cols``: the work goes to BLAS.  The output is returned as
    a channels-first view of that (F, N, OH, OW) product (no copy).
    """
    _check_images(x, "conv2d_forward", W.shape[1])
    f, _, kh, kw = W.shape
    n, _, h, w = x.shape
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    cols = im2col(x, kh, kw, (sh, sw), (ph, pw))
    out = W.reshape(f, -1) @ cols
    if b is not None:
        out += b[:, None]
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    out = out.reshape(f, n, oh, ow).transpose(1, 0, 2, 3)
    return out, (cols, x.shape, W, b is not None, (sh, sw), (ph, pw))


def conv2d_backward(dout, cache, need_dx=True):
    r"""Gradients of :func:`conv2d_forward`, each one GEMM (plus col2im for dx).

    With ``D = dout`` as an (F, N*OH*OW) matrix: ``dW = D @ cols.T``, ``db = D.sum(1)``,
    ``dcols = W.T @ D`` folded back onto the image by :func:`col2im`.

    dout: (N, F, OH, OW)  ->  dx: (N, C, H, W) (None when ``need_dx`` is False: the first
    layer's input is data), dW: (F, C, KH, KW), db: (F,) or None.
    """
    cols, x_shape, W, has_bias, stride, padding = cache
    f, _, kh, kw = W.shape
    d = dout.transpose(1, 0, 2, 3).reshape(f, -1)
    dW = (d @ cols.T).reshape(W.shape)
    db = d.sum(axis=1) if has_bias else None
    dx = col2im(W.reshape(f, -1).T @ d, x_shape, kh, kw, stride, padding) if need_dx else None
    return dx, dW, db


def maxpool2d_forward(x, kernel_size=2, stride=None):
    r"""Max pooling: ``out[n, c, y, x] = max_{i, j < k} x[n, c, y*s + i, x*s + j]``.

    x: (N, C, H, W); ``stride`` defaults to ``kernel_size`` (non-overlapping windows);
    no padding (a border that does not fill a window is dropped, as in PyTorch).
    Returns ``out (N, C, OH, OW), cache``.  Ties go to the first maximum in the window.
    """
    _check_images(x, "maxpool2d_forward")
    xp = get_array_module(x)
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(kernel_size if stride is None else stride, "stride")
    n, c, h, w = x.shape
    oh, ow = conv_output_size(h, kh, sh), conv_output_size(w, kw, sw)
    if oh < 1 or ow < 1:
        raise ValueError(f"a {kh}x{kw} pooling window does not fit images of size {h}x{w}")
    out = None
    arg = xp.zeros((n, c, oh, ow), dtype=xp.int8 if kh * kw < 128 else xp.int32)
    for k in range(kh * kw):
        i, j = divmod(k, kw)
        win = x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
        if out is None:
            out = win.copy()
            continue
        better = win > out  # strict: the first maximum wins ties
        out = xp.where(better, win, out)
        arg[better] = k
    return out, (arg, x.shape, (kh, kw), (sh, sw))


def maxpool2d_backward(dout, cache):
    """Gradient of :func:`maxpool2d_forward`: each window's gradient goes to its maximum.
    dout: (N, C, OH, OW) -> dx: (N, C, H, W)."""
    xp = get_array_module(dout)
    arg, x_shape, (kh, kw), (sh, sw) = cache
    _, _, oh, ow = dout.shape
    dx = xp.zeros(x_shape, dtype=dout.dtype)
    for k in range(kh * kw):
        i, j = divmod(k, kw)
        dx[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += dout * (arg == k)
    return dx


def _channels_last(x):
    """(N, C, H, W) -> (N*H*W, C): one row per pixel, one column per channel."""
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])


def _channels_first(x2, shape):
    """Inverse of :func:`_channels_last`: (N*H*W, C) -> (N, C, H, W)."""
    n, c, h, w = shape
    return x2.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def batchnorm2d_forward(x, gamma, beta, running_mean, running_var, *, momentum=0.1, eps=1e-5,
                        training=True):
    r"""Spatial batch normalization: one mean and variance per CHANNEL, over N, H and W.

    A convolution applies the same filter at every position, so every pixel of a channel is an
    example of the same feature: each statistic averages ``m = N * H * W`` values (not N).
    The 1-d :func:`batchnorm_forward` does the work on the (N*H*W, C) reshape of x, so every
    convention carries over: momentum = weight of the new batch (0.1), biased variance for the
    batch, unbiased (m / (m - 1), m = N*H*W) for the running variance, as in PyTorch.

    x: (N, C, H, W); gamma, beta, running_mean, running_var: (C,).
    Returns ``out (N, C, H, W), cache, new_running_mean, new_running_var``.
    """
    _check_images(x, "batchnorm2d_forward", gamma.shape[0])
    n, _, h, w = x.shape
    if training and n * h * w < 2:
        raise ValueError(f"batchnorm2d_forward in training mode needs more than 1 value per channel "
                         f"(got images of shape {tuple(x.shape)}: N*H*W = {n * h * w}). Use a batch of "
                         "2 or more, or switch the layer to eval() mode.")
    out2, cache, rm, rv = batchnorm_forward(_channels_last(x), gamma, beta, running_mean,
                                            running_var, momentum=momentum, eps=eps,
                                            training=training)
    return _channels_first(out2, x.shape), (cache, x.shape), rm, rv


def batchnorm2d_backward(dout, cache):
    """Gradient of :func:`batchnorm2d_forward`: the 1-d closed form on the (N*H*W, C) reshape.
    dout: (N, C, H, W) -> dx: (N, C, H, W), dgamma: (C,), dbeta: (C,)."""
    cache1, shape = cache
    dx2, dgamma, dbeta = batchnorm_backward(_channels_last(dout), cache1)
    return _channels_first(dx2, shape), dgamma, dbeta


def groupnorm2d_forward(x, gamma, beta, num_groups, eps=1e-5):
    r"""Group normalization (Wu & He 2018) of images: per SAMPLE, one mean and variance for
    each group of ``C / num_groups`` channels, over those channels and all H*W positions.
    No batch statistics: the same for any batch size and in train and eval mode.
    ``num_groups=1`` is layer norm over (C, H, W); ``num_groups=C`` is instance norm.

    x: (N, C, H, W); gamma, beta: (C,) (per channel).  Returns ``out, cache``.
    """
    _check_images(x, "groupnorm2d_forward", gamma.shape[0])
    n, c, h, w = x.shape
    if c % num_groups:
        raise ValueError(f"groupnorm2d_forward: C={c} channels are not divisible by "
                         f"num_groups={num_groups}")
    xhat_t, _, _, inv_std = _normalize(x.reshape(n * num_groups, -1).T, eps)
    xhat = xhat_t.T.reshape(x.shape)
    out = xhat * gamma[:, None, None] + beta[:, None, None]
    return out, (xhat, gamma, inv_std, num_groups)


def groupnorm2d_backward(dout, cache):
    """Gradient of :func:`groupnorm2d_forward`: BN's closed form within each (sample, group).
    dout: (N, C, H, W) -> dx: (N, C, H, W), dgamma: (C,), dbeta: (C,)."""
    xhat, gamma, inv_std, num_groups = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=(0, 2, 3))
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))
    g_t = (dout * gamma[:, None, None]).reshape(n * num_groups, -1).T
    xhat_t = xhat.reshape(n * num_groups, -1).T
    dx = _rownorm_backward(g_t, xhat_t, inv_std).T.reshape(dout.shape)
    return dx, dgamma, dbeta
