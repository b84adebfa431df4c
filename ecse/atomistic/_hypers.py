"""The model sections of a training configuration: PET's hyperparameters (``model``) and
the ECSE wrapper's options (``ecse``), each option documented where it is defined.

>>> PETHypers(d_model=64).kwargs()["d_model"], PETHypers().kwargs()["cutoff"]
(64, 5.0)
>>> ECSEOptions().kwargs(cutoff=5.0)["num_prunings"]
0
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

from ._options import Section

__all__ = ["PETHypers", "ECSEOptions"]


@dataclass(frozen=True)
class PETHypers(Section):
    """Hyperparameters of ``ecse.backbones.PET`` (its defaults: the published PET)."""

    section = "model"

    cutoff: float = 5.0
    """Neighbour cutoff in Å."""
    cutoff_width: float = 0.2
    """Width in Å of the cosine switch of the attention and of the edge readout
    (``0 < cutoff_width <= cutoff``)."""
    d_model: int = 128
    """Token width."""
    num_gnn_layers: int = 3
    """Message-passing layers."""
    num_transformer_layers: int = 3
    """Transformer layers per message-passing layer."""
    num_heads: int = 4
    """Attention heads (must divide ``d_model``)."""
    dim_feedforward: int = 512
    """Hidden width of the transformer feed-forward block (SiLU)."""
    head_hidden: int = 128
    """Hidden width of the two-hidden-layer atom and edge heads."""
    pre_ln: bool = False
    """Pre-LayerNorm transformer layers instead of PET's post-LayerNorm."""
    fused_attention: bool = False
    """Compute the (identical) cutoff-modulated attention with torch's fused
    ``scaled_dot_product_attention`` (faster and lighter for many neighbours)."""
    level: Literal["graph", "node"] = "graph"
    """``graph``: one output per structure (the sum over atoms); ``node``: per atom.
    Energies and tensor targets are per structure: leave it at ``graph``."""
    output: Optional[str] = None
    """What PET predicts: ``scalar``, ``vector``, ``rank2``, ``rank2-symmetric`` or an e3nn
    Irreps string. ``null`` (default): from the targets (``scalar`` for an energy, the
    tensor target's type otherwise); when given for a tensor target it must equal its type."""
    chunk_tokens: Union[int, Literal["auto"], None] = "auto"
    """Evaluate each message-passing layer on groups of atoms of about this many tokens,
    recomputing activations in the backward pass when there are several groups (bounded
    memory for large systems); ``auto`` (PET's default): 4096 at the published size, fewer
    for a wider or deeper PET and more for a smaller one, so that a group's memory stays
    about the same; ``null``: one call per layer, activations kept."""
    zero_init_heads: bool = False
    """Start the last layer of every head at zero, so a new model predicts exactly the
    composition baseline."""
    num_radial: int = 0
    """Gaussian functions of the interatomic distance added to the edge embedding's input
    (0: PET's linear edge embedding; else at least 2)."""
    frame_average: Optional[Literal["tokens", "layers"]] = None
    """How local mode uses an atom's frames: ``layers`` runs the transformer once per
    (atom, frame) copy (frames-per-atom times the cost) and fits weights trained bare;
    ``tokens`` (energies only) averages every edge token over them and runs the
    transformer once per atom (about two bare evaluations on solids): a different function,
    accurate and smooth only with weights trained through it. ``null`` (default):
    ``tokens`` when the model is trained through a local ensemble (``ecse.in_loop`` with
    ``ecse.mode: local``) and predicts an energy, else ``layers`` (PET's default)."""
    chunk_above: Union[int, Literal["auto"], None] = "auto"
    """Split a layer into groups of ``chunk_tokens`` only above this many tokens in all
    (smaller inputs run in one call, faster, activations kept); ``auto`` (PET's default):
    12288 at the published size, scaled as ``chunk_tokens`` and with the number of
    message-passing layers; ``null``: whenever they exceed ``chunk_tokens``."""

    def check(self) -> None:
        self.positive("d_model", "num_gnn_layers", "num_transformer_layers", "num_heads", "dim_feedforward",
                      "head_hidden")
        self.positive("num_radial", minimum=0)
        for key, minimum in (("chunk_tokens", 1), ("chunk_above", 0)):
            if getattr(self, key) != "auto":
                self.positive(key, minimum=minimum)

    def kwargs(self, output: Optional[str] = None, trained_local: bool = False) -> dict[str, Any]:
        """Keyword arguments of ``PET``; ``output`` (from the targets) fills an unset
        ``output``; ``trained_local`` (the model is trained through a local ensemble)
        resolves an unset ``frame_average``."""
        options = self.to_dict()
        chosen = options.pop("output") or output
        if options["frame_average"] is None:
            scalar = chosen in (None, "scalar")
            options["frame_average"] = "tokens" if trained_local and scalar else "layers"
        return {**options, **({"output": chosen} if chosen is not None else {})}


