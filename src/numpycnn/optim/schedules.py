"""Learning-rate schedules as closed forms of the epoch: step decay and cosine annealing, optional warmup.

A schedule is stateless: ``schedule.lr_at(epoch, base_lr)`` gives the learning rate for epoch ``epoch``
(counted from 0), so a resumed run gets the same rate as one never interrupted. The training loop (or the
learning-rate callback) assigns it to ``optimizer.lr`` before each epoch. Without warmup the values equal
those of ``torch.optim.lr_scheduler.StepLR`` and ``CosineAnnealingLR`` after ``epoch``
calls to ``scheduler.step()``.

Examples
--------
>>> sched = StepLR(step_size=3, gamma=0.5)
>>> [sched.lr_at(e, 0.1) for e in range(7)]
[0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]
"""

from __future__ import annotations

import math
from typing import Any

from numpycnn.core.checks import positive_int, real_in_range


class Schedule:
    """Base class: linear warmup, then ``_decay`` of the epochs after it (what a subclass implements).

    Parameters
    ----------
    warmup_epochs : int, default 0
        For ``epoch < warmup_epochs`` the rate rises linearly,
        :math:`\\eta_e = \\eta_0 (e + 1) / (w + 1)`; from epoch :math:`w` on the decay runs on :math:`e - w`.
    """

    def __init__(self, warmup_epochs: int = 0) -> None:
        self.warmup_epochs = positive_int(self.name, "warmup_epochs", warmup_epochs, minimum=0)

    @property
    def name(self) -> str:
        """The class name, as messages and ``repr`` show the schedule."""
        return type(self).__name__

    def lr_at(self, epoch: int, base_lr: float) -> float:
        """The learning rate for ``epoch`` (0-based) when the optimiser started at ``base_lr``."""
        epoch = positive_int(self.name, "epoch", epoch, minimum=0)
        base_lr = real_in_range(self.name, "base_lr", base_lr, 0.0)
        w = self.warmup_epochs
        if epoch < w:
            return base_lr * (epoch + 1) / (w + 1)
        return self._decay(epoch - w, base_lr)

    __call__ = lr_at

    def _decay(self, epoch: int, base_lr: float) -> float:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, so that ``type(s)(**s.get_config())`` rebuilds the schedule."""
        return {"warmup_epochs": self.warmup_epochs}

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class StepLR(Schedule):
    """Step decay: multiply the rate by ``gamma`` every ``step_size`` epochs.

    Notes
    -----
    .. math:: \\eta_e = \\eta_0\\, \\gamma^{\\lfloor e / s \\rfloor}

    Parameters
    ----------
    step_size : int
        :math:`s` >= 1, epochs between decays.
    gamma : float, default 0.1
        :math:`\\gamma` in (0, 1], the factor of each decay.
    warmup_epochs : int, default 0
        See :class:`Schedule`.

    Examples
    --------
    >>> StepLR(10).lr_at(25, 1.0)
    0.010000000000000002
    """

    def __init__(self, step_size: int, gamma: float = 0.1, warmup_epochs: int = 0) -> None:
        super().__init__(warmup_epochs)
        self.step_size = positive_int(self.name, "step_size", step_size)
        self.gamma = real_in_range(self.name, "gamma", gamma, 0.0, 1.0, low_inclusive=False)

    def _decay(self, epoch: int, base_lr: float) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)

    def get_config(self) -> dict[str, Any]:
        return {"step_size": self.step_size, "gamma": self.gamma, **super().get_config()}


class CosineLR(Schedule):
    """Cosine annealing from the base rate to ``eta_min`` over ``t_max`` epochs (Loshchilov & Hutter, 2017).

    Notes
    -----
    .. math:: \\eta_e = \\eta_{min} + \\tfrac12 (\\eta_0 - \\eta_{min})\\,(1 + \\cos(\\pi e / T_{max}))

    Past :math:`T_{max}` the cosine goes on (the rate rises again), as PyTorch's ``CosineAnnealingLR`` does;
    set ``t_max`` to the number of epochs.

    Parameters
    ----------
    t_max : int
        :math:`T_{max}` >= 1, the epoch at which the rate reaches ``eta_min``.
    eta_min : float, default 0.0
        :math:`\\eta_{min}` >= 0, the final rate.
    warmup_epochs : int, default 0
        See :class:`Schedule`; the cosine then spans epochs ``warmup_epochs`` to ``warmup_epochs + t_max``.

    Examples
    --------
    >>> CosineLR(t_max=10).lr_at(5, 0.1)
    0.05
    """

    def __init__(self, t_max: int, eta_min: float = 0.0, warmup_epochs: int = 0) -> None:
        super().__init__(warmup_epochs)
        self.t_max = positive_int(self.name, "t_max", t_max)
        self.eta_min = real_in_range(self.name, "eta_min", eta_min, 0.0)

    def _decay(self, epoch: int, base_lr: float) -> float:
        return self.eta_min + (base_lr - self.eta_min) * (1.0 + math.cos(math.pi * epoch / self.t_max)) / 2.0

    def get_config(self) -> dict[str, Any]:
        return {"t_max": self.t_max, "eta_min": self.eta_min, **super().get_config()}
