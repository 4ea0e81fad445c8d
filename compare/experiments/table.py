"""table: the paper's Table 1 on CIFAR-10 — standard vs lazy vs linearized training of VGG-11 and ResNet-18.

Chizat, Oyallon & Bach (NeurIPS 2019, §3, Table 1) train VGG-11 and ResNet-18 without BatchNorm normally and
in the lazy regime, and report that lazy/linearized training loses much of the accuracy (test accuracy:
VGG-11 89.7% standard vs 61.7% linearized; ResNet-18 91.0% vs 56.7%). Here each network (``nets.VGG`` /
``nets.ResNet``, ``width_factor`` times the usual channels, no BatchNorm) is trained by SGD with momentum 0.9,
batch 128, the schedule η_t = η₀/(1 + βt) (η₀ = ``lr``, a number or one per model), random crops and flips,
on the cross-entropy loss:

- ``net``         the network as it is (standard scaling),
- ``lazy``        Lazy(net, α) trained on the loss / α² (α = ``lazy_scale``),
- ``linearized``  Linearized(Lazy(net, 1)), the exact first-order model at initialisation,

and beside them, on the same split, two kernel rows: ``ntk`` — the analytic CNTK with global average pooling
(``kernels.Convolutional(readout="gap")``), ridgeless kernel regression on one-hot targets (Arora et al. 2019
style), and ``rff`` — ridge regression on random Fourier features of the pixels. The network rows also give
the fraction of ReLU activation patterns unchanged since initialisation (the paper's stability measure).

Note: ../shared/data/cifar10-jpeg.tar.gz is a JPEG re-encoding of CIFAR-10; JPEG artefacts cost about 2–3
accuracy points against the original python batches, so compare with the paper's numbers with that in mind.
The quick preset is a small CPU subset (1000 images of two classes, airplane vs automobile, nets at 1/8 of
the width, 10 epochs): it shows the ordering (standard above lazy/linearized), not the paper's accuracies.
Measured there (CPU, one seed): VGG-11 standard 85.6%, lazy 71.4%, linearized 75.4%; ResNet-18 (η₀ = 0.002;
at 0.01 its lazy and linearized runs blow up) standard 74.4%, lazy 53.6%, linearized 50.0% (chance: its
linearization does not train at this step size); random features 79.0%. It has no CNTK row: the GAP
kernel needs every pixel pair, (32·32)² numbers per image pair, which on a CPU
costs about 25 ms per image pair (``cntk_n_train=0`` skips the row; full and paper presets include it, for
a GPU).
"""
from __future__ import annotations

import numpy as np

from compare.experiments import common
from kernels.validation import check_choice

EXPERIMENT = "table"
DATASETS = ("cifar10",)
MODELS = ("vgg11", "resnet18")
LR = {"vgg11": 0.01, "resnet18": 0.002}   # η₀ per model (measured on the quick preset; ResNet needs less)

PRESETS = {
    "quick": dict(expected="~5 min on 2 CPU cores", models=["vgg11", "resnet18"], width_factor=0.125,
                  n_train=1000, n_test=500, classes=[0, 1], epochs=10, lr=LR, lr_decay=1e-3, batch_size=128,
                  lazy_scale=100.0, cntk_depth=3, cntk_n_train=0, rff_features=2000, rff_alpha=1e-3,
                  seeds=1),
    "full": dict(expected="~40 min on one H100 (estimate)", models=["vgg11", "resnet18"], width_factor=1.0,
                 n_train=10000, n_test=2000, classes=None, epochs=40, lr=LR, lr_decay=1e-4,
                 batch_size=128, lazy_scale=100.0, cntk_depth=5, cntk_n_train=2000, rff_features=20000,
                 rff_alpha=1e-3, seeds=1),
    "paper": dict(expected="~6 h on one H100 (estimate; the CNTK row dominates on the GPU)",
                  models=["vgg11", "resnet18"], width_factor=1.0, n_train=None, n_test=None, classes=None,
                  epochs=70, lr=LR, lr_decay=1e-4, batch_size=128, lazy_scale=1e3, cntk_depth=5,
                  cntk_n_train=5000, rff_features=40000, rff_alpha=1e-3, seeds=1),
}


def add_arguments(parser):
    common.add_common_arguments(parser, DATASETS, "cifar10", PRESETS)


def plan(preset: dict, args, device: str):
    for model in preset["models"]:
        check_choice(model, "model", MODELS)
    base = {"experiment": EXPERIMENT, "dataset": args.dataset, "data_dir": args.data_dir, "device": device,
            **{k: v for k, v in preset.items() if k not in ("seeds", "models")}}
    configs = []
    for seed in range(preset["seeds"]):
        for model in preset["models"]:
            configs.append({**base, "model": model, "method": "net", "scale": None, "seed": seed})
            configs.append({**base, "model": model, "method": "lazy", "scale": preset["lazy_scale"], "seed": seed})
            configs.append({**base, "model": model, "method": "linearized", "scale": None, "seed": seed})
        if preset["cntk_n_train"]:
            configs.append({**base, "model": f"cntk{preset['cntk_depth']}_gap", "method": "ntk", "scale": None,
                            "seed": seed})
        configs.append({**base, "model": "fourier", "method": "rff", "scale": None, "seed": seed})
    return configs, base


