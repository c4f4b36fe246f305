"""Learning-rate schedules: closed forms equal torch.optim.lr_scheduler, warmup, pinned errors."""

from __future__ import annotations

import math

import pytest

from numpycnn.optim.schedules import CosineLR, StepLR


def _torch_lrs(make_scheduler, base_lr: float, epochs: int) -> list[float]:
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    sched = make_scheduler(torch.optim.lr_scheduler, opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("step_size, gamma", [(1, 0.5), (3, 0.1), (7, 0.9)])
def test_step_lr_matches_torch(step_size, gamma):
    expected = _torch_lrs(lambda s, o: s.StepLR(o, step_size=step_size, gamma=gamma), 0.1, 25)
    ours = [StepLR(step_size, gamma).lr_at(e, 0.1) for e in range(25)]
    assert ours == pytest.approx(expected, rel=1e-12, abs=0)


@pytest.mark.parametrize("t_max, eta_min", [(10, 0.0), (7, 1e-3), (1, 0.0)])
def test_cosine_lr_matches_torch(t_max, eta_min):
    epochs = t_max + 1  # up to and including the minimum
    expected = _torch_lrs(lambda s, o: s.CosineAnnealingLR(o, T_max=t_max, eta_min=eta_min), 0.1, epochs)
    ours = [CosineLR(t_max, eta_min).lr_at(e, 0.1) for e in range(epochs)]
    assert ours == pytest.approx(expected, rel=1e-10, abs=1e-15)
    assert ours[-1] == pytest.approx(eta_min, abs=1e-15)


def test_cosine_closed_form_values():
    sched = CosineLR(t_max=4, eta_min=0.01)
    assert [sched.lr_at(e, 0.11) for e in range(5)] == pytest.approx(
        [0.11, 0.01 + 0.05 * (1 + math.cos(math.pi / 4)), 0.06, 0.01 + 0.05 * (1 - math.cos(math.pi / 4)),
         0.01])


def test_warmup_rises_linearly_then_decays():
    sched = CosineLR(t_max=4, warmup_epochs=3)
    lrs = [sched.lr_at(e, 0.4) for e in range(8)]
    assert lrs[:3] == pytest.approx([0.1, 0.2, 0.3])
    assert lrs[3:] == pytest.approx([CosineLR(4).lr_at(e, 0.4) for e in range(5)])
    assert StepLR(2, 0.5, warmup_epochs=1).lr_at(0, 1.0) == 0.5
    assert StepLR(2, 0.5, warmup_epochs=1).lr_at(3, 1.0) == 0.5


def test_repr_and_call():
    assert repr(StepLR(5)) == "StepLR(step_size=5, gamma=0.1, warmup_epochs=0)"
    assert CosineLR(10)(10, 0.1) == 0.0


@pytest.mark.parametrize("make, error, message", [
    (lambda: StepLR(0), ValueError, r"StepLR: `step_size` must be an integer >= 1. Got 0."),
    (lambda: StepLR(2.5), TypeError, r"StepLR: `step_size` must be an integer >= 1. Got 2.5."),
    (lambda: StepLR(2, gamma=0.0),
     ValueError, r"StepLR: `gamma` must be a real number in \(0.0, 1.0\]. Got 0.0."),
    (lambda: StepLR(2, gamma=1.5),
     ValueError, r"StepLR: `gamma` must be a real number in \(0.0, 1.0\]. Got 1.5."),
    (lambda: CosineLR(0), ValueError, r"CosineLR: `t_max` must be an integer >= 1. Got 0."),
    (lambda: CosineLR(5, eta_min=-1.0), ValueError,
     r"CosineLR: `eta_min` must be a real number in \[0.0, inf\)."),
    (lambda: CosineLR(5, warmup_epochs=-1), ValueError,
     r"CosineLR: `warmup_epochs` must be an integer >= 0. Got -1."),
    (lambda: StepLR(2).lr_at(-1, 0.1), ValueError, r"StepLR: `epoch` must be an integer >= 0. Got -1."),
    (lambda: CosineLR(2).lr_at(0, -0.1), ValueError,
     r"CosineLR: `base_lr` must be a real number in \[0.0, inf\). Got -0.1."),
])
def test_bad_arguments_raise(make, error, message):
    with pytest.raises(error, match=message):
        make()
