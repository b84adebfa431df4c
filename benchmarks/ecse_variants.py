"""Re-evaluate a PET checkpoint of benchmarks/accuracy.py wrapped with several ECSE settings.

    python benchmarks/ecse_variants.py CHECKPOINT TEST.xyz N_TEST BATCH [THREADS]

Prints energy / force MAE of the bare model and of ECSE global (published pruning; no
pruning, skipped for water) and local mode, with frames per structure (of the last
batch), and writes ``runs/accuracy/ecse_variants_<test file>.json``.
"""
import sys, json, time
from pathlib import Path
import torch
ROOT = Path(__file__).resolve().parents[1]; sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from _peers import metrics
from ecse import ECSE
from ecse.atomistic import load_dataset
from ecse.atomistic.training import load_model
ckpt, test_file, n, bs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(int(sys.argv[5]) if len(sys.argv) > 5 else 2)
test = load_dataset(test_file, {"REF_energy": "graph", "REF_forces": "node"}, dtype=torch.float32)[:n]
bare = load_model(ckpt, wrap=False)
out = {}
def run(label, model, size):
    t = time.perf_counter(); m = metrics(model, test, size, (1.0, 1.0), (0.1, 1.0), "REF_energy", "REF_forces")
    out[label] = {"E_meV_atom": 1e3 * m["energy_mae_per_atom"], "F_meV_A": 1e3 * m["forces_mae"], "s": time.perf_counter() - t,
                  "frames": getattr(model, "last_stats", {}).get("frames_per_graph")}
    print(label, json.dumps(out[label]), flush=True)
run("bare", bare, 50)
for label, opts in (("global, published pruning", {}), ("global, no pruning", {"num_prunings": 0}),
                    ("local", {"mode": "local"})):
    if "water" in test_file and label.startswith("global, no"):
        continue
    run(label, ECSE(bare, cutoff=5.0, chunk_size=4096, **opts).eval(), bs)
Path("runs/accuracy").mkdir(parents=True, exist_ok=True)
json.dump(out, open(f"runs/accuracy/ecse_variants_{Path(test_file).stem}.json", "w"), indent=1)
