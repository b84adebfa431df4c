"""The bad-input corpus: every case, what is done with it and the outcome it must have.

Each :class:`Case` names an input (a small file in this folder, or an input generated on
the fly: the 5000-atom structure, checkpoints, YAML configurations), an action (the
Python API: ``atoms_to_data``, ``load_dataset``, PET / ECSE(PET) energy and forces,
``ECSECalculator``; or a CLI command run in-process through ``ecse.cli.main``) and the
expected outcome: ``"result"`` (finite numbers), an exception class (``ValueError``,
``KeyError``, ``FileNotFoundError``) whose one-line message matches ``match``, or
``"exit 2"`` (the CLI printed one line ``ecse: error: ...`` matching ``match``) /
``"exit 0"``. :func:`run_case` returns the :class:`Outcome` that
``tests/test_corpus.py`` checks and ``scripts/corpus_report.py`` tabulates.

Models are tiny (PET ``d_model=8``, cutoff 3 Å, float64) so that the whole corpus runs in
seconds. Memory: the neighbour list refuses periodic cells with more than
``ecse.neighbors.MAX_NEIGHBORS`` estimated neighbours per atom before searching, so no
case allocates more than that many pairs per atom.
"""
from __future__ import annotations

import contextlib
import io
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

__all__ = ["CORPUS", "Case", "Outcome", "CASES", "Context", "make_context", "run_case"]

CORPUS = Path(__file__).resolve().parent
CUTOFF = 3.0
TINY_PET = dict(cutoff=CUTOFF, d_model=8, num_gnn_layers=1, num_transformer_layers=1, num_heads=2,
                dim_feedforward=8, head_hidden=8)
TARGETS = {"energy": "graph", "forces": "node"}


@dataclass(frozen=True)
class Case:
    name: str
    input: str  # a file of this folder, or a description of the generated input
    action: str
    expect: str  # "result", "exit 0", "exit 2" or an exception class name
    match: str = ""  # regular expression the message must contain
    run: Optional[Callable] = None  # (ctx) -> value; None: the default action on the file


@dataclass
class Outcome:
    kind: str  # "result", "exit N", or the exception class name
    message: str = ""
    lines: int = 0  # stderr lines of a CLI run


class Context:
    """Tiny models, a training checkpoint and a scratch folder shared by the cases."""

    def __init__(self, folder: Path):
        from ecse import ECSE
        from ecse.backbones import PET

        self.folder = Path(folder)
        torch.manual_seed(0)
        self.pet = PET(**TINY_PET).double().eval()
        self.ecse = ECSE(self.pet, cutoff=CUTOFF).double().eval()
        self.train_file = self.folder / "train.extxyz"
        self.tensor_file = self.folder / "tensor.extxyz"
        _write_training_data(self.train_file, self.tensor_file)
        self.checkpoint = self.folder / "ckpt" / "best.pt"
        code, err = cli(["train", str(self.config("ckpt"))])
        if code != 0 or not self.checkpoint.is_file():
            raise RuntimeError(f"the corpus checkpoint could not be trained: {err}")

    def config(self, name: str, data: Optional[dict] = None, text: Optional[str] = None, **sections) -> Path:
        """Write a YAML configuration (tiny PET, 1 epoch, float64) and return its path."""
        import yaml

        path = self.folder / f"{name}.yaml"
        if text is None:
            options = {"data": {"files": str(self.train_file), "split_sizes": [4, 1, 1], **(data or {})},
                       "model": dict(TINY_PET), "optimiser": {"epochs": 1, "batch_size": 4},
                       "run": {"output_dir": str(self.folder / name), "dtype": "float64", "progress": False}}
            for key, value in sections.items():
                options[key] = {**options.get(key, {}), **value}
            text = yaml.safe_dump(options)
        path.write_text(text)
        return path


def _write_training_data(path: Path, tensor_path: Path) -> None:
    import ase.io
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(0)
    frames, tensors = [], []
    for k in range(6):
        atoms = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
        atoms.rattle(0.05, seed=k)
        atoms.calc = SinglePointCalculator(atoms, energy=-14.0 + 0.1 * rng.normal(),
                                           forces=0.1 * rng.normal(size=(3, 3)))
        frames.append(atoms)
        plain = atoms.copy()
        plain.info["mu"] = rng.normal(size=3)
        tensors.append(plain)
    ase.io.write(path, frames, format="extxyz")
    ase.io.write(tensor_path, tensors, format="extxyz")


