"""NVE drift and excursion over several velocity seeds, per model, as ratios to bare PET (printed, never asserted).

    python benchmarks/nve_seeds.py LOG [LOG ...] [--reference bare] [--stop PS]

The drift of one NVE run can depend on its starting velocities as much as on the model,
so a ratio of two single runs compares two draws.  This reads the logs of many
runs (``run_nve``'s ``logfile``, as ``benchmarks/smoothness.py --nve-logs DIR --seed S``
writes them: one file per run, first line ``# NVE LABEL: N atoms, DT fs``), groups them by
``LABEL`` and prints, per run, the drift (least-squares slope of the total energy per
atom, eV/atom/ps, ± its standard error from 0.1 ps blocks), the largest excursion
(eV/atom) and the mean temperature; per model, the mean drift over seeds ± its standard
error, the median drift, the median of its size (drifts of both signs do not cancel
there) and the median excursion, each as a ratio to the ``--reference`` model's, with a
95 % bootstrap interval of each ratio (``--bootstrap`` draws: the runs of each model
resampled with replacement, independently; percentiles 2.5 and 97.5 of the ratio) and,
for the median size of the drift, a permutation test's p-value (the fraction of the
``--bootstrap`` random relabellings of the pooled runs whose ratio is at least the observed
one): with a few runs per model the interval says whether a ratio is resolved at all.
Runs of different models that sit in the same folder (one seed of ``smoothness.py``) are
also compared pairwise.

Example (three seeds of bare PET and of ECSE's local mode on water)::

    for s in 0 1 2; do
      OMP_NUM_THREADS=1 python benchmarks/smoothness.py --systems water --nve-settings defaults \\
          --nve-modes local --nve-ps 2.0 --nve-budget 9000 --orientations 0 --budget 1 \\
          --seed $s --nve-logs logs/seed$s
    done
    python benchmarks/nve_seeds.py logs/seed*/*.log
"""
import argparse
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from ecse.atomistic.md import energy_drift, energy_drift_stderr, energy_excursion

HEADER = re.compile(r"#\s*(?:NVE\s+)?(?P<label>.*?):\s*(?P<atoms>\d+) atoms")


def read_log(path: Path) -> dict:
    """``{"label", "atoms", "time_ps", "energy_per_atom", "temperature_K"}`` of one ``run_nve`` log."""
    with open(path) as f:
        first = f.readline()
    match = HEADER.match(first)
    if match is None:
        raise ValueError(f"{path}: first line {first.strip()!r} is not a run_nve log header "
                         "('# NVE LABEL: N atoms, DT fs')")
    table = np.loadtxt(path, ndmin=2)
    if table.shape[0] < 2 or table.shape[1] != 6:
        raise ValueError(f"{path}: expected at least two rows of 6 columns (step time_ps potential_eV "
                         f"kinetic_eV total_eV temperature_K), got shape {table.shape}")
    n = int(match["atoms"])
    return {"label": match["label"], "atoms": n, "time_ps": table[:, 1], "energy_per_atom": table[:, 4] / n,
            "temperature_K": table[:, 5]}


def run_stats(run: dict, stop_ps=None) -> dict:
    """Drift ± standard error, excursion and mean temperature of one run, up to ``stop_ps``."""
    keep = slice(None) if stop_ps is None else run["time_ps"] <= stop_ps + 1e-9
    t, e = run["time_ps"][keep], run["energy_per_atom"][keep]
    return {"ps": float(t[-1] - t[0]), "drift": energy_drift(t, e), "drift_se": energy_drift_stderr(t, e),
            "excursion": energy_excursion(e), "mean_T": float(run["temperature_K"][keep].mean())}


def group_stats(rows: list) -> dict:
    """Mean drift over runs ± its standard error, median drift, median |drift| and median excursion."""
    drifts = np.array([r["drift"] for r in rows])
    se = float(drifts.std(ddof=1) / np.sqrt(len(drifts))) if len(drifts) > 1 else float("nan")
    return {"runs": len(rows), "mean_drift": float(drifts.mean()), "mean_drift_se": se,
            "median_drift": float(np.median(drifts)), "median_abs_drift": float(np.median(np.abs(drifts))),
            "median_excursion": float(np.median([r["excursion"] for r in rows]))}


STATISTICS = {  # name: (column of run_stats, statistic of a group's values)
    "median abs(drift)": ("drift", lambda v: np.median(np.abs(v))),
    "abs(mean drift)": ("drift", lambda v: abs(np.mean(v))),
    "median excursion": ("excursion", np.median),
}


