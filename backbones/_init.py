"""Reinitialisation shared by the backbones: ``reset_parameters`` restores exactly the state
a new model of the same settings gets."""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

__all__ = ["reinitialise"]


def reinitialise(model: nn.Module, config: Mapping[str, Any]) -> None:
    """Copy into ``model`` the parameters and buffers of ``type(model)(**config)``, built now
    from the current random state and cast to ``model``'s dtype and device.

    Under the same seed this equals constructing a new model (whatever order the
    constructor draws its random numbers in, and however often: PyG's ``MLP`` initialises
    its layers twice), which re-running each submodule's ``reset_parameters`` does not
    guarantee.

    Examples
    --------
    >>> import torch
    >>> class Net(nn.Module):
    ...     def __init__(self, width=3):
    ...         super().__init__()
    ...         self.lin = nn.Linear(width, 1)
    >>> _ = torch.manual_seed(0); new = Net()
    >>> net = Net(); _ = torch.manual_seed(0); reinitialise(net, {"width": 3})
    >>> torch.equal(net.lin.weight, new.lin.weight)
    True
    """
    ref = next((t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()), None)
    fresh = type(model)(**config)
    if ref is not None:
        fresh = fresh.to(dtype=ref.dtype, device=ref.device)
    model.load_state_dict(fresh.state_dict())
