"""Optimisers: SGD (with momentum and Nesterov), Adam, AdamW and RMSProp, step for step as in ``torch.optim``.

An optimiser holds hyperparameters and, per parameter, its state (momenta, moments), keyed by the
parameter's state-dict name (``"0.weight"``), allocated on first use and updated in place. Layers never see a
learning rate: ``opt.step(model)`` reads every ``(name, value, grad)`` from
:func:`numpycnn.layers.base.iter_parameters` and writes the new values into the layers' own arrays. ``opt.lr`` is a
plain attribute that learning-rate schedules change.

Each step works in one (two for RMSProp) scratch array per parameter, also kept across steps, so a step
allocates nothing the size of a parameter.

Examples
--------
A training step by hand passes ``training=True`` (``model.forward(x)`` alone runs in inference mode: dropout off,
batch norm on its running statistics):

>>> opt = SGD(lr=0.1, momentum=0.9)
>>> model.zero_grad()  # doctest: +SKIP
>>> loss.forward(model.forward(x, training=True), y)  # doctest: +SKIP
>>> model.backward(loss.backward())  # doctest: +SKIP
>>> opt.step(model)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from numpycnn.core import backend, parallel
from numpycnn.core.checks import boolean, fail, real_in_range
from numpycnn.layers.base import Layer, iter_parameters

if TYPE_CHECKING:
    from numpycnn.model.sequential import Sequential


#: The least elements of a parameter per slice of an update on the workers (:mod:`numpycnn.core.parallel`): an
#: update is 6-12 element-wise passes, so 32 Ki elements (~0.1-0.2 ms of work here) outweigh a thread hand-off.
#: Most parameters of the shipped networks are one slice; deep_cnn's 3136 x 128 dense weight is one per core. A model
#: with fewer than twice as many parameters in all updates them in the calling thread.
UPDATE_SLICE = 1 << 15


class Optimizer:
    """Base class: per-parameter state, ``step``, ``state_dict`` and ``load_state_dict``.

    Subclasses set :attr:`n_scratch`, implement :meth:`slot_names`, :meth:`hyperparameters` (the constructor
    arguments, JSON-serialisable) and ``_update`` (one parameter's update, in place).

    Attributes
    ----------
    lr : float
        The learning rate, a plain attribute (schedules assign to it).
    state : dict of str to dict of str to ndarray
        ``state[param_name][slot]``, same shape and dtype as the parameter.
    steps : dict of str to int
        Number of updates applied to each parameter (``t`` in the bias corrections).

    Notes
    -----
    The state lives where the parameters live: it is created on their device at the first step, and after
    ``model.to(device)`` (or ``load_state_dict``, which keeps host arrays) each state array moves to the
    parameter's device once, at the next step. ``state_dict`` returns host copies.
    """

    #: Scratch arrays one update needs per parameter (kept across steps, never saved).
    n_scratch: ClassVar[int] = 1

    def __init__(self, lr: float) -> None:
        self.lr = real_in_range(self.name, "lr", lr, 0.0)
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.steps: dict[str, int] = {}
        self._scratch: dict[str, list[np.ndarray]] = {}

    @property
    def name(self) -> str:
        """The class name, as messages show the optimiser."""
        return type(self).__name__

    def slot_names(self) -> tuple[str, ...]:
        """Names of the state arrays kept per parameter, e.g. ``("exp_avg", "exp_avg_sq")``."""
        return ()

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments, so that ``type(opt)(**opt.hyperparameters())`` is the same optimiser."""
        raise NotImplementedError

    def _update(self, p: np.ndarray, g: np.ndarray, slots: dict[str, np.ndarray], scratch: list[np.ndarray],
                t: int) -> None:
        raise NotImplementedError

    # -- stepping --------------------------------------------------------------------------------------------
    def step(self, model: Sequential | Sequence[Layer]) -> None:
        """Update every trainable parameter of ``model`` (a ``Sequential`` or a list of layers) in place."""
        real_in_range(self.name, "lr", self.lr, 0.0)  # a schedule may have set it
        tasks, size = [], 0
        for name, p, g in iter_parameters(model):
            if g.shape != p.shape:
                raise ValueError(
                    f"{self.name}: gradient of {name!r} must have the parameter's shape {p.shape}. "
                    f"Got {g.shape}."
                )
            tasks += self._update_tasks(p, g, self._slots_for(name, p), self._scratch_for(name, p),
                                        self.steps.get(name, 0) + 1)
            size += p.size
        if size < 2 * UPDATE_SLICE:  # too little work for a hand-off (the original network: 13,610 parameters)
            for task in tasks:
                task()
        else:
            parallel.run(tasks)  # the updates, on the workers of numpycnn.core.parallel
        for name, _, _ in iter_parameters(model):
            self.steps[name] = self.steps.get(name, 0) + 1

    def _update_tasks(self, p: np.ndarray, g: np.ndarray, slots: dict[str, np.ndarray], scratch: list[np.ndarray],
                      t: int) -> list[Any]:
        """One parameter's update as tasks for :func:`numpycnn.core.parallel.run`: the flat arrays cut into
        slices of at least :data:`UPDATE_SLICE` elements. Every update is element-wise, so each slice's result
        is the same bits as the whole array's; an array of a device, or one that is not contiguous, is one task."""
        arrays = [p, g, *slots.values(), *scratch]
        parts = parallel.slices(p.size, 1, min_work=UPDATE_SLICE)
        if len(parts) == 1 or backend.get_array_module(p) is not np or not all(
                a.flags.c_contiguous for a in arrays):
            return [lambda: self._update(p, g, slots, scratch, t)]
        flat = [a.reshape(-1) for a in arrays]  # views: every array is contiguous
        names = list(slots)

        def update(s: slice) -> None:
            fp, fg, *rest = (a[s] for a in flat)
            self._update(fp, fg, dict(zip(names, rest[:len(names)], strict=True)), rest[len(names):], t)

        return [lambda s=s: update(s) for s in parts]

    def _slots_for(self, name: str, p: np.ndarray) -> dict[str, np.ndarray]:
        """The state of parameter ``name``, created on first use where ``p`` is (its device, its dtype)."""
        xp = backend.get_array_module(p)
        slots = self.state.get(name)
        if slots is None:
            slots = self.state[name] = {slot: xp.zeros_like(p) for slot in self.slot_names()}
            return slots
        for slot, value in slots.items():
            if value.shape != p.shape:
                raise ValueError(
                    f"{self.name}: state {name}.{slot} has shape {value.shape} but the parameter has shape "
                    f"{p.shape}. The optimiser was used with, or loaded from, a different model; "
                    "create a new one."
                )
            if backend.get_array_module(value) is not xp:  # model.to(device) or a loaded state: move once
                value = slots[slot] = backend.to_device(value, backend.device_of(p))
            if value.dtype != p.dtype:  # loaded from a file of another precision: convert once
                slots[slot] = value.astype(p.dtype)
        return slots

    def _scratch_for(self, name: str, p: np.ndarray) -> list[np.ndarray]:
        xp = backend.get_array_module(p)
        scratch = self._scratch.get(name)
        if (scratch is None or scratch[0].shape != p.shape or scratch[0].dtype != p.dtype
                or backend.get_array_module(scratch[0]) is not xp):
            scratch = self._scratch[name] = [xp.empty_like(p) for _ in range(self.n_scratch)]
        return scratch

    def _decayed_grad(self, p: np.ndarray, g: np.ndarray, weight_decay: float, out: np.ndarray) -> np.ndarray:
        """``out = g + weight_decay * p`` (coupled L2 decay), or a copy of ``g``; never changes ``g``."""
        xp = backend.get_array_module(p)
        if weight_decay != 0.0:
            xp.multiply(p, weight_decay, out=out)
            out += g
        else:
            xp.copyto(out, g)
        return out

    def reset_state(self) -> None:
        """Forget all per-parameter state, as if no step had been taken."""
        self.state.clear()
        self.steps.clear()
        self._scratch.clear()

    # -- saving ----------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"scalars": {...}, "arrays": {"<param name>.<slot>": ndarray}}``; JSON scalars, copied arrays."""
        scalars = {"type": self.name, "hyperparameters": {"lr": self.lr, **self.hyperparameters()},
                   "steps": dict(self.steps)}
        arrays = {f"{name}.{slot}": np.array(backend.to_host(value), copy=True)  # host copies
                  for name, slots in self.state.items() for slot, value in slots.items()}
        return {"scalars": scalars, "arrays": arrays}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters, step counts and state arrays from :meth:`state_dict` output.

        Everything is checked before anything changes; a ``ValueError`` or ``TypeError`` names the problem.
        """
        owner = f"{self.name}.load_state_dict"
        if not isinstance(state_dict, dict) or set(state_dict) != {"scalars", "arrays"}:
            fail(owner, "state_dict", 'a dict with keys "scalars" and "arrays"', state_dict, error=TypeError)
        scalars, arrays = state_dict["scalars"], state_dict["arrays"]
        if not isinstance(scalars, dict) or set(scalars) != {"type", "hyperparameters", "steps"}:
            fail(owner, "scalars", 'a dict with keys "type", "hyperparameters" and "steps"', scalars)
        if scalars["type"] != self.name:
            fail(owner, 'scalars["type"]', repr(self.name), scalars["type"],
                 hint="The state was saved by a different optimiser.")
        hyper = scalars["hyperparameters"]
        if not isinstance(hyper, dict):
            fail(owner, "hyperparameters", "a dict", hyper)
        fresh = type(self)(**hyper)  # validates every value with the constructor's messages
        steps = scalars["steps"]
        if not isinstance(steps, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 1
                for k, v in steps.items()):
            fail(owner, "steps", "a dict of parameter name to an integer >= 1", steps)
        state = self._parse_arrays(owner, arrays, steps, fresh.slot_names())
        hyper_attrs = {k: v for k, v in fresh.__dict__.items() if k not in ("state", "steps", "_scratch")}
        self.__dict__.update(hyper_attrs)
        self.state, self.steps, self._scratch = state, dict(steps), {}

    @staticmethod
    def _parse_arrays(owner: str, arrays: Any, steps: dict[str, int],
                      slot_names: tuple[str, ...]) -> dict[str, dict[str, np.ndarray]]:
        if not isinstance(arrays, dict):
            fail(owner, "arrays", "a dict of name to ndarray", type(arrays).__name__, error=TypeError)
        state: dict[str, dict[str, np.ndarray]] = {}
        for key, value in arrays.items():
            name, _, slot = str(key).rpartition(".")
            if slot not in slot_names or name not in steps:
                fail(owner, "arrays",
                     f"named '<param>.<slot>' with a param in `steps` and a slot in {slot_names}", key)
            if not isinstance(value, np.ndarray) or value.dtype not in (np.float32, np.float64):
                fail(owner, f"arrays[{key!r}]", "a float32 or float64 ndarray",
                     getattr(value, "dtype", type(value).__name__), error=TypeError)
            state.setdefault(name, {})[slot] = np.array(value, copy=True)
        for name in steps:
            missing = [s for s in slot_names if s not in state.get(name, {})]
            if missing:
                fail(owner, "arrays", f"complete: parameter {name!r} lacks slots {missing}", sorted(arrays))
        return state

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in {"lr": self.lr, **self.hyperparameters()}.items())
        return f"{self.name}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay.

    Notes
    -----
    For a parameter :math:`\\theta` with gradient :math:`g_t`, exactly as ``torch.optim.SGD``:

    .. math::

        g_t &\\leftarrow g_t + \\lambda \\theta_{t-1} \\\\
        b_t &= \\begin{cases} g_t & t = 1 \\\\ \\mu b_{t-1} + (1 - \\tau) g_t & t > 1 \\end{cases} \\\\
        g_t &\\leftarrow g_t + \\mu b_t \\ \\text{(Nesterov)} \\quad \\text{or} \\quad
            g_t \\leftarrow b_t \\\\
        \\theta_t &= \\theta_{t-1} - \\eta\\, g_t

    with learning rate :math:`\\eta` (``lr``), momentum :math:`\\mu`, dampening :math:`\\tau`, weight decay
    :math:`\\lambda`. Without momentum it is :math:`\\theta_t = \\theta_{t-1} - \\eta g_t`, the original
    network's rule.

    Parameters
    ----------
    lr : float
        Learning rate, >= 0.
    momentum : float, default 0.0
        :math:`\\mu` in [0, 1).
    nesterov : bool, default False
        Use Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.
    weight_decay : float, default 0.0
        L2 penalty :math:`\\lambda` >= 0, added to the gradient.
    dampening : float, default 0.0
        :math:`\\tau` in [0, 1].

    Attributes
    ----------
    state : dict
        ``state[name]["momentum_buffer"]`` (:math:`b`), only when ``momentum > 0``.

    Raises
    ------
    ValueError, TypeError
        For a hyperparameter out of range or of the wrong type.

    Examples
    --------
    >>> opt = SGD(lr=0.1, momentum=0.9, nesterov=True)
    >>> opt
    SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0, dampening=0.0)
    """

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 dampening: float = 0.0) -> None:
        super().__init__(lr)
        self.momentum = real_in_range(self.name, "momentum", momentum, 0.0, 1.0, high_inclusive=False)
        self.nesterov = boolean(self.name, "nesterov", nesterov)
        self.weight_decay = real_in_range(self.name, "weight_decay", weight_decay, 0.0)
        self.dampening = real_in_range(self.name, "dampening", dampening, 0.0, 1.0)
        if self.nesterov and (self.momentum == 0.0 or self.dampening != 0.0):
            fail(self.name, "nesterov", "False unless momentum > 0 and dampening == 0",
                 {"momentum": self.momentum, "dampening": self.dampening},
                 hint="Set momentum=0.9 (for example) and dampening=0.")

    def slot_names(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum != 0.0 else ()

    def hyperparameters(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "nesterov": self.nesterov, "weight_decay": self.weight_decay,
                "dampening": self.dampening}

    def _update(self, p: np.ndarray, g: np.ndarray, slots: dict[str, np.ndarray], scratch: list[np.ndarray],
                t: int) -> None:
        xp = backend.get_array_module(p)
        if self.weight_decay == 0.0 and self.momentum == 0.0:  # plain SGD, theta -= lr * g: no copy of g
            xp.multiply(g, -self.lr, out=scratch[0])
            p += scratch[0]
            return
        u = self._decayed_grad(p, g, self.weight_decay, scratch[0])  # u = g + lambda * theta
        if self.momentum != 0.0:
            b = slots["momentum_buffer"]
            if t == 1:
                xp.copyto(b, u)  # b_1 = g_1, undamped, as in torch
            else:
                b *= self.momentum
                if self.dampening != 0.0:
                    u *= 1.0 - self.dampening  # nesterov excludes dampening: u is not needed undamped
                b += u
            if self.nesterov:  # theta -= lr * (u + mu * b)
                u *= -self.lr
                p += u
                xp.multiply(b, -self.lr * self.momentum, out=u)
                p += u
                return
            u = b
        xp.multiply(u, -self.lr, out=scratch[0])
        p += scratch[0]


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba, 2015) and optional L2 weight decay, as ``torch.optim.Adam``.

    Notes
    -----
    .. math::

        g_t &\\leftarrow g_t + \\lambda \\theta_{t-1} \\\\
        m_t &= \\beta_1 m_{t-1} + (1 - \\beta_1) g_t \\\\
        v_t &= \\beta_2 v_{t-1} + (1 - \\beta_2) g_t^2 \\\\
        \\theta_t &= \\theta_{t-1} - \\frac{\\eta}{1 - \\beta_1^t}\\,
            \\frac{m_t}{\\sqrt{v_t} / \\sqrt{1 - \\beta_2^t} + \\epsilon}

    with :math:`m_0 = v_0 = 0`; the factors :math:`1 - \\beta^t` undo the bias of those zeros.

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate :math:`\\eta` >= 0.
    betas : pair of float, default (0.9, 0.999)
        :math:`(\\beta_1, \\beta_2)`, each in [0, 1).
    eps : float, default 1e-8
        :math:`\\epsilon` >= 0, added to the denominator.
    weight_decay : float, default 0.0
        L2 penalty :math:`\\lambda` >= 0 added to the gradient (use :class:`AdamW` for decoupled decay).

    Attributes
    ----------
    state : dict
        ``state[name]["exp_avg"]`` (:math:`m`) and ``state[name]["exp_avg_sq"]`` (:math:`v`).

    Examples
    --------
    >>> Adam(lr=3e-4).betas
    (0.9, 0.999)
    """

    decoupled: ClassVar[bool] = False

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            fail(self.name, "betas", "a pair of real numbers in [0, 1)", betas, error=TypeError)
        self.betas = (real_in_range(self.name, "betas[0]", betas[0], 0.0, 1.0, high_inclusive=False),
                      real_in_range(self.name, "betas[1]", betas[1], 0.0, 1.0, high_inclusive=False))
        self.eps = real_in_range(self.name, "eps", eps, 0.0)
        self.weight_decay = real_in_range(self.name, "weight_decay", weight_decay, 0.0)

    def slot_names(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def hyperparameters(self) -> dict[str, Any]:
        return {"betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def _update(self, p: np.ndarray, g: np.ndarray, slots: dict[str, np.ndarray], scratch: list[np.ndarray],
                t: int) -> None:
        xp = backend.get_array_module(p)
        beta1, beta2 = self.betas
        m, v, u = slots["exp_avg"], slots["exp_avg_sq"], scratch[0]
        if self.decoupled:
            p *= 1.0 - self.lr * self.weight_decay  # theta <- theta (1 - eta lambda)
            xp.copyto(u, g)
        else:
            self._decayed_grad(p, g, self.weight_decay, u)
        m -= u  # m <- u + beta1 (m - u) = beta1 m + (1 - beta1) u, torch's lerp
        m *= beta1
        m += u
        v *= beta2
        u *= u
        u *= 1.0 - beta2
        v += u  # v <- beta2 v + (1 - beta2) u^2
        step_size = self.lr / (1.0 - beta1**t)
        xp.sqrt(v, out=u)
        u /= math.sqrt(1.0 - beta2**t)
        u += self.eps  # u = sqrt(v) / sqrt(1 - beta2^t) + eps
        xp.divide(m, u, out=u)
        u *= -step_size
        p += u


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as ``torch.optim.AdamW``.

    Notes
    -----
    The weights shrink before the Adam step, instead of the penalty entering the moments:

    .. math::

        \\theta_{t-1} &\\leftarrow \\theta_{t-1} (1 - \\eta \\lambda) \\\\
        m_t &= \\beta_1 m_{t-1} + (1 - \\beta_1) g_t \\\\
        v_t &= \\beta_2 v_{t-1} + (1 - \\beta_2) g_t^2 \\\\
        \\theta_t &= \\theta_{t-1} - \\frac{\\eta}{1 - \\beta_1^t}\\,
            \\frac{m_t}{\\sqrt{v_t} / \\sqrt{1 - \\beta_2^t} + \\epsilon}

    Parameters
    ----------
    lr, betas, eps
        As for :class:`Adam`.
    weight_decay : float, default 1e-2
        Decoupled decay :math:`\\lambda` >= 0.

    Examples
    --------
    >>> AdamW().weight_decay
    0.01
    """

    decoupled: ClassVar[bool] = True

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(lr, betas, eps, weight_decay)