def bootstrap_ratio(values, reference, statistic, draws: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of ``statistic(values) / statistic(reference)`` over
    ``draws`` bootstrap resamples of both samples (each with replacement, independently).

    >>> bootstrap_ratio([2.0, 2.0], [1.0, 1.0, 1.0], np.median)
    (2.0, 2.0)
    """
    rng = np.random.default_rng(seed)
    values, reference = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    a = rng.choice(values, (draws, values.size))
    b = rng.choice(reference, (draws, reference.size))
    ratios = np.array([statistic(x) / statistic(y) for x, y in zip(a, b)])
    low, high = np.percentile(ratios[np.isfinite(ratios)], [2.5, 97.5])
    return float(low), float(high)


def permutation_p(values, reference, statistic, draws: int = 10000, seed: int = 0) -> float:
    """Fraction of ``draws`` random splits of the pooled samples (sizes kept) whose ratio
    ``statistic(first) / statistic(second)`` is at least the observed one: the one-sided
    p-value of "``values`` are larger" against "both come from one distribution"."""
    rng = np.random.default_rng(seed)
    pooled = np.concatenate([np.asarray(values, dtype=float), np.asarray(reference, dtype=float)])
    n, observed = len(values), statistic(np.asarray(values, dtype=float)) / statistic(np.asarray(reference, dtype=float))
    hits = 0
    for _ in range(draws):
        perm = rng.permutation(pooled)
        hits += statistic(perm[:n]) / statistic(perm[n:]) >= observed * (1 - 1e-12)
    return hits / draws


def _ratio(a: float, b: float) -> str:
    return f"{abs(a / b):.2f}x" if b else "-"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path)
    parser.add_argument("--reference", default="bare", help="label of the model the ratios are taken to")
    parser.add_argument("--stop", type=float, default=None, help="use each run up to this time (ps)")
    parser.add_argument("--bootstrap", type=int, default=10000,
                        help="bootstrap draws and permutations for the ratios' intervals (0: none)")
    args = parser.parse_args(argv)
    runs = defaultdict(list)
    for path in args.logs:
        run = read_log(path)
        runs[run["label"]].append({"path": path, **run_stats(run, args.stop)})
    if args.reference not in runs:
        raise SystemExit(f"no run labelled {args.reference!r} among {sorted(runs)} (--reference)")
    print("| model | run | length, ps | drift, eV/atom/ps | excursion, eV/atom | mean T, K |\n|---|---|---|---|---|---|")
    for label, rows in runs.items():
        for r in rows:
            print(f"| {label} | {r['path']} | {r['ps']:.2f} | {r['drift']:+.2e} ± {r['drift_se']:.1e} | "
                  f"{r['excursion']:.2e} | {r['mean_T']:.0f} |")
    groups = {label: group_stats(rows) for label, rows in runs.items()}
    ref = groups[args.reference]
    print("\n| model | runs | mean drift ± se over runs (x reference) | median drift (x reference) | "
          "median abs(drift) (x reference) | median excursion (x reference) |\n|---|---|---|---|---|---|")
    for label, g in groups.items():
        print(f"| {label} | {g['runs']} | {g['mean_drift']:+.2e} ± {g['mean_drift_se']:.1e} "
              f"({_ratio(g['mean_drift'], ref['mean_drift'])}) | {g['median_drift']:+.2e} "
              f"({_ratio(g['median_drift'], ref['median_drift'])}) | {g['median_abs_drift']:.2e} "
              f"({_ratio(g['median_abs_drift'], ref['median_abs_drift'])}) | {g['median_excursion']:.2e} "
              f"({_ratio(g['median_excursion'], ref['median_excursion'])}) |")
    intervals = {}
    if args.bootstrap and len(runs[args.reference]) > 1:
        print("\n| model | runs | " + " | ".join(f"{name} (x reference), 95 % interval" for name in STATISTICS)
              + " | permutation p, median abs(drift) |\n|---|---|" + "---|" * (len(STATISTICS) + 1))
        for label, rows in runs.items():
            if label == args.reference or len(rows) < 2:
                continue
            cells, intervals[label] = [], {}
            for name, (key, statistic) in STATISTICS.items():
                mine, ref_values = [r[key] for r in rows], [r[key] for r in runs[args.reference]]
                low, high = intervals[label][name] = bootstrap_ratio(mine, ref_values, statistic, args.bootstrap)
                cells.append(f"{statistic(np.array(mine)) / statistic(np.array(ref_values)):.2f}x "
                             f"[{low:.2f}, {high:.2f}]")
            key, statistic = STATISTICS["median abs(drift)"]
            p = permutation_p([r[key] for r in rows], [r[key] for r in runs[args.reference]], statistic,
                              args.bootstrap)
            intervals[label]["permutation_p"] = p
            print(f"| {label} | {len(rows)} | " + " | ".join(cells) + f" | {p:.3f} |")
    by_folder = {r["path"].parent: r for r in runs[args.reference]}
    pairs = [(label, r, by_folder[r["path"].parent]) for label, rows in runs.items() if label != args.reference
             for r in rows if r["path"].parent in by_folder]
    if pairs:
        print("\n| model | folder (same start) | drift ratio | excursion ratio |\n|---|---|---|---|")
        for label, r, b in pairs:
            print(f"| {label} | {r['path'].parent} | {_ratio(r['drift'], b['drift'])} | "
                  f"{_ratio(r['excursion'], b['excursion'])} |")
    return {"runs": dict(runs), "groups": groups, "intervals": intervals}


if __name__ == "__main__":
    main()
