"""Training configuration (``ecse.atomistic.config``): typed sections, documented options,
unknown keys, the flat form of earlier versions, and checkpoints old and bad."""
from __future__ import annotations

import ast
import dataclasses
import inspect
import warnings

import pytest
import torch

pytest.importorskip("ase")
yaml = pytest.importorskip("yaml")

from ecse.atomistic import _hypers, _sections  # noqa: E402
from ecse.atomistic._flat import FLAT_OPTIONS, SECTIONS  # noqa: E402
from ecse.atomistic.config import (DataOptions, ECSEOptions, PETHypers, TrainConfig, config_from_dict,  # noqa: E402
                                   load_config)
from ecse.atomistic.training import build_model, load_model  # noqa: E402

SECTION_CLASSES = [DataOptions, PETHypers, ECSEOptions, _sections.LossOptions, _sections.OptimiserOptions,
                   _sections.RunOptions]
TINY = {"d_model": 8, "num_gnn_layers": 1, "num_transformer_layers": 1, "num_heads": 2, "dim_feedforward": 8,
        "head_hidden": 8, "cutoff": 3.0}
#: ``TrainConfig.to_dict()`` of the flat configuration before the sections (as stored in its checkpoints)
OLD_FLAT = {'data': 'a.xyz', 'train_file': None, 'val_file': None, 'test_file': None, 'data_index': ':',
            'energy_key': 'energy', 'forces_key': 'forces', 'stress_key': 'stress', 'targets': None,
            'split_sizes': [0.8, 0.1, 0.1], 'seed': 0, 'model': TINY, 'scale_outputs': True,
            'ecse_in_loop': False, 'ecse': {'num_prunings': 0}, 'epochs': 100, 'batch_size': 8,
            'val_batch_size': None, 'optimizer': 'adam', 'lr': 0.001, 'weight_decay': 0.0, 'warmup_epochs': 0.0,
            'decay': 'cosine', 'min_lr_ratio': 0.0, 'decay_step_epochs': 10, 'decay_gamma': 0.5,
            'grad_clip': None, 'energy_weight': 0.1, 'forces_weight': 1.0, 'stress_weight': 0.0,
            'augment_rotations': True, 'augment_inversion': False, 'dtype': 'float64', 'device': 'cpu',
            'num_threads': None, 'output_dir': 'runs/pet', 'checkpoint_every': None, 'max_steps': None,
            'max_time': None, 'progress': None, 'backend': None}


def nested(**sections) -> dict:
    return {"data": {"files": "a.xyz"}, **sections}


@pytest.mark.parametrize("module", [_sections, _hypers])
def test_every_option_is_documented_where_it_is_defined(module):
    tree = ast.parse(inspect.getsource(module))
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    assert classes
    for cls in classes:
        body = cls.body
        fields = [i for i, node in enumerate(body) if isinstance(node, ast.AnnAssign)]
        assert len(fields) == len(dataclasses.fields(getattr(module, cls.name)))
        for i in fields:
            after = body[i + 1] if i + 1 < len(body) else None
            name = body[i].target.id
            assert isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) \
                and isinstance(after.value.value, str) and len(after.value.value) > 10, f"{cls.name}.{name}"


def test_model_section_is_pets_signature_and_ecse_section_ecses():
    from ecse import ECSE, FrameParams
    from ecse.backbones import PET

    pet = inspect.signature(PET).parameters
    assert PETHypers.keys() == list(pet)
    for f in dataclasses.fields(PETHypers):  # output and frame_average: None, resolved from the config
        assert f.default == (pet[f.name].default if f.name not in ("output", "frame_average") else None), f.name
    ecse = inspect.signature(ECSE).parameters
    frame_defaults = dataclasses.asdict(FrameParams())
    for f in dataclasses.fields(ECSEOptions):
        if f.name == "in_loop":
            continue
        expected = None if f.name == "cutoff" else ecse[f.name].default
        if expected is None and f.name in frame_defaults:  # ECSE: None means FrameParams' default
            expected = frame_defaults[f.name]
        assert f.default == expected, f.name
    assert ECSEOptions().kwargs(5.0)["num_prunings"] == 0 and ECSEOptions(cutoff=4.0).kwargs(5.0)["cutoff"] == 4.0


