"""Test accuracy of PET, ECSE-wrapped PET, SchNet and MACE at equal CPU wall-clock budgets.

    python benchmarks/accuracy.py [--minutes 30] [--threads 2] [--datasets methane water]
                                  [--models pet schnet mace] [--energy-weight 0.1]
                                  [--pet-radial 0]
                                  [--out runs/accuracy/accuracy.json]

Run by hand (30 minutes per model and data set by default: about 3 hours for everything
on 2 cores); prints a table and writes JSON. MACE needs ``bash benchmarks/setup_peers.sh``
first (its own venv ``.venv-mace``: mace-torch pins e3nn 0.4.4); without it the MACE rows
say so and the others still run.

Data (``--data``, default ``../shared/data``)
    methane: ``methane/methane_{train,val,test}.xyz`` (800 / 100 / 100, CH4);
    water: ``water_bulk_64/water_deepmd_400.xyz`` (192-atom periodic box), seeded split
    300 / 50 / 50 (``ecse.atomistic.split_dataset``, seed 0).
    The splits are written to ``--workdir`` as extxyz with ``REF_energy``/``REF_forces``,
    and every model reads those same files.

Protocol (the same for every model on a data set)
    composition baseline: least squares on the training split (``fit_composition_baseline``),
    fixed (PET's offsets, SchNet's frozen ``atomref``, MACE's E0s); loss
    ``0.1 * MSE(E/N) / sE**2 + 1.0 * MSE(F) / sF**2`` (``sE``, ``sF``: training-set stds of
    the residual per-atom energy and of the force components); forces by autograd; Adam,
    lr 1e-3 with a 1-epoch linear warm-up, gradient-norm clipping at 1.0 (as the demo
    and metatrain's PET; without it PET diverged repeatedly at lr 1e-3), cosine decay to
    0 over the number of epochs that fit the budget, rounded up (estimated
    from the median of 5 timed steps after 3 warm-up steps, and one validation batch, of a
    throw-away model); batch size 8
    (methane) or 1 (water), validation batches 50 / 5; float32, seed 0; the budget
    (``--minutes``) stops training after the step that exceeds it (PET: ``max_time`` of
    ``ecse.atomistic.train``, which also counts its data loading), part-way through the
    last planned epoch; validation after every completed epoch and at that stop; the test
    metrics are those of the best-validation state (the last state when no epoch
    completed). Before commit 45abd9c the plan was rounded down and the stopped state was
    not validated, which left up to an epoch of the budget unused; the methane rows in the
    README were measured that way. PET trains with random rotations (it is not
    invariant); SchNet and MACE are invariant by construction and train without them.
    ECSE-PET is the same PET checkpoint wrapped by ``ECSE(PET, cutoff=5)`` (global
    ensemble) at evaluation only. The global ensemble evaluates PET once per frame (about
    70 frames on the water box, minutes per structure on 2 cores), so on water only the
    first 5 test structures are evaluated with it (``--ecse-test N`` changes that for
    every data set); its row then gives bare PET on the same structures in
    ``pet_same_subset`` of the JSON and in the note under the table.

Models (CPU-scale versions of the published settings)
    PET: cutoff 5 Å (switch width 0.2), d_model 64, 2 GNN layers x 2 transformer layers,
    4 heads, feed-forward 128, heads' hidden width 64 (published: 128 wide, 3 x 3 layers,
    feed-forward 512); heads' last layers start at zero (``zero_init_heads``: with random
    heads a new PET starts 3.6 eV/atom off on the water box, about 1000 energy stds, and
    spent its whole 30-minute budget removing that offset, never learning the forces).
    ``--pet-radial N`` adds N Gaussians of the distance to PET's edge embedding
    (``PET(num_radial=N)``; default 0, the published linear embedding, which does not
    learn bulk-water forces: ``benchmarks/water_forces.py``).
    SchNet (``torch_geometric.nn.models.SchNet``): 128 features and filters, 3 interaction
    blocks, 50 Gaussians, cosine cutoff 5 Å, shifted-softplus head (published: 64-128
    features, 3-6 blocks); ecse's neighbour list (periodic images, no neighbour cap).
    MACE (``mace.modules.ScaleShiftMACE``, as ``mace_run_train --model MACE``): 64x0e+64x1o,
    max_ell 3, correlation 3, 2 interactions, r_max 5 Å, 8 Bessel functions, polynomial
    cutoff p=5, radial MLP [64, 64, 64], readout MLP 16x0e, scale = force std (published
    defaults: 128x0e+128x1o); its own training loop with the protocol above
    (``benchmarks/mace_worker.py``), not MACE's (no EMA, AMSGrad, SWA or its loss weights).

Metrics: energy MAE per atom (mean over test structures of ``|dE| / N``) in meV and
force-component MAE in meV/Å; ``train s`` is the budgeted training time, ``eval s`` the
test evaluation.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _peers import SchNetEnergy, metrics, probe_epochs, residual_scales, train_energy_model  # noqa: E402
from ecse.atomistic import fit_composition_baseline, load_dataset, split_dataset  # noqa: E402

ENERGY_KEY, FORCES_KEY = "REF_energy", "REF_forces"
KEYS = (ENERGY_KEY, FORCES_KEY)
TARGETS = {ENERGY_KEY: "graph", FORCES_KEY: "node"}
DATASETS = {
    "methane": dict(files=("methane/methane_train.xyz", "methane/methane_val.xyz", "methane/methane_test.xyz"),
                    sizes=(800, 100, 100), batch_size=8, val_batch_size=50, ecse_test=None,
                    ecse_batch_size=50),
    "water": dict(file="water_bulk_64/water_deepmd_400.xyz", sizes=(300, 50, 50), batch_size=1, val_batch_size=5,
                  ecse_test=5, ecse_batch_size=1),  # ECSE: one box at a time bounds the memory
}
COMMON = dict(lr=1e-3, energy_weight=0.1, forces_weight=1.0, seed=0, grad_clip=1.0, warmup_epochs=1.0)
PET_HYPER = dict(cutoff=5.0, cutoff_width=0.2, d_model=64, num_gnn_layers=2, num_transformer_layers=2, num_heads=4,
                 dim_feedforward=128, head_hidden=64, zero_init_heads=True)
SCHNET_HYPER = dict(cutoff=5.0, hidden_channels=128, num_filters=128, num_interactions=3, num_gaussians=50)
MACE_HYPER = dict(r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3, num_interactions=2,
                  hidden_irreps="64x0e+64x1o", correlation=3, MLP_irreps="16x0e", radial_MLP=[64, 64, 64])
ECSE_OPTIONS = dict(cutoff=5.0, chunk_size=4096, num_prunings=4)  # the published pruning (the stack's default: 0)


def write_splits(name: str, data_dir: Path, out_dir: Path, seed: int = 0) -> dict[str, str]:
    """Write the train/val/test split of data set ``name`` as extxyz with ``REF_*`` keys."""
    import ase.io

    spec = DATASETS[name]
    if "files" in spec:
        parts = [ase.io.read(data_dir / f, index=":") for f in spec["files"]]
    else:
        frames = ase.io.read(data_dir / spec["file"], index=":")
        parts = [[frames[i] for i in idx] for idx in split_dataset(list(range(len(frames))), spec["sizes"], seed)]
    paths = {}
    for split, frames, size in zip(("train", "val", "test"), parts, spec["sizes"]):
        if len(frames) != size:
            raise ValueError(f"{name} {split}: expected {size} structures, read {len(frames)}")
        for atoms in frames:
            atoms.info[ENERGY_KEY] = float(atoms.get_potential_energy())
            atoms.arrays[FORCES_KEY] = atoms.get_forces().copy()
            atoms.calc = None
        paths[split] = str(out_dir / f"{name}_{split}.xyz")
        ase.io.write(paths[split], frames, format="extxyz")
    return paths


def _row(dataset: str, model: str, test: dict, **extra) -> dict:
    return {"dataset": dataset, "model": model, "energy_mae_per_atom_meV": 1e3 * test["energy_mae_per_atom"],
            "forces_mae_meV_per_A": 1e3 * test["forces_mae"], **extra}


def pet_train_options(dataset: str, paths: dict, hyper: dict, *, epochs: int, weights: tuple[float, float],
                      max_time: float, output_dir) -> dict:
    """``ecse.atomistic.train`` options (sections) of the protocol above for PET with
    ``hyper`` on ``dataset`` (``paths``: its ``train``/``val`` split files); ``weights``:
    (energy, forces)."""
    spec = DATASETS[dataset]
    return dict(
        data=dict(train_file=paths["train"], val_file=paths["val"], energy_key=ENERGY_KEY, forces_key=FORCES_KEY,
                  augment_rotations=True),
        model=dict(hyper), ecse=dict(ECSE_OPTIONS),
        loss=dict(energy_weight=weights[0], forces_weight=weights[1]),
        optimiser=dict(epochs=epochs, batch_size=spec["batch_size"], val_batch_size=spec["val_batch_size"],
                       lr=COMMON["lr"], decay="cosine", grad_clip=COMMON["grad_clip"],
                       warmup_epochs=COMMON["warmup_epochs"]),
        run=dict(seed=COMMON["seed"], dtype="float32", max_time=max_time, output_dir=str(output_dir),
                 progress=False))


def run_pet(dataset: str, paths: dict, sets: dict, ctx: dict) -> list[dict]:
    from ecse.backbones import PET
    from ecse.atomistic.training import load_model, train

    spec, budget = DATASETS[dataset], ctx["budget"]

    hyper = ctx.get("pet_hyper", PET_HYPER)

    def make():
        pet = PET(**hyper)
        pet.set_composition_offsets(ctx["baseline"])
        return pet

    epochs, t_step = probe_epochs(make, sets["train"], sets["val"], spec["batch_size"], spec["val_batch_size"],
                                  COMMON["lr"], budget, ctx["scales"], ctx["weights"], KEYS)
    options = pet_train_options(dataset, paths, hyper, epochs=epochs, weights=ctx["weights"], max_time=budget,
                                output_dir=ctx["workdir"] / f"pet_{dataset}")
    options["run"]["num_threads"] = ctx["threads"]
    start = time.perf_counter()
    summary = train(options, log=lambda m: print("  " + m, flush=True))
    train_time = time.perf_counter() - start
    ckpt = summary["best_checkpoint"] if summary.get("best_epoch") else summary["last_checkpoint"]
    info = dict(params=sum(p.numel() for p in summary["model"].parameters()), epochs_planned=epochs,
                epochs_run=summary["epochs_completed"], steps=summary["global_step"], train_time_s=train_time,
                probe_step_time_s=t_step, checkpoint=os.path.basename(ckpt))
    n_ecse = ctx["ecse_test"] if ctx["ecse_test"] is not None else spec["ecse_test"]
    subset = sets["test"][:n_ecse] if n_ecse is not None else sets["test"]
    rows = []
    for label, wrap, data in (("PET", False, sets["test"]), ("ECSE-PET", True, subset)):
        model = load_model(ckpt, wrap=wrap)
        start = time.perf_counter()
        size = spec["ecse_batch_size"] if wrap else spec["val_batch_size"]
        test = metrics(model, data, size, ctx["scales"], ctx["weights"], *KEYS)
        rows.append(_row(dataset, label, test, n_test=len(data), eval_time_s=time.perf_counter() - start, **info))
        if wrap:
            rows[-1]["frames_per_graph"] = model.last_stats.get("frames_per_graph")
            if len(data) < len(sets["test"]):
                same = metrics(load_model(ckpt, wrap=False), data, spec["val_batch_size"], ctx["scales"],
                               ctx["weights"], *KEYS)
                rows[-1]["pet_same_subset"] = _row(dataset, "PET", same, n_test=len(data))
        print(f"  {label}: test E {rows[-1]['energy_mae_per_atom_meV']:.3f} meV/atom, "
              f"F {rows[-1]['forces_mae_meV_per_A']:.1f} meV/A on {len(data)} structures "
              f"({rows[-1]['eval_time_s']:.0f}s)", flush=True)
    return rows


def run_schnet(dataset: str, paths: dict, sets: dict, ctx: dict) -> list[dict]:
    spec = DATASETS[dataset]
    make = lambda: SchNetEnergy(ctx["baseline"], std=ctx["scales"][0], **SCHNET_HYPER)  # noqa: E731
    out = train_energy_model(make, sets["train"], sets["val"], batch_size=spec["batch_size"],
                             val_batch_size=spec["val_batch_size"], lr=COMMON["lr"], max_time=ctx["budget"],
                             scales=ctx["scales"], weights=ctx["weights"], seed=COMMON["seed"], keys=KEYS,
                             grad_clip=COMMON["grad_clip"], warmup_epochs=COMMON["warmup_epochs"],
                             log=lambda m: print(m, flush=True))
    start = time.perf_counter()
    test = metrics(out["model"], sets["test"], spec["val_batch_size"], ctx["scales"], ctx["weights"], *KEYS)
    params = sum(p.numel() for p in out["model"].parameters() if p.requires_grad)
    return [_row(dataset, "SchNet", test, n_test=len(sets["test"]), params=params,
                 epochs_planned=out["epochs_planned"], epochs_run=out["epochs_run"], steps=out["steps"],
                 train_time_s=out["train_time"], probe_step_time_s=out["probe_step_time"],
                 eval_time_s=time.perf_counter() - start)]


def run_mace(dataset: str, paths: dict, sets: dict, ctx: dict) -> list[dict]:
    python = Path(ctx["mace_python"])
    if not python.is_file():
        return [{"dataset": dataset, "model": "MACE",
                 "error": f"no {python}: run `bash benchmarks/setup_peers.sh` first"}]
    spec = DATASETS[dataset]
    job = {**paths, "baseline": {str(z): e for z, e in ctx["baseline"].items()}, "scales": list(ctx["scales"]),
           "energy_weight": ctx["weights"][0], "forces_weight": ctx["weights"][1], "lr": COMMON["lr"],
           "grad_clip": COMMON["grad_clip"], "warmup_epochs": COMMON["warmup_epochs"],
           "batch_size": spec["batch_size"], "val_batch_size": spec["val_batch_size"], "max_time": ctx["budget"],
           "seed": COMMON["seed"], "threads": ctx["threads"], "model": MACE_HYPER, "dtype": "float32"}
    spec_path = ctx["workdir"] / f"mace_{dataset}.json"
    spec_path.write_text(json.dumps(job, indent=1), encoding="utf-8")
    start = time.perf_counter()
    proc = subprocess.run([str(python), str(ROOT / "benchmarks" / "mace_worker.py"), "train", str(spec_path)],
                          stdout=subprocess.PIPE, text=True, timeout=3 * ctx["budget"] + 1800,
                          env={**os.environ, "OMP_NUM_THREADS": str(ctx["threads"])})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return [{"dataset": dataset, "model": "MACE", "error": f"mace_worker exited {proc.returncode}: "
                 f"{proc.stdout[-2000:]}"}]
    res = json.loads(lines[-1][len("RESULT "):])
    test = {"energy_mae_per_atom": res["test_energy_mae_per_atom"], "forces_mae": res["test_forces_mae"]}
    return [_row(dataset, "MACE", test, n_test=len(sets["test"]), params=res["params"],
                 epochs_planned=res["epochs_planned"], epochs_run=res["epochs_run"], steps=res["steps"],
                 train_time_s=res["train_time"], probe_step_time_s=res["probe_step_time"],
                 eval_time_s=res["eval_time"], wall_time_s=time.perf_counter() - start)]


RUNNERS = {"pet": run_pet, "schnet": run_schnet, "mace": run_mace}


def format_table(rows: list[dict]) -> str:
    """The printed table (one line per data set and model)."""
    head = f"{'data set':<9}{'model':<10}{'params':>9}{'epochs':>8}{'steps':>8}{'train s':>9}" \
           f"{'E meV/atom':>12}{'F meV/A':>10}{'test':>6}{'eval s':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['dataset']:<9}{r['model']:<10}  error: {r['error'][:200]}")
            continue
        epochs = f"{r['epochs_run']}/{r['epochs_planned']}"
        lines.append(f"{r['dataset']:<9}{r['model']:<10}{r['params']:>9,}{epochs:>8}{r['steps']:>8}"
                     f"{r['train_time_s']:>9.0f}{r['energy_mae_per_atom_meV']:>12.3f}{r['forces_mae_meV_per_A']:>10.1f}"
                     f"{r.get('n_test', 0):>6}{r.get('eval_time_s', float('nan')):>8.0f}")
    for r in rows:
        same = r.get("pet_same_subset")
        if same:
            lines.append(f"note: {r['dataset']} {r['model']} was evaluated on the first {same['n_test']} test "
                         f"structures; bare PET on them: E {same['energy_mae_per_atom_meV']:.3f} meV/atom, "
                         f"F {same['forces_mae_meV_per_A']:.1f} meV/A")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="training budget per model and data set")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=["methane", "water"])
    parser.add_argument("--models", nargs="+", choices=sorted(RUNNERS), default=["pet", "schnet", "mace"])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "accuracy" / "accuracy.json")
    parser.add_argument("--workdir", type=Path, default=None, help="split files and checkpoints (default: a tmp dir)")
    parser.add_argument("--ecse-test", type=int, default=None,
                        help="test structures evaluated with ECSE-PET (default: all; water: 5)")
    parser.add_argument("--energy-weight", type=float, default=COMMON["energy_weight"],
                        help="weight of the energy term of the loss (forces: 1.0), for every model")
    parser.add_argument("--pet-radial", type=int, default=PET_HYPER.get("num_radial", 0),
                        help="PET's num_radial: Gaussian distance functions in its edge embedding (0: published)")
    parser.add_argument("--mace-python", type=Path, default=ROOT / ".venv-mace" / "bin" / "python")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be positive")
    torch.set_num_threads(args.threads)
    common = {**COMMON, "energy_weight": args.energy_weight}  # the protocol of this run
    pet_hyper = {**PET_HYPER, "num_radial": args.pet_radial}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ecse-accuracy-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.minutes:g} min per model, work dir {workdir}",
          flush=True)
    rows: list[dict] = []
    for dataset in args.datasets:
        paths = write_splits(dataset, args.data, workdir, COMMON["seed"])
        sets = {k: load_dataset(p, TARGETS, dtype=torch.float32) for k, p in paths.items()}
        baseline = fit_composition_baseline(sets["train"], key=ENERGY_KEY)
        ctx = dict(baseline=baseline, scales=residual_scales(sets["train"], baseline, *KEYS),
                   weights=(common["energy_weight"], common["forces_weight"]), budget=60.0 * args.minutes,
                   threads=args.threads, workdir=workdir, mace_python=args.mace_python, ecse_test=args.ecse_test,
                   pet_hyper=pet_hyper)
        print(f"{dataset}: {', '.join(f'{k} {len(v)}' for k, v in sets.items())}; sE {ctx['scales'][0]:.4g} eV/atom, "
              f"sF {ctx['scales'][1]:.4g} eV/A", flush=True)
        for model in args.models:
            print(f"[{dataset}] {model}", flush=True)
            torch.set_num_threads(args.threads)
            load_before, n_before = os.getloadavg()[0], len(rows)
            try:
                rows += RUNNERS[model](dataset, paths, sets, ctx)
                for row in rows[n_before:]:  # the machine is shared: record how busy it was
                    row["loadavg_1min_start_end"] = [load_before, os.getloadavg()[0]]
            except Exception as err:  # one failing model should not lose the others' numbers
                rows.append({"dataset": dataset, "model": model, "error": f"{type(err).__name__}: {err}"})
                print(f"  {model} failed: {rows[-1]['error']}", flush=True)
    table = format_table(rows)
    print("\n" + table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"settings": {"minutes": args.minutes, "threads": args.threads, "torch": torch.__version__,
                           "common": common, "pet": pet_hyper, "schnet": SCHNET_HYPER, "mace": MACE_HYPER,
                           "ecse": ECSE_OPTIONS, "datasets": {k: DATASETS[k] for k in args.datasets}},
              "results": rows}
    args.out.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