def make_context(folder) -> Context:
    return Context(Path(folder))


def cli(argv: list) -> tuple[int, str]:
    """Run ``ecse.cli.main(argv)`` in-process; returns ``(exit status, stderr)``."""
    from ecse.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
    return code, err.getvalue()


# ----------------------------------------------------------------------------- actions
def _load(path, **kw):
    from ecse.atomistic import load_dataset

    return load_dataset(path, TARGETS, **{"dtype": torch.float64, **kw})


def _finite(*values) -> None:
    for value in values:
        if not bool(torch.isfinite(torch.as_tensor(value)).all()):
            raise FloatingPointError("NaN or infinite output")


def _energy_forces(model, data) -> tuple:
    from torch_geometric.data import Batch

    from ecse.atomistic.derivatives import energy_and_forces

    energy, forces = energy_and_forces(model, Batch.from_data_list(list(data)))
    _finite(energy.detach(), forces.detach())
    return energy.detach(), forces.detach()


def _tiny_pet(**kw):
    from ecse.backbones import PET

    torch.manual_seed(0)
    return PET(**{**TINY_PET, **kw})


def _calculator(ctx, atoms, model=None):
    from ecse.atomistic import ECSECalculator

    atoms.calc = ECSECalculator(model or ctx.ecse, dtype=torch.float64)
    _finite(atoms.get_potential_energy(), atoms.get_forces())


def _read(file):
    import ase.io

    return ase.io.read(CORPUS / file)


def _eval(ctx, data, *extra):
    out = ctx.folder / "eval" / Path(str(data)).stem
    return cli(["eval", ctx.checkpoint, data, "--rotations", "0", "--no-plot", "--output", out, *extra])


# ----------------------------------------------------------------------------- files
_READ = "could not read '[^']*{}'"

