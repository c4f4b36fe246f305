"""The exercises on vectors and steps: ReLU, dense and batch-norm backward, softmax with cross-entropy, dropout and
one SGD-with-momentum step.

The references are the library's own math (:mod:`numpycnn.functional`) and optimiser (:class:`numpycnn.optim.SGD`),
so an exercise agrees with what ``fit`` runs; the mistakes are wrong variants written next to each.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numpycnn.exercises.catalogue import Case, Exercise, Mistake
from numpycnn.functional import losses, norm
from numpycnn.layers.base import Layer
from numpycnn.layers.gradcheck import numeric_gradient
from numpycnn.optim.optimizers import SGD


# -- relu-backward -----------------------------------------------------------------------------------------------
def _relu_cases(rng: np.random.Generator) -> list[Case]:
    def away(shape: tuple[int, ...]) -> np.ndarray:  # no input within 0.1 of the kink
        x = rng.standard_normal(shape)
        return x + np.where(x >= 0, 0.1, -0.1)

    kink = away((3, 4))
    kink[0, :2] = kink[2, 3] = 0.0
    return [Case("a batch of vectors", {"dy": rng.standard_normal((4, 5)), "x": away((4, 5))}),
            Case("images (N, C, H, W)", {"dy": rng.standard_normal((2, 3, 4, 5)), "x": away((2, 3, 4, 5))}),
            Case("a batch of one", {"dy": rng.standard_normal((1, 7)), "x": away((1, 7))}),
            Case("inputs exactly at 0, the kink (the gradient there is 0)", {"dy": rng.standard_normal((3, 4)),
                                                                              "x": kink})]


def _relu_numeric(dy: np.ndarray, x: np.ndarray) -> tuple[Any]:
    x = x.copy()  # perturbed in place by numeric_gradient
    return (numeric_gradient(lambda: float(np.sum(np.maximum(x, 0) * dy)), x),)


RELU_BACKWARD = Exercise(
    name="relu-backward",
    title="ReLU backward: the mask",
    function="relu_backward",
    signature="def relu_backward(dy, x):",
    statement=("The forward pass was y = max(x, 0), elementwise. Return dx = dy * [x > 0]: the gradient passes\n"
               "where the input was positive and stops elsewhere, at x = 0 too (as in PyTorch)."),
    shapes="dy and x of any one shape; returns dx of that shape.",
    hint="A boolean array times a float array is 0 where False.",
    outputs=("dx",),
    cases=_relu_cases,
    reference=lambda dy, x: (dy * (x > 0),),
    mistakes=(
        Mistake("missing ReLU mask", lambda dy, x: (dy.copy(),),
                "Multiply dy by the mask x > 0 of the forward input."),
        Mistake("mask taken from dy instead of x", lambda dy, x: (dy * (dy > 0),),
                "The mask comes from the forward input x, not from the gradient."),
        Mistake("mask inverted", lambda dy, x: (dy * (x <= 0),),
                "The gradient passes where x > 0, where ReLU is the identity."),
        Mistake("multiplied by relu(x) instead of the mask", lambda dy, x: (dy * np.maximum(x, 0),),
                "The derivative of max(x, 0) is 1 or 0, not the output."),
        Mistake("gradient passed at x = 0 (mask x >= 0)", lambda dy, x: (dy * (x >= 0),),
                "At x = 0 the gradient is 0 by convention: use x > 0."),
    ),
    numeric=lambda dy, x: _relu_numeric(dy, x),
    look={"dx": "Look at the mask."},
)


# -- dense-backward ----------------------------------------------------------------------------------------------
def _dense_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for label, n, fin, fout in (("4 samples, 5 -> 3", 4, 5, 3), ("a batch of one, 3 -> 6", 1, 3, 6),
                                ("a square layer, 4 -> 4 (shapes cannot catch a transpose)", 6, 4, 4),
                                ("3 samples, 7 -> 2", 3, 7, 2)):
        cases.append(Case(label, {"dz": rng.standard_normal((n, fout)), "x": rng.standard_normal((n, fin)),
                                  "W": rng.standard_normal((fout, fin))}))
    return cases


def _dense(dz: np.ndarray, x: np.ndarray, W: np.ndarray) -> tuple[Any, ...]:
    return dz @ W, dz.T @ x, dz.sum(axis=0)  # (N, in), (out, in), (out,)


def _dense_numeric(dz: np.ndarray, x: np.ndarray, W: np.ndarray) -> tuple[Any, ...]:
    x, W, b = x.copy(), W.copy(), np.zeros(W.shape[0])

    def loss() -> float:
        return float(np.sum((x @ W.T + b) * dz))

    return numeric_gradient(loss, x), numeric_gradient(loss, W), numeric_gradient(loss, b)


DENSE_BACKWARD = Exercise(
    name="dense-backward",
    title="Dense (fully connected) backward: dx, dW and db",
    function="dense_backward",
    signature="def dense_backward(dz, x, W):",
    statement=("The forward pass was z = x W^T + b for a batch of row vectors x. Given dz = dL/dz, return\n"
               "(dx, dW, db): for one sample as a column, dL/dW = dz x^T, dL/dx = W^T dz and dL/db = dz; for the\n"
               "batch, the parameter gradients are summed over the samples."),
    shapes="dz (N, out); x (N, in); W (out, in); returns dx (N, in), dW (out, in), db (out,).",
    hint="Write the shapes of each product down: (out, N) @ (N, in) is (out, in).",
    outputs=("dx", "dW", "db"),
    cases=_dense_cases,
    reference=_dense,
    mistakes=(
        Mistake("transposed weight gradient", lambda dz, x, W: (dz @ W, x.T @ dz, dz.sum(axis=0)),
                "dW has W's shape (out, in): dz.T @ x, not x.T @ dz."),
        Mistake("input gradient with W transposed", lambda dz, x, W: (dz @ W.T, dz.T @ x, dz.sum(axis=0)),
                "Row n of dx is W^T dz_n, which on rows reads dz @ W."),
        Mistake("missing sum over the batch", lambda dz, x, W: (dz @ W, dz.T @ x, dz.copy()),
                "db is dz summed over the samples: dz.sum(axis=0)."),
        Mistake("gradient for only the first sample",
                lambda dz, x, W: (dz @ W, np.outer(dz[0], x[0]), dz[0].copy()),
                "Sum the outer products dz_n x_n^T over every sample n (dz.T @ x does it in one product)."),
        Mistake("averaged over the batch instead of summed (an extra 1/N)",
                lambda dz, x, W: (dz @ W, dz.T @ x / len(x), dz.mean(axis=0)),
                "The 1/N of a mean loss is already in dz; the layer sums."),
    ),
    numeric=_dense_numeric,
    look={"dx": "dx = dz @ W.", "dW": "dW = dz.T @ x.", "db": "db = dz.sum(axis=0)."},
)


# -- softmax-cross-entropy ---------------------------------------------------------------------------------------
def _ce_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for label, n, k, scale in (("4 samples, 3 classes", 4, 3, 1.0), ("a batch of one, 10 classes", 1, 10, 1.0),
                               ("large logits (about 1000): exp overflows unless the max is subtracted", 5, 4,
                                1000.0),
                               ("6 samples, 2 classes", 6, 2, 1.0)):
        cases.append(Case(label, {"z": scale * rng.standard_normal((n, k)), "y": rng.integers(0, k, size=n)}))
    return cases


def _ce(z: np.ndarray, y: np.ndarray) -> tuple[Any, ...]:
    loss, cache = losses.cross_entropy_forward(z, y)
    return loss, losses.cross_entropy_backward(cache)


def _ce_wrong(z: np.ndarray, y: np.ndarray, scale: float = 1.0, onehot: float = 1.0, axis: int = 1,
              rows: int | None = None) -> tuple[Any, ...]:
    n = len(z)
    shifted = z - z.max(axis=axis, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))  # (N, K)
    p = np.exp(log_p)
    t = np.eye(z.shape[1])[y]
    loss = -float(np.sum(log_p[np.arange(n), y])) / n * scale
    dz = (p - onehot * t) / n * scale
    if rows is not None:
        dz[rows:] = 0
    return loss, dz


def _ce_numeric(z: np.ndarray, y: np.ndarray) -> tuple[Any, ...]:
    z = z.copy()  # perturbed in place by numeric_gradient
    return None, numeric_gradient(lambda: losses.cross_entropy_forward(z, y)[0], z)


SOFTMAX_CROSS_ENTROPY = Exercise(
    name="softmax-cross-entropy",
    title="Softmax with cross-entropy: the loss and its gradient",
    function="softmax_cross_entropy",
    signature="def softmax_cross_entropy(z, y):",
    statement=("For logits z and integer labels y, p = softmax(z) row by row, p[n, k] = exp(z[n, k]) / sum_j\n"
               "exp(z[n, j]), and the loss is the mean over the batch L = -(1/N) sum_n log p[n, y[n]]. Return\n"
               "(L, dz) with dz = dL/dz = (p - t) / N, t the one-hot rows of y."),
    shapes="z (N, K) float; y (N,) int in [0, K); returns L a float and dz (N, K).",
    hint=("Subtract each row's maximum from z before exp (softmax does not change, exp cannot overflow);\n"
          "np.eye(K)[y] gives the one-hot rows."),
    outputs=("loss", "dz"),
    cases=_ce_cases,
    reference=_ce,
    mistakes=(
        Mistake("missing 1/N (the sum over the batch, not the mean)", lambda z, y: _ce_wrong(z, y, scale=len(z)),
                "The loss is a mean over the N samples, so both it and dz carry 1/N."),
        Mistake("gradient for only the first sample", lambda z, y: _ce_wrong(z, y, rows=1),
                "Every row n of dz is (p[n] - t[n]) / N."),
        Mistake("one-hot target not subtracted", lambda z, y: _ce_wrong(z, y, onehot=0.0),
                "The log of the true class's probability contributes -t: dz = (p - t) / N."),
        Mistake("softmax over the batch axis (axis 0) instead of the classes", lambda z, y: _ce_wrong(z, y, axis=0),
                "Normalise each row: sums and maxima over axis=1, with keepdims=True."),
    ),
    numeric=lambda z, y: _ce_numeric(z, y),
    look={"loss": "L = -mean of log p[n, y[n]].", "dz": "dz = (p - t) / N."},
)


# -- batchnorm-backward ------------------------------------------------------------------------------------------
def _bn_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for label, n, d in (("4 samples, 3 features", 4, 3), ("2 samples, 5 features", 2, 5),
                        ("8 samples, 1 feature", 8, 1), ("a batch of one (x_hat is 0, dx is 0)", 1, 3)):
        cases.append(Case(label, {"dy": rng.standard_normal((n, d)), "x": 2 * rng.standard_normal((n, d)) + 1,
                                  "gamma": rng.standard_normal(d), "eps": 1e-5}))
    return cases


def _bn(dy: np.ndarray, x: np.ndarray, gamma: np.ndarray, eps: float = 1e-5) -> tuple[Any, ...]:
    _, cache = norm.batch_norm_forward(x, gamma, np.zeros_like(gamma), eps)
    return norm.batch_norm_backward(dy, cache)


def _bn_wrong(dy: np.ndarray, x: np.ndarray, gamma: np.ndarray, eps: float, kind: str) -> tuple[Any, ...]:
    n = len(x)
    inv_std = 1 / np.sqrt(x.var(axis=0) + eps)  # (D,)
    x_hat = (x - x.mean(axis=0)) * inv_std  # (N, D)
    dbeta, dgamma = dy.sum(axis=0), (dy * x_hat).sum(axis=0)
    dx = gamma * inv_std * (dy - dbeta / n - x_hat * dgamma / n)
    if kind == "constants":
        dx = dy * gamma * inv_std
    elif kind == "no variance":
        dx = gamma * inv_std * (dy - dbeta / n)
    elif kind == "no 1/N":
        dx = gamma * inv_std * (dy - dbeta - x_hat * dgamma)
    elif kind == "no gamma":
        dx = inv_std * (dy - dbeta / n - x_hat * dgamma / n)
    elif kind == "dgamma is dbeta":
        dgamma = dbeta.copy()
    elif kind == "mean":
        dgamma, dbeta = dgamma / n, dbeta / n
    return dx, dgamma, dbeta


def _bn_numeric(dy: np.ndarray, x: np.ndarray, gamma: np.ndarray, eps: float) -> tuple[Any, ...]:
    x, gamma, beta = x.copy(), gamma.copy(), np.zeros_like(gamma)

    def loss() -> float:
        return float(np.sum(norm.batch_norm_forward(x, gamma, beta, eps)[0] * dy))

    return numeric_gradient(loss, x), numeric_gradient(loss, gamma), numeric_gradient(loss, beta)


def _bn_mistake(kind: str, name: str, look: str) -> Mistake:
    return Mistake(name, lambda dy, x, gamma, eps: _bn_wrong(dy, x, gamma, eps, kind), look)


BATCHNORM_BACKWARD = Exercise(
    name="batchnorm-backward",
    title="Batch norm backward (training mode): dx, dgamma and dbeta",
    function="batchnorm_backward",
    signature="def batchnorm_backward(dy, x, gamma, eps=1e-5):",
    statement=(
        "The forward pass, per feature over the N samples of the batch: mu = mean(x), var = mean((x - mu)^2),\n"
        "x_hat = (x - mu) / sqrt(var + eps), y = gamma * x_hat + beta. Return (dx, dgamma, dbeta):\n\n"
        "    dbeta  = sum_n dy\n"
        "    dgamma = sum_n dy * x_hat\n"
        "    dx     = gamma / (N sqrt(var + eps)) * (N dy - dbeta - x_hat * dgamma)\n\n"
        "mu and var depend on every x, which is where the last two terms come from."),
    shapes="dy (N, D); x (N, D); gamma (D,); returns dx (N, D), dgamma (D,), dbeta (D,).",
    hint="Recompute mu, var and x_hat from x first; the variance is the biased one, np.var's default.",
    outputs=("dx", "dgamma", "dbeta"),
    cases=_bn_cases,
    reference=_bn,
    mistakes=(
        _bn_mistake("constants", "mean and variance treated as constants",
                    "mu and var are functions of x: dx has the terms - dbeta / N and - x_hat dgamma / N."),
        _bn_mistake("no variance", "the path through the variance is missing",
                    "The variance depends on x too: dx has the term - x_hat * dgamma / N."),
        _bn_mistake("no 1/N", "missing 1/N in the terms of the mean and the variance",
                    "mu and var are means over N samples: the last two terms of dx carry 1/N."),
        _bn_mistake("no gamma", "gamma missing from dx", "y = gamma * x_hat + beta, so dx carries the factor gamma."),
        _bn_mistake("dgamma is dbeta", "dgamma without x_hat", "dgamma = sum_n dy * x_hat."),
        _bn_mistake("mean", "parameter gradients averaged over the batch instead of summed (an extra 1/N)",
                    "dgamma and dbeta are sums over the batch."),
    ),
    numeric=_bn_numeric,
    look={"dx": "Recompute x_hat and check the three terms of dx.", "dgamma": "dgamma = sum_n dy * x_hat.",
          "dbeta": "dbeta = sum_n dy."},
)


# -- dropout-forward ---------------------------------------------------------------------------------------------
def _dropout_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for label, shape, p in (("p = 0.5", (4, 5), 0.5), ("images, p = 0.2", (2, 3, 4, 4), 0.2),
                            ("a batch of one, p = 0.75", (1, 8), 0.75)):
        cases.append(Case(label, {"x": rng.standard_normal(shape), "keep": rng.random(shape) >= p, "p": p}))
    return cases


DROPOUT_FORWARD = Exercise(
    name="dropout-forward",
    title="Inverted dropout, training mode",
    function="dropout_forward",
    signature="def dropout_forward(x, keep, p):",
    statement=("In training, dropout zeroes each input with probability p and scales the survivors by 1 / (1 - p),\n"
               "so that the expected output is x and inference needs no change: y = x * keep / (1 - p). `keep` is\n"
               "the mask of survivors, already drawn."),
    shapes="x of any shape; keep a boolean array of that shape; p a float in [0, 1); returns y like x.",
    hint="E[keep] = 1 - p.",
    outputs=("y",),
    cases=_dropout_cases,
    reference=lambda x, keep, p: (x * keep / (1 - p),),
    mistakes=(
        Mistake("dropout without rescaling", lambda x, keep, p: (x * keep,),
                "Divide the survivors by 1 - p, or inference sees larger activations than training did."),
        Mistake("scaled by 1/p instead of 1/(1 - p)", lambda x, keep, p: (x * keep / p,),
                "p is the probability of dropping; survivors are kept with probability 1 - p."),
        Mistake("multiplied by 1 - p instead of divided", lambda x, keep, p: (x * keep * (1 - p),),
                "Inverted dropout divides by the keep probability 1 - p."),
        Mistake("mask inverted", lambda x, keep, p: (x * ~keep / (1 - p),), "keep is True for the survivors."),
    ),
    look={"y": "y = x * keep / (1 - p)."},
)


# -- sgd-momentum-step -------------------------------------------------------------------------------------------
class _Holder(Layer):
    """One parameter ``w`` and its gradient, for the optimiser."""

    def __init__(self, w: np.ndarray, grad: np.ndarray) -> None:
        super().__init__()
        self.add_param("w", w.copy())
        self.grads["w"][...] = grad


def _sgd(w: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float, momentum: float) -> tuple[Any, ...]:
    """One step of :class:`numpycnn.optim.SGD`, its momentum buffer set to ``velocity`` (zero: the first step)."""
    holder, opt = _Holder(w, grad), SGD(lr=lr, momentum=momentum)
    if np.any(velocity):
        opt.step([_Holder(w, np.zeros_like(w))])  # creates the buffer; then it is set to the given velocity
        opt.state["0.w"]["momentum_buffer"][...] = velocity
    opt.step([holder])
    v_new = opt.state["0.w"]["momentum_buffer"] if momentum else grad.copy()
    return holder.params["w"].copy(), np.array(v_new, copy=True)


def _sgd_cases(rng: np.random.Generator) -> list[Case]:
    return [Case("the first step (velocity 0)", {"w": rng.standard_normal((3, 4)), "grad": rng.standard_normal((3, 4)),
                                                 "velocity": np.zeros((3, 4)), "lr": 0.1, "momentum": 0.9}),
            Case("a later step (velocity not 0)", {"w": rng.standard_normal((2, 5)),
                                                   "grad": rng.standard_normal((2, 5)),
                                                   "velocity": rng.standard_normal((2, 5)), "lr": 0.05,
                                                   "momentum": 0.9}),
            Case("a vector, momentum 0.5", {"w": rng.standard_normal(6), "grad": rng.standard_normal(6),
                                            "velocity": rng.standard_normal(6), "lr": 0.2, "momentum": 0.5})]


SGD_MOMENTUM_STEP = Exercise(
    name="sgd-momentum-step",
    title="One step of SGD with momentum (PyTorch's form)",
    function="sgd_momentum_step",
    signature="def sgd_momentum_step(w, grad, velocity, lr, momentum):",
    statement=("SGD with momentum keeps a velocity per parameter. One step, in PyTorch's form (torch.optim.SGD,\n"
               "numpycnn.optim.SGD):\n\n"
               "    velocity_new = momentum * velocity + grad\n"
               "    w_new        = w - lr * velocity_new\n\n"
               "Return (w_new, velocity_new) as new arrays."),
    shapes="w, grad and velocity of one shape; lr and momentum floats; returns w_new and velocity_new of that shape.",
    hint="The step uses the new velocity, not the old one.",
    outputs=("w_new", "velocity_new"),
    cases=_sgd_cases,
    reference=_sgd,
    mistakes=(
        Mistake("momentum ignored (plain SGD)",
                lambda w, grad, velocity, lr, momentum: (w - lr * grad, grad.copy()),
                "The velocity carries the past: velocity_new = momentum * velocity + grad."),
        Mistake("the step uses the old velocity",
                lambda w, grad, velocity, lr, momentum: (w - lr * velocity, momentum * velocity + grad),
                "Update the velocity first, then step with the new one."),
        Mistake("the learning rate inside the velocity (CS231n's form, v = momentum v - lr grad, w += v)",
                lambda w, grad, velocity, lr, momentum: (w + momentum * velocity - lr * grad,
                                                         momentum * velocity - lr * grad),
                "This exercise uses PyTorch's form, whose velocity has no lr in it: velocity_new = momentum * "
                "velocity + grad, w_new = w - lr * velocity_new."),
        Mistake("step in the wrong direction",
                lambda w, grad, velocity, lr, momentum: (w + lr * (momentum * velocity + grad),
                                                         momentum * velocity + grad),
                "Gradient descent moves against the gradient: w - lr * velocity_new."),
        Mistake("velocity as a running average (momentum * v + (1 - momentum) * grad)",
                lambda w, grad, velocity, lr, momentum: (w - lr * (momentum * velocity + (1 - momentum) * grad),
                                                         momentum * velocity + (1 - momentum) * grad),
                "PyTorch's SGD (dampening 0) adds the whole gradient: velocity_new = momentum * velocity + grad."),
    ),
    look={"w_new": "w_new = w - lr * velocity_new.", "velocity_new": "velocity_new = momentum * velocity + grad."},
)

EXERCISES = (RELU_BACKWARD, DENSE_BACKWARD, SOFTMAX_CROSS_ENTROPY, BATCHNORM_BACKWARD, DROPOUT_FORWARD,
             SGD_MOMENTUM_STEP)
