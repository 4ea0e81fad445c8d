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

and beside them, on the same split, the kernel rows: ``ntk`` — the analytic CNTK of depth ``cntk_depth``,
ridgeless kernel regression on one-hot targets (Arora et al. 2019 style), one row per readout in
``cntk_readouts``: model ``cntk{depth}_gap`` (global average pooling, CNTK-GAP) and ``cntk{depth}_v``
(``readout="flatten"``, CNTK-V), on the first ``cntk_n_train`` training and ``cntk_n_test`` test images
(None: all of the split) — and ``rff``, ridge regression on random Fourier features of the pixels. The
network rows also give the fraction of ReLU activation patterns unchanged since initialisation (the paper's
stability measure). Every row reports its train and test sizes and the seconds it took; kernel rows their
depth too.

Note: cifar10-jpeg.tar.gz is a JPEG re-encoding of CIFAR-10; JPEG artefacts cost about 2–3
accuracy points against the original python batches, so compare with the paper's numbers with that in mind.
The quick preset is a small CPU subset (1000 images of two classes, airplane vs automobile, nets at 1/8 of
the width, 10 epochs): it shows the ordering (standard above lazy/linearized), not the paper's accuracies.
Its accuracies, mean ± std over seeds, are in docs/compare.md and docs/figures.json, measured by
``python -m compare bench readme``. ResNet-18 trains at η₀ = 0.002: at 0.01 its lazy and linearized runs blow up.
Its CNTK rows run on a subset (100 training, 100 test images): the GAP kernel needs every pixel pair,
(32·32)² numbers per image pair, and the compiled CPU loop (``kernels.analytic._cpu``) takes about 10–15 ms
per image pair on 2 cores, so the 15,050 pairs take about 3 minutes; CNTK-V needs only matching pixels (a
few seconds). The full and paper presets run the same code on CUDA. ``--set cntk_readouts=[]`` skips them.
"""
from __future__ import annotations

import numpy as np

from kernels import check_choice
from kernels.analytic.networks import READOUTS

from compare.data import load_split
from compare.experiment import Experiment, GpuRun, Preset, Reference
from compare.grams import kernel_matrices
from compare.sweep.run import Run
from compare.seeding import seeded_torch
from compare.present.summary import metric_titles

MODELS = ("vgg11", "resnet18")
CNTK_NAMES = {"gap": "gap", "flatten": "v"}   # model-name suffix of each CNTK readout (Arora et al.'s names)
LR = {"vgg11": 0.01, "resnet18": 0.002}   # η₀ per model (measured on the quick preset; ResNet needs less)
# the paper's Table 1 (Chizat, Oyallon & Bach 2019): CIFAR-10 test accuracy in %
PAPER_TABLE1 = {("vgg11", "net"): 89.7, ("vgg11", "linearized"): 61.7,
                ("resnet18", "net"): 91.0, ("resnet18", "linearized"): 56.7}

PRESETS = {
    "quick": Preset("a CPU", models=["vgg11", "resnet18"], width_factor=0.125,
                    n_train=1000, n_test=500, classes=[0, 1], epochs=10, lr=LR, lr_decay=1e-3, batch_size=128,
                    lazy_scale=100.0, cntk_depth=3, cntk_readouts=["gap", "flatten"], cntk_n_train=100,
                    cntk_n_test=100, rff_features=2000, rff_alpha=1e-3, seeds=1),
    "full": Preset("one GPU", models=["vgg11", "resnet18"], width_factor=1.0,
                   n_train=10000, n_test=2000, classes=None, epochs=40, lr=LR, lr_decay=1e-4,
                   batch_size=128, lazy_scale=100.0, cntk_depth=5, cntk_readouts=["gap", "flatten"],
                   cntk_n_train=2000, cntk_n_test=None, rff_features=20000, rff_alpha=1e-3, seeds=1),
    "paper": Preset("one GPU (the CNTK rows dominate)",
                    models=["vgg11", "resnet18"], width_factor=1.0, n_train=None, n_test=None, classes=None,
                    epochs=70, lr=LR, lr_decay=1e-4, batch_size=128, lazy_scale=1e3, cntk_depth=5,
                    cntk_readouts=["gap", "flatten"], cntk_n_train=5000, cntk_n_test=None, rff_features=40000,
                    rff_alpha=1e-3, seeds=1),
}


def plan(config) -> list:
    p = config.params
    for model in p["models"]:
        check_choice(model, "model", MODELS)
    params = {k: v for k, v in p.items() if k not in ("seeds", "models")}
    params["data_dir"] = config.data_dir
    runs = []

    def add(model, method, seed, alpha=None):
        runs.append(Run("table", config.dataset, model, method, seed, alpha=alpha, device=config.device,
                        params=params))

    for seed in range(p["seeds"]):
        for model in p["models"]:
            add(model, "net", seed)
            add(model, "lazy", seed, p["lazy_scale"])
            add(model, "linearized", seed)
        for readout in p["cntk_readouts"] if p["cntk_n_train"] else ():
            add(f"cntk{p['cntk_depth']}_{CNTK_NAMES[check_choice(readout, 'cntk readout', READOUTS)]}", "ntk", seed)
        add("fourier", "rff", seed)
    return runs


def _split(run):
    p = run.params
    return load_split("cifar10", p["n_train"], p["n_test"], run.seed, p["data_dir"], p["classes"], dtype="float32")


def run_one(run, memo=None) -> dict:
    ds = _split(run)
    row = {"n_train": ds.n_train, "n_test": ds.n_test}
    if run.method == "ntk":
        return {**row, **_cntk(run, ds)}
    if run.method == "rff":
        return {**row, **_random_features(run, ds)}
    return {**row, **_train(run, ds)}


def _network(run, n_classes):
    from nets import VGG, ResNet
    depth = int(run.model.lstrip("vgresnt"))
    cls = VGG if run.model.startswith("vgg") else ResNet
    with seeded_torch(run.seed):
        return cls(depth, width_factor=run.params["width_factor"], batch_norm=False, num_classes=n_classes)


def _train(run, ds) -> dict:
    import torch
    from nets import Lazy, Linearized, diagnostics, train
    from nets import DivergenceError, random_crop_flip
    p, device = run.params, run.device
    n_classes = int(ds.n_classes)
    net = _network(run, n_classes).to(device)
    module = {"net": lambda: net, "lazy": lambda: Lazy(net, run.alpha),
              "linearized": lambda: Linearized(Lazy(net, 1.0))}[run.method]()
    initial = _network(run, n_classes).to(device) if run.method == "net" else None
    X_train = torch.as_tensor(ds.X_train, device=device)
    X_test = torch.as_tensor(ds.X_test, device=device)
    lr = p["lr"][run.model] if isinstance(p["lr"], dict) else p["lr"]
    try:
        history = train(module, X_train, torch.as_tensor(ds.y_train, device=device), loss="cross_entropy",
                        optimizer="sgd", lr=lr, momentum=0.9, batch_size=min(p["batch_size"], ds.n_train),
                        epochs=p["epochs"], lr_schedule="inverse", lr_decay=p["lr_decay"],
                        augment=random_crop_flip(), seed=run.seed, quiet=True)
    except DivergenceError as exc:
        return {"diverged": True, "error": str(exc)}
    with torch.no_grad():
        logits = torch.cat([module(X_test[i:i + 256]) for i in range(0, len(X_test), 256)]).cpu().numpy()
    row = {"test_accuracy": float(np.mean(logits.argmax(1) == ds.y_test)),
           "train_loss": float(np.mean(history.losses[-max(1, len(history.losses) // 20):])),
           "weight_change": diagnostics.relative_weight_change(module, initial)}
    if run.method != "linearized":
        row["unchanged_activations"] = diagnostics.unchanged_activation_fraction(module, X_test[:100], initial)
    return row


def _one_hot(y, n_classes):
    """Arora et al. (2019) targets: 0.9 for the class, −0.1 elsewhere (one-hot minus 0.1)."""
    return np.eye(n_classes)[y] - 0.1


def cntk_readout(run) -> str:
    """The readout of a CNTK run, from its model name ``cntk{depth}_gap`` or ``cntk{depth}_v``."""
    suffix = run.model.rsplit("_", 1)[1]
    return next(readout for readout, name in CNTK_NAMES.items() if name == suffix)


def cntk_kernel(run):
    """The ReLU CNTK of the run's depth and readout, in float64 on the run's device."""
    from kernels import Convolutional
    return Convolutional(depth=run.params["cntk_depth"], activation="relu", readout=cntk_readout(run),
                         dtype="float64", device=run.device)


def random_features_classifier(run):
    """Ridge classification on random Fourier features, fitted on the run's device."""
    from kernels import RandomFeaturesClassifier
    return RandomFeaturesClassifier(features="fourier", n_features=run.params["rff_features"],
                                    alpha=run.params["rff_alpha"], random_state=run.seed, device=run.device)