def run(args) -> int:
    return common.execute(args, EXPERIMENT, PRESETS, DATASETS, plan, run_one, intro=__doc__)


def _split(config):
    ds = common.load_split("cifar10", config["n_train"], config["n_test"], config["seed"], config["data_dir"],
                    config["classes"], dtype="float32")
    return ds


def run_one(config) -> dict:
    ds = _split(config)
    row = {"n_train": ds.n_train, "n_test": ds.n_test}
    if config["method"] == "ntk":
        return {**row, **_cntk(config, ds)}
    if config["method"] == "rff":
        return {**row, **_random_features(config, ds)}
    return {**row, **_train(config, ds)}


def _network(config, n_classes):
    import torch
    from nets import VGG, ResNet
    torch.manual_seed(config["seed"])
    depth = int(config["model"].lstrip("vgresnt"))
    cls = VGG if config["model"].startswith("vgg") else ResNet
    return cls(depth, width_factor=config["width_factor"], batch_norm=False, num_classes=n_classes)


def _train(config, ds) -> dict:
    import torch
    from nets import Lazy, Linearized, diagnostics, train
    from nets.training import DivergenceError, random_crop_flip
    device = config["device"]
    n_classes = int(ds.n_classes)
    net = _network(config, n_classes).to(device)
    method = config["method"]
    module = {"net": lambda: net, "lazy": lambda: Lazy(net, config["scale"]),
              "linearized": lambda: Linearized(Lazy(net, 1.0))}[method]()
    initial = _network(config, n_classes).to(device) if method == "net" else None
    X_train = torch.as_tensor(ds.X_train, device=device)
    X_test = torch.as_tensor(ds.X_test, device=device)
    lr = config["lr"][config["model"]] if isinstance(config["lr"], dict) else config["lr"]
    try:
        history = train(module, X_train, torch.as_tensor(ds.y_train, device=device), loss="cross_entropy",
                        optimizer="sgd", lr=lr, momentum=0.9, batch_size=min(config["batch_size"],
                                                                                          ds.n_train),
                        epochs=config["epochs"], lr_schedule="inverse", lr_decay=config["lr_decay"],
                        augment=random_crop_flip(), seed=config["seed"], quiet=True)
    except DivergenceError as exc:
        return {"diverged": True, "error": str(exc)}
    with torch.no_grad():
        logits = torch.cat([module(X_test[i:i + 256]) for i in range(0, len(X_test), 256)]).cpu().numpy()
    row = {"test_accuracy": float(np.mean(logits.argmax(1) == ds.y_test)),
           "train_loss": float(np.mean(history.losses[-max(1, len(history.losses) // 20):])),
           "weight_change": diagnostics.relative_weight_change(module, initial)}
    if method != "linearized":
        row["unchanged_activations"] = diagnostics.unchanged_activation_fraction(module, X_test[:100], initial)
    return row


def _one_hot(y, n_classes):
    """Arora et al. (2019) targets: 0.9 for the class, −0.1 elsewhere (one-hot minus 0.1)."""
    return np.eye(n_classes)[y] - 0.1


def _cntk(config, ds) -> dict:
    from kernels import Convolutional
    from kernels.backend import to_numpy
    from kernels.solvers import krr_solve
    n = min(config["cntk_n_train"], ds.n_train)
    kernel = Convolutional(depth=config["cntk_depth"], activation="relu", readout="gap", dtype="float64",
                           device="cuda" if config["device"] == "cuda" else "cpu")
    X_train, X_test = ds.X_train[:n].astype(np.float64), ds.X_test.astype(np.float64)
    K_train = to_numpy(kernel.ntk(X_train))
    K_test = to_numpy(kernel.ntk(X_test, X_train))
    coef = krr_solve(K_train, _one_hot(ds.y_train[:n], int(ds.n_classes)), 0.0)
    return {"test_accuracy": float(np.mean((K_test @ coef).argmax(1) == ds.y_test)), "n_train": n}


def _random_features(config, ds) -> dict:
    from kernels import RandomFeaturesClassifier
    flat = (ds.X_train.reshape(ds.n_train, -1), ds.X_test.reshape(ds.n_test, -1))
    clf = RandomFeaturesClassifier(features="fourier", n_features=config["rff_features"],
                                   alpha=config["rff_alpha"], random_state=config["seed"], device="cpu")
    clf.fit(flat[0].astype(np.float64), ds.y_train)
    return {"test_accuracy": float(clf.score(flat[1].astype(np.float64), ds.y_test))}