#: file -> (outcome of load_dataset with energy + forces, pattern of the message)
FILES = {
    # reading / format
    "truncated.extxyz": ("ValueError", _READ.format("truncated.extxyz") + ".*expected 3"),
    "truncated_second_frame.extxyz": ("ValueError", _READ.format("truncated_second_frame.extxyz")),
    "bad_properties.extxyz": ("ValueError", _READ.format("bad_properties.extxyz") + ".*positions"),
    "not_a_number.extxyz": ("ValueError", _READ.format("not_a_number.extxyz") + ".*'abc'"),
    "empty_file.extxyz": ("ValueError", _READ.format("empty_file.extxyz") + ".*Empty file"),
    "garbage.extxyz": ("ValueError", _READ.format("garbage.extxyz")),
    "count_not_int.extxyz": ("ValueError", _READ.format("count_not_int.extxyz")),
    "count_too_small.extxyz": ("ValueError", _READ.format("count_too_small.extxyz")),
    "count_too_large.extxyz": ("ValueError", _READ.format("count_too_large.extxyz") + ".*expected 5"),
    "crlf_line_endings.extxyz": ("result", ""),
    "extra_column.extxyz": ("result", ""),
    "unknown_symbol.extxyz": ("ValueError", _READ.format("unknown_symbol.extxyz") + ".*Xx"),
    "x_symbol.extxyz": ("ValueError", r"unknown element\(s\) \['X'\].*x_symbol.extxyz\[0\]"),
    "z119_numbers.extxyz": ("ValueError", r"unknown element\(s\) \['Z=119'\].*z119_numbers.extxyz\[0\]"),
    # keys
    "plain_xyz.xyz": ("KeyError", r"'energy' not found in .*plain_xyz.xyz\[0\]"),
    "missing_energy.extxyz": ("KeyError", r"'energy' not found in .*missing_energy.extxyz\[0\]"),
    "misnamed_energy.extxyz": ("KeyError", r"'energy' not found in .*misnamed_energy.extxyz\[0\]"),
    "ref_energy_only.extxyz": ("KeyError", r"'energy' not found in .*ref_energy_only.extxyz\[0\]"),
    "missing_forces.extxyz": ("KeyError", r"'forces' not found in .*missing_forces.extxyz\[0\]"),
    "misnamed_forces.extxyz": ("KeyError", r"'forces' not found in .*misnamed_forces.extxyz\[0\]"),
    "energy_string.extxyz": ("ValueError", r"'energy' in .*energy_string.extxyz\[0\] is not numeric"),
    "second_frame_missing_energy.extxyz": ("KeyError", r"'energy' not found in .*missing_energy.extxyz\[1\]"),
    "forces_two_columns.extxyz": ("result", ""),  # a generic node target: the shape is checked by training
    "energy_vector.extxyz": ("result", ""),  # idem, a graph target
    # values
    "nan_position.extxyz": ("ValueError", r"NaN or infinite positions in .*nan_position.extxyz\[0\]: atom\(s\) \[1\]"),
    "inf_position.extxyz": ("ValueError", r"NaN or infinite positions in .*inf_position.extxyz\[0\]: atom\(s\) \[1\]"),
    "nan_forces.extxyz": ("ValueError", r"'forces' in .*nan_forces.extxyz\[0\] has NaN"),
    "inf_energy.extxyz": ("ValueError", r"'energy' in .*inf_energy.extxyz\[0\] has NaN or infinite"),
    "nan_energy.extxyz": ("ValueError", r"'energy' in .*nan_energy.extxyz\[0\] has NaN"),
    "nan_cell.extxyz": ("ValueError", r"NaN or infinite cell in .*nan_cell.extxyz\[0\]"),
    "nan_in_second_frame.extxyz": ("ValueError", r"'forces' in .*nan_in_second_frame.extxyz\[1\] has NaN"),
    # geometry
    "overlapping_atoms.extxyz": ("result", ""),
    "nearly_overlapping_atoms.extxyz": ("result", ""),
    "single_atom.extxyz": ("result", ""),
    "single_atom_periodic.extxyz": ("result", ""),
    "empty_structure.extxyz": ("ValueError", r"empty structure \(no atoms\) in .*empty_structure.extxyz\[0\]"),
    "singular_cell.extxyz": ("ValueError", r"singular cell in .*singular_cell.extxyz\[0\].*linearly dependent"),
    "right_handed_cell.extxyz": ("result", ""),
    "left_handed_cell.extxyz": ("result", ""),
    "left_handed_swapped_rows.extxyz": ("result", ""),
    "mixed_pbc.extxyz": ("result", ""),
    "huge_cell_one_atom.extxyz": ("result", ""),
    "tiny_cell_1A.extxyz": ("result", ""),  # 113 images within 3 A: allowed (at 5 A: refused, see below)
    "tiny_cell_half_A.extxyz": ("result", ""),  # loads; the neighbour list refuses it
    "zero_cell_with_pbc.extxyz": ("result", ""),
    "zero_vector_with_pbc.extxyz": ("result", ""),
    "skewed_cell.extxyz": ("result", ""),
    "linear_molecule.extxyz": ("result", ""),
    "far_apart_atoms.extxyz": ("result", ""),
    "large_coordinates.extxyz": ("result", ""),
}

_TOO_MANY = r"about 905 neighbours per atom within cutoff 3 \(estimated 905 pairs for 1 atoms\).*MAX_NEIGHBORS = 500"
#: files that load but that the models refuse: (outcome, pattern)
MODEL_ERRORS = {"tiny_cell_half_A.extxyz": ("ValueError", _TOO_MANY)}
#: files that load but that training/evaluation refuses (the targets' shapes): (outcome, pattern)
TARGET_ERRORS = {
    "forces_two_columns.extxyz": ("ValueError", r"forces"),
    "energy_vector.extxyz": ("ValueError", r"energy"),
}


