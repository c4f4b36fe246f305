"""Build the PyTorch ``nn.Sequential`` equivalent of a numpycnn model, with the same weights.

Used by the speed comparison only; numpycnn itself never imports torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numpycnn.core import backend


def to_torch(model: Any, copy_weights: bool = True) -> Any:
    """Return ``torch.nn.Sequential`` with one module per numpycnn layer (same state-dict names)."""
    import torch
    from torch import nn

    class GlobalAvgPool(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(2, 3))

    def module_for(kind: str, c: dict[str, Any]) -> nn.Module:
        if kind == "Conv2D":
            return nn.Conv2d(c["in_channels"], c["out_channels"], c["kernel_size"], stride=c.get("stride", 1),
                             padding=c.get("padding", 0), bias=c.get("bias", True))
        if kind == "Dense":
            return nn.Linear(c["in_features"], c["out_features"], bias=c.get("bias", True))
        if kind == "MaxPool2D":
            return nn.MaxPool2d(c.get("kernel_size", 2), c.get("stride"))
        if kind == "AvgPool2D":
            return nn.AvgPool2d(c.get("kernel_size", 2), c.get("stride"))
        if kind == "BatchNorm2D":
            return nn.BatchNorm2d(c["num_features"], eps=c.get("eps", 1e-5), momentum=c.get("momentum", 0.1))
        if kind == "BatchNorm1D":
            return nn.BatchNorm1d(c["num_features"], eps=c.get("eps", 1e-5), momentum=c.get("momentum", 0.1))
        if kind == "Dropout":
            return nn.Dropout(c.get("p", 0.5))
        if kind == "LeakyReLU":
            return nn.LeakyReLU(c.get("negative_slope", 0.01))
        simple = {"ReLU": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh, "Flatten": nn.Flatten,
                  "GlobalAvgPool2D": GlobalAvgPool}
        if kind == "Softmax":
            return nn.Softmax(dim=1)
        return simple[kind]()

    modules = [module_for(spec["type"], spec["config"]) for spec in model.get_config()["layers"]]
    net = nn.Sequential(*modules)
    if copy_weights:
        state = {name: torch.from_numpy(np.array(backend.to_host(value)))  # host copies, from any device
                 for name, value in model.state_dict().items()}
        net.load_state_dict(state, strict=True)
    return net.float()
