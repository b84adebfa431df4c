"""State-dict keys that skip a wrapper's attribute, so checkpoints of the bare model load.

A wrapper that keeps the wrapped module as ``self.<child>`` would add ``<child>.`` to
every key; :func:`make_transparent` removes it when saving and adds it back when loading.
"""
from __future__ import annotations

from functools import partial

from torch import nn

__all__ = ["make_transparent"]


def make_transparent(wrapper: nn.Module, child: str) -> None:
    """Save and load ``wrapper``'s state as if ``wrapper.<child>`` were ``wrapper`` itself.

    Example:
        >>> import torch
        >>> class Wrap(torch.nn.Module):
        ...     def __init__(self, inner):
        ...         super().__init__()
        ...         self.inner = inner
        ...         make_transparent(self, "inner")
        >>> lin = torch.nn.Linear(2, 2)
        >>> sorted(Wrap(lin).state_dict()) == sorted(lin.state_dict())
        True
        >>> Wrap(torch.nn.Linear(2, 2)).load_state_dict(lin.state_dict())
        <All keys matched successfully>
    """
    tag = child + "."
    # module-level functions in partials: the hooks survive pickling (torch.save(model))
    wrapper.register_state_dict_post_hook(partial(_save, tag=tag))
    wrapper.register_load_state_dict_pre_hook(partial(_load, tag=tag))


def _save(module, state_dict, prefix, local_metadata, tag):
    for key in [k for k in state_dict if k.startswith(prefix + tag)]:
        state_dict[prefix + key[len(prefix + tag):]] = state_dict.pop(key)


def _load(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs, tag):
    for key in [k for k in state_dict if k.startswith(prefix)]:  # saved without the tag
        state_dict[prefix + tag + key[len(prefix):]] = state_dict.pop(key)