@pytest.mark.parametrize("cls", SECTION_CLASSES)
def test_unknown_key_lists_the_valid_keys_of_its_section(cls):
    options = nested(**{cls.section: {**({"files": "a.xyz"} if cls is DataOptions else {}), "bogus": 1}})
    with pytest.raises(ValueError) as err:
        config_from_dict(options)
    message = str(err.value)
    assert f"'bogus' in section '{cls.section}'" in message
    assert message.endswith("valid keys: " + ", ".join(cls.keys()))


def test_top_level_errors_name_the_sections_and_where_a_flat_option_went():
    with pytest.raises(ValueError, match=r"'lr' in config \(top level\); valid keys: data, model, ecse, loss, "
                                         r"optimiser, run \('lr' is now optimiser.lr\)"):
        config_from_dict(nested(lr=0.1))
    with pytest.raises(ValueError, match="'datta'.*valid keys: data, model"):
        config_from_dict(nested(datta={}))
    with pytest.raises(ValueError, match="mixes sections.*'optimiser'.*'epochs' -> optimiser.epochs"):
        config_from_dict({"data": "a.xyz", "epochs": 2, "optimiser": {"lr": 0.1}})
    with pytest.raises(TypeError, match="'epochs' \\(section 'optimiser'\\): expected int, got 'ten'"):
        config_from_dict(nested(optimiser={"epochs": "ten"}))
    with pytest.raises(TypeError, match="section 'run' of config must be a mapping"):
        config_from_dict(nested(run=3))
    with pytest.raises(ValueError, match="'d_model' \\(section 'model'\\) must be positive"):
        config_from_dict(nested(model={"d_model": 0}))


def test_flat_form_loads_with_one_warning_that_shows_the_sections(tmp_path):
    flat = {"data": "a.xyz", "data_index": ":10", "lr": 0.01, "epochs": 3, "ecse_in_loop": True,
            "model": TINY, "stress_weight": 0.0, "output_dir": "out"}
    with pytest.warns(DeprecationWarning) as record:
        config = config_from_dict(flat)
    (warning,) = record
    message = str(warning.message)
    assert "\n" not in message and "flat option form" in message
    shown = yaml.safe_load(message.split("in sections it reads: ", 1)[1])
    assert shown["optimiser"] == {"lr": 0.01, "epochs": 3} and shown["data"] == {"files": "a.xyz", "index": ":10"}
    assert config_from_dict(shown) == config  # the YAML shown is the same configuration
    assert config.ecse.in_loop and config.optimiser.lr == 0.01 and config.data.index == ":10"
    path = tmp_path / "flat.yaml"
    path.write_text(yaml.safe_dump(flat))
    with pytest.warns(FutureWarning, match="flat option form"):  # shown to users of `ecse train`
        assert load_config(path) == config
    with pytest.raises(ValueError, match=r"'learning_rate' in config \(flat form\); valid keys: .*\blr\b"):
        config_from_dict({"data": "a.xyz", "learning_rate": 0.1})


def test_flat_ecse_dict_keeps_its_meaning():
    quiet = {"flat_warning": None}
    # a flat ``ecse`` dict meant ECSE's defaults (4 pruning rounds) plus its entries; no entry: 0 rounds
    assert config_from_dict({"data": "a.xyz", "ecse": {}}, **quiet).ecse.num_prunings == 4
    assert config_from_dict({"data": "a.xyz", "ecse": {"mode": "local"}}, **quiet).ecse.num_prunings == 4
    assert config_from_dict({"data": "a.xyz"}, **quiet).ecse.num_prunings == 0
    assert config_from_dict(nested(ecse={})).ecse.num_prunings == 0
    assert config_from_dict({"data": "a.xyz", "ecse": {"num_prunings": 0}}, **quiet).ecse.num_prunings == 0
    # ... and the published angular switch of its time (sin^2 0.2, width 0.15; sectioned: 0.12 and 0.12)
    legacy = config_from_dict({"data": "a.xyz", "ecse": {"num_prunings": 0}}, **quiet).ecse
    assert (legacy.angle_threshold, legacy.angle_width) == (0.2, 0.15)
    sectioned = config_from_dict(nested(ecse={})).ecse
    assert (sectioned.angle_threshold, sectioned.angle_width) == (0.12, 0.12)


