"""Which switch makes smooth-MTT's IPC-1 images noise? Distils IPC 1 (100 iterations, seed 0,
the default profile's IPC-1 settings) with each switch alone and with all but one, from the
default profile's experts, and prints the learned step size and how far / how roughly the
images moved (mean |x - x_init|, total variation TV; the real init's TV is printed first).

    PYTHONPATH=src python benchmarks/dd_ipc1_noise_switch.py [checkpoints/default/dataset_distillation] [data/digits]
"""
import sys, json, time, numpy as np, torch
from lifelearn.data import load_dataset
from lifelearn.distill import dataset_distillation as dd
torch.set_num_threads(1)
root = sys.argv[1] if len(sys.argv) > 1 else "checkpoints/default/dataset_distillation"
ds = load_dataset(sys.argv[2] if len(sys.argv) > 2 else "data/digits")
x, y = torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train)
trajs = {s: [dd.load_trajectory(f"{root}/experts/{s}/expert{i}.pt") for i in range(5)] for s in ("plain", "smooth")}
payload = trajs["plain"][0][1]
idx = dd.random_real_init(ds.y_train, 1, ds.num_classes, 0)
def tv(a):
    return float(np.abs(np.diff(a, axis=-1)).mean() + np.abs(np.diff(a, axis=-2)).mean())
runs = [("mtt", "plain", {}), ("smooth_experts", "smooth", {}), ("inner_momentum", "plain", {"inner_momentum": True}),
        ("smooth+momentum", "smooth", {"inner_momentum": True}), ("weight_perturbation", "plain", {"weight_perturbation": True}),
        ("balanced_loss", "plain", {"balanced_loss": True}), ("intermediate", "plain", {"intermediate_matching": True}),
        ("all_but_perturbation", "smooth", {"inner_momentum": True, "balanced_loss": True, "intermediate_matching": True}),
        ("all_but_momentum", "smooth", {"weight_perturbation": True, "balanced_loss": True, "intermediate_matching": True}),
        ("all", "smooth", {"inner_momentum": True, "balanced_loss": True, "intermediate_matching": True, "weight_perturbation": True})]
print("real init TV", round(tv(x[idx].numpy()), 4), flush=True)
for name, s, sw in runs:
    st = dd.DistillSettings(ipc=1, iterations=100, syn_steps=20, expert_epochs=2, max_start_epoch=2, lr_img=0.3, lr_lr=0.01,
                            lr_init=0.03, **sw)
    model = dd.expert_model(payload, ds.mean, ds.std)
    t = time.perf_counter()
    r = dd.distill(model, [tr for tr, _ in trajs[s]], x[idx], y[idx], st, 0)
    xs = r["x"].numpy()
    print(json.dumps({"run": name, "lr": round(r["lr"], 5), "tv": round(tv(xs), 4),
                      "moved": round(float(np.abs(xs - x[idx].numpy()).mean()), 4),
                      "sat": round(float(((xs < 0.01) | (xs > 0.99)).mean()), 3),
                      "loss_last10": round(float(np.mean([h["loss"] for h in r["history"][-10:]])), 4),
                      "s": round(time.perf_counter() - t, 1)}), flush=True)