def _file_cases() -> list[Case]:
    cases = []
    for file, (outcome, pattern) in FILES.items():
        stem = Path(file).stem
        cases.append(Case(f"{stem}/load_dataset", file, "load_dataset(energy, forces)", outcome, pattern,
                          lambda ctx, f=file: _load(CORPUS / f)))
        if outcome == "result" and file not in TARGET_ERRORS:
            model_outcome, model_pattern = MODEL_ERRORS.get(file, ("result", ""))
            cases.append(Case(f"{stem}/pet", file, "PET energy + forces", model_outcome, model_pattern,
                              lambda ctx, f=file: _energy_forces(ctx.pet, _load(CORPUS / f))))
            cases.append(Case(f"{stem}/ecse", file, "ECSE(PET) energy + forces", model_outcome, model_pattern,
                              lambda ctx, f=file: _energy_forces(ctx.ecse, _load(CORPUS / f))))
            cases.append(Case(f"{stem}/calculator", file, "ECSECalculator(ECSE(PET)) energy + forces",
                              model_outcome, model_pattern, lambda ctx, f=file: _calculator(ctx, _read(f))))
        if outcome == "result":
            eval_outcome, eval_pattern = MODEL_ERRORS.get(file, TARGET_ERRORS.get(file, ("result", "")))
        else:
            eval_outcome, eval_pattern = outcome, re.escape(stem)
        cases.append(Case(f"{stem}/cli-eval", file, "ecse eval CHECKPOINT FILE",
                          "exit 0" if eval_outcome == "result" else "exit 2", eval_pattern,
                          lambda ctx, f=file: _eval(ctx, CORPUS / f)))
    return cases


# ----------------------------------------------------------------------------- generated inputs
def _five_thousand(ctx):
    """5000 random atoms (H, C, O) at 0.05 atoms/A^3 in a periodic cube: PET in bounded time."""
    from ase import Atoms

    from ecse.atomistic import atoms_to_data

    rng = np.random.default_rng(0)
    edge = (5000 / 0.05) ** (1 / 3)
    atoms = Atoms(numbers=rng.choice([1, 6, 8], 5000), positions=rng.uniform(0, edge, (5000, 3)),
                  cell=[edge] * 3, pbc=True)
    _energy_forces(ctx.pet, [atoms_to_data(atoms, dtype=torch.float64)])


def _atoms_data(atoms, dtype=torch.float64, **kw):
    from ecse.atomistic import atoms_to_data

    return atoms_to_data(atoms, dtype=dtype, **kw)


def _z(numbers):
    from ase import Atoms

    return Atoms(numbers=numbers, positions=np.arange(3 * len(numbers), dtype=float).reshape(-1, 3))


def _handedness(ctx):
    """Left-handed cells are valid: the same lattice as the right-handed file, the same energy."""
    right = _load(CORPUS / "right_handed_cell.extxyz")
    for file in ("left_handed_cell.extxyz", "left_handed_swapped_rows.extxyz"):
        left = _load(CORPUS / file)
        assert float(torch.linalg.det(left[0].cell[0])) < 0
        for model in (ctx.pet, ctx.ecse):
            e_right, e_left = _energy_forces(model, right)[0], _energy_forces(model, left)[0]
            if abs(float(e_right - e_left)) > 1e-10 * max(1.0, abs(float(e_right))):
                raise AssertionError(f"{file}: energy {float(e_left)} differs from the right-handed {float(e_right)}")


def _raw_data(**overrides):
    from torch_geometric.data import Data

    data = Data(pos=torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]], dtype=torch.float64),
                z=torch.tensor([8, 1, 1]), cell=torch.eye(3, dtype=torch.float64)[None] * 4.0,
                pbc=torch.ones(1, 3, dtype=torch.bool))
    for key, value in overrides.items():
        data[key] = value
    return data


def _bytes_file(ctx, name, content: bytes) -> Path:
    path = ctx.folder / name
    path.write_bytes(content)
    return path


