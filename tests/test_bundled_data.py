"""The bundled demo data is a faithful copy of the published files, with its licence."""
import filecmp

import pytest

from ecse.atomistic.datasets import bundled_dataset


def test_bundled_methane_matches_the_source_and_carries_its_licence(shared_data):
    paths = bundled_dataset("methane")
    for split, path in paths.items():
        assert filecmp.cmp(path, shared_data / "methane" / path.name, shallow=False), split
    licence = (paths["train"].parent / "LICENSE.md").read_text()
    assert "MIT License" in licence and "Pozdnyakov" in licence


def test_bundled_methane_loads_with_energies_and_forces():
    ase_io = pytest.importorskip("ase.io")
    frames = ase_io.read(bundled_dataset("methane")["test"], index=":")
    assert len(frames) == 100 and all(len(a) == 5 for a in frames)
    assert frames[0].get_forces().shape == (5, 3) and isinstance(frames[0].get_potential_energy(), float)
    with pytest.raises(ValueError, match="unknown bundled data set"):
        bundled_dataset("qm9")