def _cntk(run, ds) -> dict:
    """Ridgeless kernel regression with the CNTK on one-hot targets; the solve runs where the kernel is."""
    from kernels import device_of, krr_solve, to_device, to_numpy
    p = run.params
    n = min(p["cntk_n_train"], ds.n_train)
    m = ds.n_test if p.get("cntk_n_test") is None else min(p["cntk_n_test"], ds.n_test)
    kernel = cntk_kernel(run)
    X_train, X_test = ds.X_train[:n].astype(np.float64), ds.X_test[:m].astype(np.float64)
    K_train, K_test = kernel_matrices(kernel, X_train, X_test, get="ntk")
    targets = to_device(_one_hot(ds.y_train[:n], int(ds.n_classes)), device_of(K_train))
    coef = krr_solve(K_train, targets, 0.0)
    predicted = to_numpy(K_test @ coef).argmax(1)
    return {"test_accuracy": float(np.mean(predicted == ds.y_test[:m])), "n_train": n, "n_test": m,
            "depth": p["cntk_depth"]}


def _random_features(run, ds) -> dict:
    flat = (ds.X_train.reshape(ds.n_train, -1), ds.X_test.reshape(ds.n_test, -1))
    clf = random_features_classifier(run)
    clf.fit(flat[0].astype(np.float64), ds.y_train)
    return {"test_accuracy": float(clf.score(flat[1].astype(np.float64), ds.y_test))}


EXPERIMENT = Experiment(
    name="table", summary=__doc__, datasets=("cifar10",), presets=PRESETS, plan=plan, run_one=run_one,
    methods=("net", "lazy", "linearized", "ntk", "rff"),
    metrics={**metric_titles("test_accuracy", "train_loss", "weight_change", "unchanged_activations"),
             "n_train": "n train", "n_test": "n test", "depth": "depth", "seconds": "time (s)"},
    percent=("test_accuracy", "unchanged_activations"), axes=("model", "method", "scale", "seed"),
    reference=Reference("paper acc %", PAPER_TABLE1), gpu=GpuRun(preset="quick", dataset="cifar10"),
)