def _truncated_checkpoint(ctx):
    data = ctx.checkpoint.read_bytes()
    return _bytes_file(ctx, "truncated.pt", data[: len(data) // 2])


def _other_model_checkpoint(ctx):
    path = ctx.folder / "other_model.pt"
    torch.save({"state_dict": torch.nn.Linear(3, 1).state_dict(), "epoch": 3}, path)
    return path


def _mismatched_checkpoint(ctx):
    """A training checkpoint whose weights do not fit its configuration (d_model changed)."""
    ckpt = torch.load(ctx.checkpoint, map_location="cpu", weights_only=True)
    config = ckpt["config"]
    model = config.get("model", config) if isinstance(config.get("model"), dict) else config
    model["d_model"] = 16
    path = ctx.folder / "mismatched.pt"
    torch.save(ckpt, path)
    return path


def _file_in_the_way(ctx) -> Path:
    path = ctx.folder / "a_file"
    path.write_text("not a folder\n")
    return path


def _api_cases() -> list[Case]:
    from ase import Atoms

    f32 = torch.float32
    return [
        Case("five_thousand_atoms/pet", "generated: 5000 atoms, periodic cube, 0.05 atoms/A^3",
             "atoms_to_data + PET energy + forces", "result", "", _five_thousand),
        Case("z0/atoms_to_data", "generated: Atoms('XH')", "atoms_to_data", "ValueError",
             r"unknown element\(s\) \['X'\] \(atomic numbers \[0\]\)",
             lambda ctx: _atoms_data(Atoms("XH", positions=[[0, 0, 0], [1, 0, 0]]))),
        Case("z119/atoms_to_data", "generated: Atoms(numbers=[119, 1])", "atoms_to_data", "ValueError",
             r"unknown element\(s\) \['Z=119'\] \(atomic numbers \[119\]\).*supported: 1\.\.118",
             lambda ctx: _atoms_data(_z([119, 1]))),
        Case("empty_atoms/atoms_to_data", "generated: Atoms()", "atoms_to_data", "ValueError",
             r"empty structure", lambda ctx: _atoms_data(Atoms())),
        Case("empty_atoms/calculator", "generated: Atoms()", "ECSECalculator energy", "ValueError",
             r"empty structure", lambda ctx: _calculator(ctx, Atoms())),
        Case("nan_positions/calculator", "generated: H2O with a NaN coordinate", "ECSECalculator energy",
             "ValueError", r"NaN or infinite positions: atom\(s\) \[2\]",
             lambda ctx: _calculator(ctx, Atoms("OH2", positions=[[0, 0, 0], [1, 0, 0], [0, np.nan, 0]]))),
        Case("handedness/pet+ecse", "right_handed_cell.extxyz, left_handed_*.extxyz",
             "PET and ECSE(PET) energies of left- and right-handed cells of one lattice", "result", "", _handedness),
        Case("tiny_cell_1A/pet-cutoff-5", "tiny_cell_1A.extxyz", "PET(cutoff=5) energy", "ValueError",
             r"about 524 neighbours per atom within cutoff 5 \(estimated 524 pairs for 1 atoms\).*"
             r"MAX_NEIGHBORS = 500",
             lambda ctx: _energy_forces(_tiny_pet(cutoff=5.0).double(), _load(CORPUS / "tiny_cell_1A.extxyz"))),
        Case("tiny_cell_half_A/atoms_to_data-cutoff", "tiny_cell_half_A.extxyz", "atoms_to_data(cutoff=3)",
             "ValueError", r"tiny_cell_half_A.extxyz\[0\]: about 905 neighbours per atom",
             lambda ctx: _load(CORPUS / "tiny_cell_half_A.extxyz", cutoff=CUTOFF)),
        Case("singular_cell/pet-data", "generated: Data with parallel lattice vectors", "PET energy",
             "ValueError", r"structure 0 of the batch: singular cell",
             lambda ctx: _energy_forces(ctx.pet, [_raw_data(cell=torch.tensor(
                 [[[3.0, 0, 0], [6.0, 0, 0], [0, 0, 3.0]]], dtype=torch.float64))])),
        Case("nan_positions/pet-data", "generated: Data with an inf coordinate", "PET energy", "ValueError",
             r"NaN or infinite positions: atom\(s\) \[1\]",
             lambda ctx: _energy_forces(ctx.pet, [_raw_data(pos=torch.tensor(
                 [[0.0, 0, 0], [np.inf, 0, 0], [1.0, 1, 0]], dtype=torch.float64))])),
        Case("default_dtype/pet", "generated: CH4, atoms_to_data default dtype", "PET() (float32) energy",
             "result", "", lambda ctx: _finite(_tiny_pet()(_atoms_data(_z([6, 1, 1, 1, 1]), dtype=None)).detach())),
        Case("float32_into_float64/ecse", "generated: float32 CH4", "ECSE(PET).double() energy", "ValueError",
             r"float32.*float64|float64.*float32",
             lambda ctx: ctx.ecse(_atoms_data(_z([6, 1, 1, 1, 1]), dtype=f32))),
        Case("float64_into_float32/pet", "generated: float64 CH4", "PET() (float32) energy", "ValueError",
             r"float32.*float64|float64.*float32",
             lambda ctx: _tiny_pet()(_atoms_data(_z([6, 1, 1, 1, 1])))),
        Case("mixed_dtypes/ecse", "generated: float32 pos, float64 cell", "ECSE(PET) energy", "ValueError",
             r"float32.*float64|float64.*float32",
             lambda ctx: ctx.ecse.float()(_raw_data(pos=_raw_data().pos.float()))),
        Case("missing_file/load_dataset", "nope.extxyz (absent)", "load_dataset", "FileNotFoundError",
             r"data file not found: '.*nope.extxyz'", lambda ctx: _load(CORPUS / "nope.extxyz")),
        Case("bad_index/load_dataset", "crlf_line_endings.extxyz, index 'abc'", "load_dataset(index='abc')",
             "ValueError", r"crlf_line_endings.extxyz' with ASE \(index 'abc'\)",
             lambda ctx: _load(CORPUS / "crlf_line_endings.extxyz", index="abc")),
        Case("index_out_of_range/load_dataset", "crlf_line_endings.extxyz, index 5", "load_dataset(index=5)",
             "ValueError", r"crlf_line_endings.extxyz' with ASE \(index 5\): index out of range, the file has 1",
             lambda ctx: _load(CORPUS / "crlf_line_endings.extxyz", index=5)),
        Case("empty_selection/load_dataset", "crlf_line_endings.extxyz, index '3:5'", "load_dataset(index='3:5')",
             "ValueError", r"no structures in '.*crlf_line_endings.extxyz' with index '3:5'",
             lambda ctx: _load(CORPUS / "crlf_line_endings.extxyz", index="3:5")),
        Case("truncated_checkpoint/calculator", "generated: first half of a checkpoint",
             "ECSECalculator.from_checkpoint", "ValueError", r"truncated.pt",
             lambda ctx: _from_checkpoint(_truncated_checkpoint(ctx))),
    ]


def _from_checkpoint(path):
    from ecse.atomistic import ECSECalculator

    return ECSECalculator.from_checkpoint(path)


def _cli_cases() -> list[Case]:
    ck = lambda ctx: ctx.checkpoint  # noqa: E731
    good = CORPUS / "crlf_line_endings.extxyz"
    data_section = lambda **kw: (lambda ctx: cli(["train", ctx.config(**kw)]))  # noqa: E731
    return [
        # eval: checkpoints and options
        Case("missing_checkpoint/cli-eval", "nope.pt (absent)", "ecse eval", "exit 2",
             r"checkpoint not found: '.*nope.pt'", lambda ctx: cli(["eval", ctx.folder / "nope.pt", good])),
        Case("truncated_checkpoint/cli-eval", "generated: first half of a checkpoint", "ecse eval", "exit 2",
             r"could not read checkpoint '.*truncated.pt'",
             lambda ctx: cli(["eval", _truncated_checkpoint(ctx), good, "--no-plot"])),
        Case("random_bytes_checkpoint/cli-eval", "generated: 1 kB of random bytes", "ecse eval", "exit 2",
             r"could not read checkpoint '.*random.pt'",
             lambda ctx: cli(["eval", _bytes_file(ctx, "random.pt", np.random.default_rng(0).bytes(1024)), good,
                              "--no-plot"])),
        Case("other_model_checkpoint/cli-eval", "generated: torch.save of another model's state_dict",
             "ecse eval", "exit 2", r"other_model.pt' is not an ecse training checkpoint",
             lambda ctx: cli(["eval", _other_model_checkpoint(ctx), good, "--no-plot"])),
        Case("mismatched_checkpoint/cli-eval", "generated: checkpoint whose weights do not fit its config",
             "ecse eval", "exit 2", r"mismatched.pt|size mismatch|d_model",
             lambda ctx: cli(["eval", _mismatched_checkpoint(ctx), good, "--no-plot", "--rotations", "0"])),
        Case("missing_data/cli-eval", "nope.extxyz (absent)", "ecse eval", "exit 2",
             r"data file not found: '.*nope.extxyz'", lambda ctx: _eval(ctx, CORPUS / "nope.extxyz")),
        Case("bad_index/cli-eval", "crlf_line_endings.extxyz --index abc", "ecse eval", "exit 2",
             r"index 'abc'", lambda ctx: _eval(ctx, good, "--index", "abc")),
        Case("index_out_of_range/cli-eval", "crlf_line_endings.extxyz --index 7", "ecse eval", "exit 2",
             r"crlf_line_endings.extxyz.*index '7'\): index out of range",
             lambda ctx: _eval(ctx, good, "--index", "7")),
        Case("negative_rotations/cli-eval", "--rotations -1", "ecse eval", "exit 2", r"",
             lambda ctx: cli(["eval", ck(ctx), good, "--rotations", "-1"])),
        Case("unwritable_output/cli-eval", "--output below a file", "ecse eval", "exit 2",
             r"output folder '.*a_file/out' cannot be created: '.*a_file' is not a directory",
             lambda ctx: cli(["eval", ck(ctx), good, "--output", _file_in_the_way(ctx) / "out", "--no-plot"])),
        # train: configurations
        Case("missing_config/cli-train", "nope.yaml (absent)", "ecse train", "exit 2",
             r"config file not found: '.*nope.yaml'", lambda ctx: cli(["train", ctx.folder / "nope.yaml"])),
        Case("bad_yaml/cli-train", "generated: 'data: {files: [a.xyz'", "ecse train", "exit 2",
             r"bad_yaml.yaml", lambda ctx: cli(["train", ctx.config("bad_yaml", text="data: {files: [a.xyz\n")])),
        Case("yaml_list/cli-train", "generated: a YAML list", "ecse train", "exit 2", r"mapping|dict",
             lambda ctx: cli(["train", ctx.config("yaml_list", text="- data\n- model\n")])),
        Case("empty_yaml/cli-train", "generated: an empty YAML file", "ecse train", "exit 2", r"files|train_file",
             lambda ctx: cli(["train", ctx.config("empty_yaml", text="")])),
        Case("unknown_key/cli-train", "generated: optimiser.learning_rate", "ecse train", "exit 2",
             r"learning_rate", data_section(name="unknown_key", optimiser={"learning_rate": 0.1})),
        Case("wrong_type/cli-train", "generated: optimiser.lr: fast", "ecse train", "exit 2", r"lr",
             data_section(name="wrong_type", optimiser={"lr": "fast"})),
        Case("negative_epochs/cli-train", "generated: optimiser.epochs: -1", "ecse train", "exit 2", r"epochs",
             data_section(name="negative_epochs", optimiser={"epochs": -1})),
        Case("missing_data/cli-train", "generated: data.files nope.extxyz", "ecse train", "exit 2",
             r"data file not found: '.*nope.extxyz'",
             data_section(name="missing_data", data={"files": str(CORPUS / "nope.extxyz")})),
        Case("nan_data/cli-train", "nan_forces.extxyz", "ecse train", "exit 2",
             r"'forces' in .*nan_forces.extxyz\[0\] has NaN",
             data_section(name="nan_data", data={"files": str(CORPUS / "nan_forces.extxyz")})),
        Case("unknown_element/cli-train", "x_symbol.extxyz", "ecse train", "exit 2",
             r"unknown element\(s\) \['X'\].*x_symbol.extxyz\[0\]",
             data_section(name="unknown_element", data={"files": str(CORPUS / "x_symbol.extxyz")})),
        Case("truncated_data/cli-train", "truncated.extxyz", "ecse train", "exit 2",
             r"could not read '.*truncated.extxyz'",
             data_section(name="truncated_data", data={"files": str(CORPUS / "truncated.extxyz")})),
        Case("bad_index/cli-train", "generated: data.index 'abc'", "ecse train", "exit 2", r"index 'abc'",
             data_section(name="bad_index", data={"index": "abc"})),
        Case("missing_target/cli-train", "generated: targets {mu: vector} on a file without mu", "ecse train",
             "exit 2", r"'mu' not found in .*train.extxyz\[0\]",
             data_section(name="missing_target", data={"targets": {"mu": "vector"}})),
        Case("missing_forces/cli-train", "missing_forces.extxyz", "ecse train", "exit 2",
             r"'forces' not found in .*missing_forces.extxyz\[0\]",
             data_section(name="missing_forces", data={"files": str(CORPUS / "missing_forces.extxyz"),
                                                       "split_sizes": [1, 0, 0]})),
        Case("unwritable_output/cli-train", "generated: run.output_dir is a file", "ecse train", "exit 2",
             r"output folder '.*a_file' cannot be created",
             lambda ctx: cli(["train", ctx.config("unwritable", run={"output_dir": str(_file_in_the_way(ctx))})])),
        Case("tensor_target/cli-train", "generated: targets {mu: vector}", "ecse train (prints the test summary)",
             "exit 0", r"", lambda ctx: cli(["train", ctx.config(
                 "tensor", data={"files": str(ctx.tensor_file), "targets": {"mu": "vector"}})])),
        # demo, shapes, top level
        Case("unwritable_output/cli-demo", "--output below a file", "ecse demo", "exit 2",
             r"output folder '.*a_file/demo' cannot be created",
             lambda ctx: cli(["demo", "--fast", "--output", _file_in_the_way(ctx) / "demo"])),
        Case("zero_epochs/cli-shapes", "--epochs 0", "ecse shapes", "exit 2", r"",
             lambda ctx: cli(["shapes", "--fast", "--epochs", "0"])),
        Case("unknown_command/cli", "ecse frobnicate", "ecse", "exit 2", r"", lambda ctx: cli(["frobnicate"])),
    ]


CASES: list[Case] = _file_cases() + _api_cases() + _cli_cases()


# ----------------------------------------------------------------------------- running
def run_case(case: Case, ctx: Context) -> Outcome:
    """Run one case; an exception becomes the outcome (its class name and message)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = case.run(ctx)
    except (ValueError, KeyError, FileNotFoundError, FloatingPointError) as err:
        message = err.args[0] if isinstance(err, KeyError) and len(err.args) == 1 else str(err)
        return Outcome(type(err).__name__, str(message))
    except Exception as err:  # an unexpected type: reported as such, the test fails
        return Outcome(type(err).__name__, f"{err}")
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], int):  # a CLI run
        code, stderr = value
        lines = [line for line in stderr.splitlines() if line.strip()]
        return Outcome(f"exit {code}", lines[-1] if lines else "", len(lines))
    return Outcome("result")


#: cases rejected by argparse (usage line(s), then ``ecse COMMAND: error: ...``)
USAGE_ERRORS = ("negative_rotations", "zero_epochs", "unknown_command")


def check(case: Case, outcome: Outcome) -> Optional[str]:
    """``None`` when ``outcome`` is the expected one, else what is wrong."""
    if outcome.kind != case.expect:
        return f"expected {case.expect}, got {outcome.kind}: {outcome.message}"
    if case.expect == "exit 2" and case.name.split("/")[0] in USAGE_ERRORS:  # argparse: usage + error line
        if not re.match(r"ecse( \w+)?: error: ", outcome.message):
            return f"the last line is not argparse's error line: {outcome.message}"
    elif case.expect == "exit 2":
        if outcome.lines != 1:
            return f"expected one line on stderr, got {outcome.lines}"
        if not outcome.message.startswith("ecse: error: "):
            return f"the error line does not start with 'ecse: error: ': {outcome.message}"
    if case.match and not re.search(case.match, outcome.message):
        return f"the message does not match {case.match!r}: {outcome.message}"
    return None


def cleanup(ctx: Context) -> None:
    shutil.rmtree(ctx.folder, ignore_errors=True)
