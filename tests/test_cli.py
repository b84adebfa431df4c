"""The command line's common error handler (``ecse.cli``): one line ``ecse: error: ...`` and
exit status 2 for user errors in every command, ``--debug`` for the traceback,
``--version``, and the ``train`` summary built from the metrics a run has."""
import os

import pytest

from ecse import __version__
from ecse.cli import format_test_summary, main

TINY_PET = dict(cutoff=3.0, d_model=8, num_gnn_layers=1, num_transformer_layers=1, num_heads=2,
                dim_feedforward=8, head_hidden=8)

# command -> (module, function the command calls, arguments)
COMMANDS = {
    "demo": ("ecse.demos.methane", "run_methane_demo", ["demo", "--fast", "--output", "{tmp}/demo"]),
    "shapes": ("ecse.demos.shape_demo", "run_shape_demo", ["shapes", "--fast"]),
    "train": ("ecse.atomistic.config", "load_config", ["train", "{tmp}/config.yaml"]),
    "eval": ("ecse.atomistic.evaluation", "evaluate_checkpoint", ["eval", "{tmp}/best.pt", "{tmp}/data.xyz"]),
}


def _raiser(err):
    def fail(*args, **kwargs):
        raise err
    return fail


def _argv(command, tmp_path):
    return [a.format(tmp=tmp_path) for a in COMMANDS[command][2]]


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("err, line", [
    (ValueError("bad value in x.xyz[3]\n  (second line)"), "ecse: error: bad value in x.xyz[3] (second line)"),
    (KeyError("target 'mu' not found in x.xyz[0]"), "ecse: error: target 'mu' not found in x.xyz[0]"),
    (FileNotFoundError("data file not found: 'x.xyz'"), "ecse: error: data file not found: 'x.xyz'"),
    (PermissionError(13, "Permission denied", "/ro/out"), "ecse: error: [Errno 13] Permission denied: '/ro/out'"),
])
def test_every_command_turns_user_errors_into_one_line(command, err, line, tmp_path, monkeypatch, capsys):
    module, name, _ = COMMANDS[command]
    monkeypatch.setattr(f"{module}.{name}", _raiser(err))
    assert main(_argv(command, tmp_path)) == 2
    captured = capsys.readouterr()
    assert captured.err == line + "\n"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_debug_shows_the_traceback(command, tmp_path, monkeypatch, capsys):
    module, name, _ = COMMANDS[command]
    monkeypatch.setattr(f"{module}.{name}", _raiser(ValueError("bad value")))
    argv = _argv(command, tmp_path)
    for debug_argv in (["--debug", *argv], [argv[0], "--debug", *argv[1:]]):
        assert main(debug_argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("Traceback") and "ValueError: bad value" in err
        assert err.splitlines()[-1] == "ecse: error: bad value"


def test_an_internal_error_is_one_line_with_status_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("ecse.atomistic.config.load_config", _raiser(RuntimeError("bug")))
    assert main(["train", str(tmp_path / "c.yaml")]) == 1
    assert capsys.readouterr().err == "ecse: internal error: RuntimeError: bug (run with --debug for the traceback)\n"
    assert main(["--debug", "train", str(tmp_path / "c.yaml")]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"ecse {__version__}\n"


def test_bad_option_values_are_usage_errors(capsys):
    for argv in (["eval", "a.pt", "b.xyz", "--batch-size", "0"], ["demo", "--threads", "-2"],
                 ["shapes", "--points", "many"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        assert "error: argument" in capsys.readouterr().err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_output_folder(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert main(["demo", "--fast", "--output", str(folder / "out")]) == 2
        assert "is not writable" in capsys.readouterr().err
    finally:
        folder.chmod(0o700)


def test_format_test_summary_uses_the_metrics_present():
    energy = {"loss": 0.5, "energy_mae": 0.1, "energy_rmse": 0.2, "energy_mae_per_atom": 0.02,
              "energy_rmse_per_atom": 0.03, "forces_mae": 0.3, "forces_rmse": 0.4, "stress_mae": 0.5,
              "stress_rmse": 0.6}
    assert format_test_summary(energy) == ("test: energy MAE 0.1 (0.02/atom), RMSE 0.2; forces MAE 0.3, RMSE 0.4; "
                                           "stress MAE 0.5, RMSE 0.6; loss 0.5")
    assert format_test_summary({"loss": 2.0, "alpha_mae": 1.5, "alpha_rmse": 2.5}) == \
        "test: alpha MAE 1.5, RMSE 2.5; loss 2"


@pytest.mark.parametrize("tensor", [False, True])
def test_train_prints_the_summary_of_its_targets(tensor, tmp_path, capsys):
    # issue 16: a tensor target trained, wrote its checkpoints, then died with KeyError 'energy_mae'
    pytest.importorskip("ase")
    yaml = pytest.importorskip("yaml")
    import ase.io
    import numpy as np
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(0)
    frames = []
    for k in range(6):
        atoms = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
        atoms.rattle(0.05, seed=k)
        atoms.calc = SinglePointCalculator(atoms, energy=float(rng.normal()), forces=rng.normal(size=(3, 3)))
        atoms.info["mu"] = rng.normal(size=3)
        frames.append(atoms)
    ase.io.write(tmp_path / "data.extxyz", frames, format="extxyz")
    data = {"files": str(tmp_path / "data.extxyz"), "split_sizes": [4, 1, 1]}
    if tensor:
        data["targets"] = {"mu": "vector"}
    config = {"data": data, "model": TINY_PET, "optimiser": {"epochs": 1, "batch_size": 4},
              "run": {"output_dir": str(tmp_path / "run"), "dtype": "float64", "progress": False}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp_path / "config.yaml")]) == 0
    captured = capsys.readouterr()
    summary = captured.out.strip().splitlines()[-1]
    if tensor:
        assert summary.startswith("test: mu MAE ") and "RMSE" in summary and "energy" not in summary
    else:
        assert summary.startswith("test: energy MAE ") and "/atom)" in summary and "; forces MAE " in summary
    assert (tmp_path / "run" / "best.pt").is_file()