def test_nested_round_trip_and_flat_reads():
    config = config_from_dict(nested(data={"files": ["a.xyz", "b.xyz"], "targets": {"mu": "vector"}},
                                     optimiser={"lr": 1, "epochs": 3}, run={"max_time": 60}))
    assert config.optimiser.lr == 1.0 and isinstance(config.optimiser.lr, float)
    assert config.run.max_time == 60.0 and config.target_types == {"mu": "vector"}
    assert config.tensor_target == ("mu", "vector")
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict())))
    assert again == config and again.to_dict() == config.to_dict()
    assert set(config.to_dict()) == set(SECTIONS)
    for flat, (section, name) in FLAT_OPTIONS.items():  # the flat names still read (not write) the options
        if flat not in SECTIONS:
            assert getattr(config, flat) == getattr(getattr(config, section), name)
    with pytest.raises(AttributeError):
        config.learning_rate
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.optimiser.lr = 0.5
    from ecse.atomistic.targets import target_types

    assert target_types(config) == config.target_types  # code written for the flat config keeps working


def _checkpoint(tmp_path, config_dict):
    """A checkpoint as ``train`` writes it (its keys), with the model built here."""
    config = config_from_dict(config_dict, flat_warning=None)
    torch.manual_seed(0)
    model = build_model(config, {"H": -0.5, "C": -10.0})
    path = tmp_path / "last.pt"
    torch.save({"model": model.state_dict(), "config": config_dict, "baseline": {"H": -0.5, "C": -10.0},
                "scales": {}, "targets": config.target_types, "epoch": 1, "step": 0}, path)
    return path, model