class RMSProp(Optimizer):
    """RMSProp (Hinton, 2012) with optional momentum and L2 weight decay, as ``torch.optim.RMSprop``.

    Notes
    -----
    .. math::

        g_t &\\leftarrow g_t + \\lambda \\theta_{t-1} \\\\
        v_t &= \\alpha v_{t-1} + (1 - \\alpha) g_t^2 \\\\
        b_t &= \\mu b_{t-1} + \\frac{g_t}{\\sqrt{v_t} + \\epsilon}, \\qquad
            \\theta_t = \\theta_{t-1} - \\eta b_t \\quad (\\mu > 0) \\\\
        \\theta_t &= \\theta_{t-1} - \\eta \\frac{g_t}{\\sqrt{v_t} + \\epsilon} \\quad (\\mu = 0)

    with :math:`v_0 = b_0 = 0` (no bias correction, as in PyTorch).

    Parameters
    ----------
    lr : float, default 1e-2
        Learning rate :math:`\\eta` >= 0.
    alpha : float, default 0.99
        Smoothing constant :math:`\\alpha` in [0, 1).
    eps : float, default 1e-8
        :math:`\\epsilon` >= 0.
    momentum : float, default 0.0
        :math:`\\mu` in [0, 1).
    weight_decay : float, default 0.0
        L2 penalty :math:`\\lambda` >= 0.

    Attributes
    ----------
    state : dict
        ``state[name]["square_avg"]`` (:math:`v`), and ``state[name]["momentum_buffer"]`` (:math:`b`) when
        ``momentum > 0``.

    Examples
    --------
    >>> RMSProp(momentum=0.9).slot_names()
    ('square_avg', 'momentum_buffer')
    """

    n_scratch: ClassVar[int] = 2

    def __init__(self, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        self.alpha = real_in_range(self.name, "alpha", alpha, 0.0, 1.0, high_inclusive=False)
        self.eps = real_in_range(self.name, "eps", eps, 0.0)
        self.momentum = real_in_range(self.name, "momentum", momentum, 0.0, 1.0, high_inclusive=False)
        self.weight_decay = real_in_range(self.name, "weight_decay", weight_decay, 0.0)

    def slot_names(self) -> tuple[str, ...]:
        return ("square_avg", "momentum_buffer") if self.momentum != 0.0 else ("square_avg",)

    def hyperparameters(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "eps": self.eps, "momentum": self.momentum,
                "weight_decay": self.weight_decay}

    def _update(self, p: np.ndarray, g: np.ndarray, slots: dict[str, np.ndarray], scratch: list[np.ndarray],
                t: int) -> None:
        xp = backend.get_array_module(p)
        v, (u, w) = slots["square_avg"], scratch
        self._decayed_grad(p, g, self.weight_decay, u)
        v *= self.alpha
        xp.multiply(u, u, out=w)
        w *= 1.0 - self.alpha
        v += w  # v <- alpha v + (1 - alpha) u^2
        xp.sqrt(v, out=w)
        w += self.eps
        xp.divide(u, w, out=u)  # u / (sqrt(v) + eps)
        if self.momentum != 0.0:
            b = slots["momentum_buffer"]
            b *= self.momentum
            b += u
            u = b
        xp.multiply(u, -self.lr, out=w)
        p += w
