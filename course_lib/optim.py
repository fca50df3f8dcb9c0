r"""Optimizers: one class per update rule, each with ``update(params, grads)``.

``params`` and ``grads`` are dicts with the same keys (``model.params`` /
``model.grads``); arrays are updated in place, so the model sees the change.
State (velocities, moments) is created lazily on the first update.

Weight decay lives here, with one convention: ``weight_decay = lambda`` adds
``lambda * W`` to the gradient of every *weight matrix* — the gradient of the L2
penalty ``1/2 * lambda * ||W||^2`` — and skips biases, BN's gamma and beta by
default (``decay_filter`` decides; the default decays keys ending in ``"W"``).
:class:`AdamW` instead decays the weights directly ("decoupled"):
``W <- W - lr * lambda * W``, which is not the same as L2 for adaptive methods.
"""
from __future__ import annotations

from course_lib._validate import check_real
from course_lib.backend import get_array_module


def decays_weights_only(name: str) -> bool:
    """Default decay filter: only weight matrices (keys like ``"linear0.W"``)."""
    return name == "W" or name.endswith(".W")


class Optimizer:
    """Base class.  Every hyperparameter is checked here, at the door: ``lr > 0`` and
    ``weight_decay >= 0``, finite (subclasses check momentum and betas in [0, 1) and
    ``eps > 0``); a bad value raises with the valid range instead of training to NaN."""

    def __init__(self, lr, weight_decay=0.0, decay_filter=decays_weights_only):
        lr = check_real("lr", lr, 0, None, lo_incl=False, meaning=" (the learning rate)")
        weight_decay = check_real("weight_decay", weight_decay, 0, None, example=1e-4)
        if not callable(decay_filter):
            raise TypeError(f"decay_filter must be a function name -> bool, got {decay_filter!r}; "
                            "leave it out to decay weight matrices only")
        self.lr, self.weight_decay, self.decay_filter = lr, weight_decay, decay_filter
        self.state: dict = {}
        self.t = 0

    def _grad(self, key, p, g):
        """The gradient with the L2 term ``weight_decay * W`` added, for decayed parameters."""
        if self.weight_decay and self.decay_filter(key):
            return g + self.weight_decay * p
        return g

    def update(self, params: dict, grads: dict):
        missing = set(params) - set(grads)
        if missing:
            raise KeyError(f"no gradient for {sorted(missing)}: call backward() before update()")
        self.t += 1
        for key, p in params.items():
            self._step(key, p, self._grad(key, p, grads[key]))

    def _step(self, key, p, g):
        raise NotImplementedError

    def _zeros(self, key, p, slot="v"):
        """The state array ``slot`` of parameter ``key``, created as zeros on first use."""
        # look up first: setdefault(k, zeros_like(p)) would allocate and zero a
        # parameter-sized array on every step only to throw it away
        state = self.state.get((key, slot))
        if state is None:
            xp = get_array_module(p)
            state = self.state[(key, slot)] = xp.zeros_like(p)
        return state

    def __repr__(self):
        extra = f", weight_decay={self.weight_decay}" if self.weight_decay else ""
        return f"{type(self).__name__}(lr={self.lr}{extra})"


class SGD(Optimizer):
    """``W <- W - lr * g``."""

    def _step(self, key, p, g):
        p -= self.lr * g


class Momentum(Optimizer):
    """Heavy-ball momentum, PyTorch's form: ``v <- mu * v + g``; ``W <- W - lr * v``.

    The DLFS book writes ``v <- mu * v - lr * g; W <- W + v``: the same steps for a fixed lr.
    """

    def __init__(self, lr, momentum=0.9, **kw):
        super().__init__(lr, **kw)
        # mu >= 1 makes the velocity grow without bound: the run diverges
        self.momentum = check_real("momentum", momentum, 0, 1, hi_incl=False,
                                   meaning=" (the fraction of the velocity kept)", example=0.9)

    def _step(self, key, p, g):
        v = self._zeros(key, p)
        v *= self.momentum
        v += g
        p -= self.lr * v


class Nesterov(Momentum):
    """Nesterov momentum (PyTorch's form): ``v <- mu * v + g``; ``W <- W - lr * (g + mu * v)``."""

    def _step(self, key, p, g):
        v = self._zeros(key, p)
        v *= self.momentum
        v += g
        p -= self.lr * (g + self.momentum * v)


class AdaGrad(Optimizer):
    """``h <- h + g^2``; ``W <- W - lr * g / (sqrt(h) + eps)``."""

    def __init__(self, lr, eps=1e-8, **kw):
        super().__init__(lr, **kw)
        self.eps = check_real("eps", eps, 0, None, lo_incl=False, example=1e-8)

    def _step(self, key, p, g):
        xp = get_array_module(p)
        h = self._zeros(key, p, "h")
        h += g * g
        p -= self.lr * g / (xp.sqrt(h) + self.eps)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction; ``weight_decay`` is L2 (added to g)."""

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, **kw):
        super().__init__(lr, **kw)
        # beta = 1 makes the bias correction 1 / (1 - beta**t) divide by zero
        self.beta1 = check_real("beta1", beta1, 0, 1, hi_incl=False, example=0.9)
        self.beta2 = check_real("beta2", beta2, 0, 1, hi_incl=False, example=0.999)
        # eps = 0 gives 0 / 0 = NaN for a parameter whose gradient is exactly 0
        self.eps = check_real("eps", eps, 0, None, lo_incl=False, example=1e-8)

    def _step(self, key, p, g):
        xp = get_array_module(p)
        m, v = self._zeros(key, p, "m"), self._zeros(key, p, "v")
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * (g * g)
        m_hat_scale = 1.0 / (1 - self.beta1 ** self.t)
        v_hat_scale = 1.0 / (1 - self.beta2 ** self.t)
        p -= self.lr * (m * m_hat_scale) / (xp.sqrt(v * v_hat_scale) + self.eps)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): the decay is
    applied to the weights, ``W <- W - lr * weight_decay * W``, not added to g."""

    def _grad(self, key, p, g):
        return g

    def _step(self, key, p, g):
        if self.weight_decay and self.decay_filter(key):
            p -= (self.lr * self.weight_decay) * p
        super()._step(key, p, g)


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
              "adam": Adam, "adamw": AdamW}


def make_optimizer(name, **kwargs) -> Optimizer:
    """An optimizer by name (case-insensitive), e.g. ``make_optimizer("momentum", lr=0.1)``."""
    if isinstance(name, Optimizer):
        return name
    cls = OPTIMIZERS.get(str(name).lower())
    if cls is None:
        raise ValueError(f"Unknown optimizer {name!r}; use one of {sorted(OPTIMIZERS)}")
    return cls(**kwargs)


def l2_penalty(params: dict, weight_decay: float, decay_filter=decays_weights_only):
    """L2 in the loss: returns ``(penalty, grads)`` with ``penalty = 1/2 * lambda * sum ||W||^2``
    and ``grads[key] = lambda * W`` for the decayed keys (add them to the model's grads).

    With plain SGD this is the same update as ``SGD(lr, weight_decay=lambda)``.
    """
    penalty, grads = 0.0, {}
    for key, p in params.items():
        if decay_filter(key):
            penalty += 0.5 * weight_decay * float((p * p).sum())
            grads[key] = weight_decay * p
    return penalty, grads