def test_checkpoints_of_the_flat_form_still_load(tmp_path):
    from ase.build import molecule
    from torch_geometric.data import Batch

    from ecse.atomistic import atoms_to_data

    path, model = _checkpoint(tmp_path, OLD_FLAT)
    batch = Batch.from_data_list([atoms_to_data(molecule("CH4"), dtype=torch.float64)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # silently: the user cannot change an old checkpoint
        loaded = load_model(path)
    assert torch.equal(loaded(batch).detach(), model.eval()(batch).detach())
    wrapped = load_model(path, wrap=True)
    assert type(wrapped).__name__ == "ECSE" and wrapped.params.num_prunings == 0


def test_load_model_names_the_bad_file(tmp_path):
    path, _ = _checkpoint(tmp_path, config_from_dict(nested(model=TINY)).to_dict())
    load_model(path)
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_model(tmp_path / "nothere.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="could not read checkpoint .*truncated.pt"):
        load_model(truncated)
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(ValueError, match="could not read checkpoint .*notes.txt"):
        load_model(text)
    plain = tmp_path / "state.pt"
    torch.save(torch.load(path, weights_only=True)["model"], plain)  # a bare state_dict
    with pytest.raises(ValueError, match="state.pt' is not an ecse training checkpoint .*missing config"):
        load_model(plain)
    bad = tmp_path / "bad.pt"
    ckpt = torch.load(path, weights_only=True)
    torch.save({**ckpt, "config": {**ckpt["config"], "optimiser": {"epochs": "ten"}}}, bad)
    with pytest.raises(ValueError, match="checkpoint .*bad.pt.*'epochs'"):
        load_model(bad)
    other = tmp_path / "other.pt"
    torch.save({**ckpt, "config": config_from_dict(nested(model={**TINY, "d_model": 16})).to_dict()}, other)
    with pytest.raises(ValueError, match="other.pt'.* do not fit its configuration"):
        load_model(other)


def test_trainconfig_from_sections_and_mappings():
    a = TrainConfig(data=DataOptions(files="a.xyz"), model=PETHypers(**TINY))
    b = TrainConfig(data={"files": "a.xyz"}, model=TINY)
    assert a == b and a.model.d_model == 8
    with pytest.raises(ValueError, match="exactly one of 'files'"):
        TrainConfig()
    with pytest.raises(ValueError, match="'val_file'/'test_file' go with 'train_file'"):
        DataOptions(files="a.xyz", val_file="b.xyz")
    with pytest.raises(ValueError, match="'split_sizes' splits 'files'; with 'train_file'"):
        DataOptions(train_file="a.xyz", split_sizes=[5, 5, 5])  # would be ignored
    assert DataOptions(train_file="a.xyz", split_sizes=[0.8, 0.1, 0.1]).val_file is None


@pytest.mark.parametrize("output", [None, "scalar"])
def test_energy_model_output_may_be_unset_or_scalar(output):
    assert TrainConfig(data={"files": "a.xyz"}, model={"output": output}).model.output == output


@pytest.mark.parametrize("output", ["vector", "rank2-symmetric", "1x0e", "1x1o", "not-a-type"])
def test_energy_model_rejects_other_outputs(output):
    with pytest.raises(ValueError, match=f"an energy model predicts a scalar.*got output='{output}'"):
        TrainConfig(data={"files": "a.xyz"}, model={"output": output})


@pytest.mark.parametrize("ecse, expected", [
    ({"in_loop": True, "mode": "local"}, "tokens"),  # trained through the averaged tokens
    ({"in_loop": True, "mode": "global"}, "layers"),
    ({"in_loop": False, "mode": "local"}, "layers"),  # trained bare, wrapped after the fact
    ({"in_loop": False}, "layers"),
])
def test_frame_average_follows_how_the_model_is_trained(ecse, expected):
    config = config_from_dict(nested(model=TINY, ecse=ecse))
    pet = build_model(config, wrap=False)
    assert pet.frame_average == expected
    explicit = config_from_dict(nested(model={**TINY, "frame_average": "layers"}, ecse=ecse))
    assert build_model(explicit, wrap=False).frame_average == "layers"


def test_unset_frame_average_of_a_tensor_model_is_layers():
    hypers = PETHypers(**TINY)
    assert hypers.kwargs("vector", trained_local=True)["frame_average"] == "layers"
    assert hypers.kwargs(None, trained_local=True)["frame_average"] == "tokens"
    assert hypers.kwargs("scalar", trained_local=True)["frame_average"] == "tokens"


def test_bare_checkpoint_wrapped_in_averaged_tokens_warns(tmp_path):
    options = nested(model={**TINY, "frame_average": "tokens"}, ecse={"mode": "local"})
    path, _ = _checkpoint(tmp_path, config_from_dict(options).to_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(path)  # bare: no ensemble, no warning
    with pytest.warns(UserWarning, match="last.pt.*frame_average='tokens'.*frame_average: layers"):
        load_model(path, wrap=True)
    quiet = nested(model=TINY, ecse={"mode": "local"})  # unset: layers, nothing to warn about
    path, _ = _checkpoint(tmp_path, config_from_dict(quiet).to_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_model(path, wrap=True).backbone.frame_average == "layers"


def test_checkpoint_from_before_frame_average_loads_per_copy_layers(tmp_path):
    """Trained in the loop in local mode before the option existed: the weights are
    per-copy layers', not the new unset default's (tokens)."""
    options = config_from_dict(nested(model=TINY, ecse={"mode": "local", "in_loop": True})).to_dict()
    del options["model"]["frame_average"]
    path, _ = _checkpoint(tmp_path, options)
    assert load_model(path).backbone.frame_average == "layers"
    options["model"]["frame_average"] = None  # written by this version: resolved as trained
    path, _ = _checkpoint(tmp_path, options)
    assert load_model(path).backbone.frame_average == "tokens"
