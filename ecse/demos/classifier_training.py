"""Training and evaluating a point-cloud classifier on lists of PyG ``Data`` (used by the demo)."""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

__all__ = ["train_classifier", "recalibrate_batchnorm", "evaluate", "predict", "accuracy"]

Log = Callable[[str], None]


def train_classifier(model: nn.Module,
                     train_set: Sequence[Data] | Callable[[int], Sequence[Data]],
                     epochs: int = 10, lr: float = 2e-3, batch_size: int = 16, seed: int = 0,
                     log: Log | None = print, desc: str = "",
                     recalibrate_bn: bool = True) -> list[dict]:
    """Train ``model`` with Adam (cosine learning rate) and cross entropy.

    Parameters
    ----------
    model : nn.Module
        PyG model mapping a batch to ``[num_graphs, num_classes]`` logits.
    train_set : sequence of Data, or callable
        Training clouds with ``pos`` and ``y``, used as given (no
        augmentation); or a function ``epoch -> clouds`` that draws the
        clouds of each epoch (e.g. a :class:`FrameViewSampler`).
    epochs, lr, batch_size, seed :
        Optimisation settings; ``seed`` fixes the batch order.
    log : callable, optional
        Receives one progress line per epoch.
    desc : str
        Prefix of the progress lines.
    recalibrate_bn : bool, default True
        Finally recompute the batch-norm statistics on the last epoch's
        clouds (:func:`recalibrate_batchnorm`): with few optimisation steps
        the running averages lag behind the weights.

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``loss``, ``train_acc``, ``time_s``.
    """
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    history = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        clouds = train_set(epoch) if callable(train_set) else train_set
        loader = DataLoader(list(clouds), batch_size=batch_size, shuffle=True, generator=g)
        model.train()
        total, correct, loss_sum = 0, 0, 0.0
        for batch in loader:
            opt.zero_grad()
            logits = model(batch)
            loss = nn.functional.cross_entropy(logits, batch.y)
            loss.backward()
            opt.step()
            total += batch.num_graphs
            loss_sum += loss.item() * batch.num_graphs
            correct += int((logits.argmax(-1) == batch.y).sum())
        sched.step()
        rec = dict(epoch=epoch, loss=loss_sum / total, train_acc=correct / total,
                   time_s=time.perf_counter() - start)
        history.append(rec)
        if log is not None:
            log(f"{desc}epoch {epoch:3d}/{epochs}  loss {rec['loss']:.3f}  "
                f"train acc {rec['train_acc']:.3f}  ({rec['time_s']:.0f}s)")
    if recalibrate_bn and epochs > 0:
        recalibrate_batchnorm(model, clouds, batch_size)
    model.eval()
    return history


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data_list: Sequence[Data],
                          batch_size: int = 16) -> None:
    """Recompute the running statistics of all batch-norm layers as averages over ``data_list``.

    Leaves ``model`` in eval mode; a model without batch norm is only put in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        model.train()
        for batch in DataLoader(list(data_list), batch_size=batch_size):
            model(batch)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    model.eval()


@torch.no_grad()
def evaluate(model: nn.Module, data_list: Sequence[Data], batch_size: int = 16) -> dict:
    """Predictions and accuracy of ``model`` (in eval mode) on ``data_list``.

    Returns
    -------
    dict
        ``pred`` (``[len(data_list)]`` predicted classes), ``accuracy``,
        ``frames_per_shape`` (the mean number of retained ECSE frames per
        cloud) and ``aux_weight_max`` (largest weight of ECSE's fallback
        model), read from ``model.last_stats`` after each batch (``None`` for
        a model without ``last_stats``).
    """
    model.eval()
    preds, frames, aux, n = [], 0.0, 0.0, 0
    for batch in DataLoader(list(data_list), batch_size=batch_size):
        preds.append(model(batch).argmax(-1))
        stats = getattr(model, "last_stats", None)
        if stats and frames is not None:
            frames += float(stats["frames_per_graph"]) * batch.num_graphs
            aux = max(aux, float(stats.get("aux_weight_max", 0.0)))
        else:
            frames = aux = None
        n += batch.num_graphs
    pred = torch.cat(preds)
    y = torch.cat([d.y for d in data_list])
    return dict(pred=pred, accuracy=float((pred == y).double().mean()),
                frames_per_shape=None if frames is None else frames / n, aux_weight_max=aux)


def predict(model: nn.Module, data_list: Sequence[Data], batch_size: int = 16) -> Tensor:
    """Predicted class of every cloud (model in eval mode), ``[len(data_list)]``."""
    return evaluate(model, data_list, batch_size)["pred"]


def accuracy(model: nn.Module, data_list: Sequence[Data], batch_size: int = 16) -> float:
    """Fraction of clouds whose predicted class equals ``y``."""
    return evaluate(model, data_list, batch_size)["accuracy"]