@dataclass(frozen=True)
class ECSEOptions(Section):
    """Options of ``ecse.ECSE`` around the trained PET: used in the loop with ``in_loop``
    and whenever a checkpoint is loaded wrapped (``load_model(..., wrap=True)``).

    The defaults are ECSE's: the published frame settings except ``angle_threshold`` and
    ``angle_width`` (0.12), ``cutoff_angle_start`` (0.03), ``radial_width`` (0.5) and
    ``num_prunings`` (0, no frame pruning). The published pruning (threshold 0.9, 4 rounds), 0.15 Å radial switches and
    an angular switch that holds the intramolecular pairs of water's hydrogens turn frames
    on and off over hundredths of an Å; with a backbone that is only approximately
    invariant this makes the wrapped forces steep there, which molecular dynamics feels
    (see the README). A structure then costs more frames; ``num_prunings: 4``,
    ``radial_width: 0.15``, ``angle_threshold: 0.2``, ``angle_width: 0.15`` and
    ``cutoff_angle_start: 0.2`` restore the published settings. The
    output type (``vector``, ...) follows the tensor target.
    """

    section = "ecse"

    in_loop: bool = False
    """Train through ``ECSE(PET)`` (fine-tuning of the symmetrised model) instead of the
    bare PET; checkpoints then hold the wrapped model."""
    cutoff: Optional[float] = None
    """Radius of the neighbours that define frames, in Å (``null``: PET's cutoff)."""
    mode: Literal["global", "local"] = "global"
    """``global``: PET runs once per retained frame of each structure; ``local``: every
    per-atom update runs in that atom's own frames (cost linear in system size)."""
    o3: bool = False
    """Also exact under reflections (adds the mirror image of every frame: twice the cost)."""
    aux: Optional[Literal["default"]] = "default"
    """Fallback for structures without a usable frame: ``default`` (a learned distance
    model plus PET's composition offsets) or ``null`` (such a structure raises an error)."""
    chunk_size: Optional[int] = 2048
    """Global mode: about this many tokens (nodes plus neighbour pairs, over all frame
    copies) per backbone call, recomputed in the backward pass when there are several
    chunks (bounded memory; ECSE's own default); ``null``: one call."""
    beta: float = 5.0
    """Sharpness of the smooth minimum in the adaptive cutoff, per length unit
    (``FrameParams.beta``)."""
    angle_threshold: float = 0.12
    """sin² of the angle from which a pair of neighbours is a good frame
    (``FrameParams.angle_threshold``; the published ECSE: 0.2)."""
    angle_width: float = 0.12
    """Width of the angular switch (``FrameParams.angle_width``; the published ECSE: 0.15)."""
    cutoff_angle_start: float = 0.03
    """sin² from which a pair starts to count for the adaptive inner cutoff
    (``FrameParams.cutoff_angle_start``; the published ECSE: the angle threshold, 0.2)."""
    radial_width: float = 0.5
    """Width of the radial switches and margin of the inner cutoff, in Å
    (``FrameParams.radial_width``; the published ECSE: 0.15)."""
    aux_threshold: float = 0.5
    """Largest frame weight from which the auxiliary model is off (``FrameParams.aux_threshold``)."""
    pruning_threshold: float = 0.9
    """Frames below this fraction of the largest weight are pruned (``FrameParams.pruning_threshold``)."""
    num_prunings: int = 0
    """Rounds of frame pruning (0: none; the published ECSE: 4)."""
    max_outer_cutoff: float = 10.0
    """The outer cutoff is ``min(cutoff, max_outer_cutoff)`` (``FrameParams.max_outer_cutoff``)."""
    length_scale: float = 1.0
    """Unit of the length-valued settings (``1/beta``, ``radial_width``,
    ``max_outer_cutoff``); the published values are for Å."""

    def check(self) -> None:
        self.positive("chunk_size")
        self.positive("num_prunings", minimum=0)
        if self.cutoff is not None and self.cutoff <= 0:
            raise ValueError(f"config option 'cutoff' (section 'ecse') must be positive, got {self.cutoff}")

    def kwargs(self, cutoff: float, output: Optional[str] = None) -> dict[str, Any]:
        """Keyword arguments of ``ECSE`` besides the backbone; ``cutoff``: PET's (used
        when the section's is ``null``), ``output``: the tensor target's type."""
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "in_loop"}
        options["cutoff"] = cutoff if self.cutoff is None else self.cutoff
        return {**options, **({"output": output} if output is not None else {})}
