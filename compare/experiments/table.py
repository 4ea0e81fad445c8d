"""table: standard vs lazy vs linearized training of VGG-11 and ResNet-18 on CIFAR-10, beside kernel rows.

After Chizat, Oyallon & Bach (NeurIPS 2019, §3), who train VGG-11 and ResNet-18 without BatchNorm normally and
in the lazy regime and report that lazy training loses much of the test accuracy on CIFAR-10 (their table of
CIFAR-10 accuracies; lazykit does not reproduce their numbers here: this data set is a JPEG re-encoding of
CIFAR-10, which costs about 2–3 accuracy points against the original python batches, and the quick preset is a
two-class subset). Each network (``nets.VGG`` / ``nets.ResNet``, ``width_factor`` times the usual channels, no
BatchNorm) is trained by SGD with momentum, minibatches, random crops and flips (the protocol of
``compare.experiments.cifar_nets``: init, loss, schedule, dtype and the step from the kernel are settings):

- ``net``            the network centred as the authors do, h(w) − h(w₀) (= lazy at α = 1),
- ``net_uncentred``  the network as it is, h(w),
- ``lazy``           Lazy(net, α), α·(h(w) − h(w₀)) trained on the loss / α² (α = ``lazy_scale``),
- ``linearized``     Linearized(Lazy(net, 1)), lazykit's exact first-order Taylor model at initialisation;

every trained row also gives ``frozen_gates_accuracy``, the authors' "linearized" accuracy (the trained net with
its ReLU signs and max-pool selections frozen at init, ``nets.FrozenGates``), and the fraction of gates unchanged
since init (mean over layers, on ``n_stability`` test images). Beside them, on the same split, the kernel rows
(``cifar_nets.kernel_runs``): ``ntk`` — the analytic CNTK of depth ``cntk_depth``, ridgeless kernel regression on
one-hot targets (Arora et al. 2019 style), one row per readout in ``cntk_readouts``: model ``cntk{depth}_gap``
(global average pooling, CNTK-GAP) and ``cntk{depth}_v`` (``readout="flatten"``, CNTK-V), on the first
``cntk_n_train`` training and ``cntk_n_test`` test images (None: all of the split) — and ``rff``, ridge regression
on random Fourier features of the pixels. Every row reports its sizes and seconds; kernel rows their depth.

Step sizes: ``lr="kernel"`` (every preset) trains each row at ``lr_factor`` times the stability limit
2(1 + β)·B/(c·λ_max) of the network's NTK at init; each row records lr_used, lambda_max and lr/limit, and the
report names rows above the limit, diverged, or collapsed to one class. (At lr = 0.002 the quick ResNet-18 was
2× above its limit: its lazy and linearized rows stayed at chance.)

Presets. quick (a CPU): 1000/500 images of airplane vs automobile, width 1/8, 10 epochs, lazykit's protocol
(Kaiming init, cross-entropy, per-step schedule), CNTK rows on a 100 + 100 image subset (the GAP kernel needs every
pixel pair, (32·32)² numbers per image pair, about 3 minutes on 2 cores; CNTK-V a few seconds;
``--set cntk_readouts=[]`` skips them). paper (one GPU): the authors' protocol — Xavier-normal gain 1, zero biases,
MSE on one-hot targets (nn.MSELoss), η₀/(1 + epoch/3) per epoch, 100 epochs, batch 128, momentum 0.9, no weight
decay, crop + flip, float64 where α needs it — on all of CIFAR-10 at width 1.
"""
from __future__ import annotations

from kernels import check_choice

from compare.experiment import Experiment, GpuRun, Preset
from compare.experiments import cifar_nets
from compare.present.summary import metric_titles
from compare.sweep.run import Run

MODELS = cifar_nets.MODELS
METHODS = cifar_nets.NET_METHODS

_COMMON = dict(batch_size=128, momentum=0.9, lr="kernel", lr_factor=0.2, power_iterations=30,
               methods=list(METHODS), frozen_gates_pool="gather", gain=1.0, rff_alpha=1e-3)
PRESETS = {
    "quick": Preset("a CPU", models=["vgg11", "resnet18"], width_factor=0.125, n_train=1000, n_test=500,
                    classes=[0, 1], epochs=10, init="kaiming", loss="cross_entropy", lr_schedule="inverse",
                    lr_decay=1e-3, dtype="float32", lazy_scale=100.0, n_stability=100, cntk_depth=3,
                    cntk_readouts=["gap", "flatten"], trained_kernels=["ntk", "nngp"], cntk_n_train=100,
                    cntk_n_test=100, rff_features=2000, seeds=1, **_COMMON),
    "full": Preset("one GPU", models=["vgg11", "resnet18"], width_factor=1.0, n_train=10000, n_test=2000,
                   classes=None, epochs=40, init="kaiming", loss="cross_entropy", lr_schedule="inverse",
                   lr_decay=1e-4, dtype="float32", lazy_scale=100.0, n_stability=1000, cntk_depth=5,
                   cntk_readouts=["gap", "flatten"], trained_kernels=["ntk", "nngp"], cntk_n_train=2000,
                   cntk_n_test=None, rff_features=20000, seeds=1, **_COMMON),
    "paper": Preset("one GPU (the CNTK rows dominate)", models=["vgg11", "resnet18"], width_factor=1.0,
                    n_train=None, n_test=None, classes=None, epochs=100, init="xavier", loss="mse_mean",
                    lr_schedule="inverse_epoch", lr_decay=1 / 3, dtype="auto", lazy_scale=1e4, n_stability=None,
                    cntk_depth=5, cntk_readouts=["gap", "flatten"], trained_kernels=["ntk", "nngp"],
                    cntk_n_train=5000, cntk_n_test=None, rff_features=40000, seeds=1, **_COMMON),
}


def plan(config) -> list:
    p = config.params
    cifar_nets.check_settings(p, [p["lr"]])
    for method in p["methods"]:
        check_choice(method, "method (--set methods=)", METHODS)
    params = {k: v for k, v in p.items() if k not in ("seeds", "models", "methods")}
    params["data_dir"] = config.data_dir
    runs = []

    def make(model, method, seed, alpha=None):
        return Run("table", config.dataset, model, method, seed, alpha=alpha, **config.run_devices(), params=params)

    for seed in range(p["seeds"]):
        for model in p["models"]:
            runs += [make(model, m, seed, p["lazy_scale"] if m == "lazy" else None) for m in p["methods"]]
        runs += cifar_nets.kernel_runs(config, lambda model, method, seed=seed: make(model, method, seed))
    return runs


def shared_work(run) -> dict:
    """The network rows of one model and seed share λ_max of its NTK at init; kernel rows run alone."""
    if run.method in cifar_nets.KERNEL_METHODS:
        return run.config()
    return {k: v for k, v in run.config().items() if k not in ("method", "scale")}


def run_one(run, memo=None) -> dict:
    from compare.sweep.memo import Memo
    ds = cifar_nets.split(run)
    row = {"n_train": ds.n_train, "n_test": ds.n_test}
    if run.method in cifar_nets.KERNEL_METHODS:
        return {**row, **cifar_nets.kernel_row(run, ds)}
    return {**row, **cifar_nets.train_row(run, ds, Memo() if memo is None else memo)}


def notes(rows) -> str:
    return (cifar_nets.limit_notes(rows) + cifar_nets.kernel_notes(rows) + " net is centred (h(w) − h(w₀)) as the authors train it; net_uncentred "
            "is the plain h(w). frozen-gates acc is the authors' \"linearized\" accuracy; linearized is the Taylor "
            "model. The data is a JPEG copy of CIFAR-10 (2–3 points below the original).")


EXPERIMENT = Experiment(
    name="table", summary=__doc__, datasets=("cifar10",), presets=PRESETS, plan=plan, run_one=run_one,
    methods=METHODS + cifar_nets.KERNEL_METHODS,
    metrics={**metric_titles("test_accuracy"), "frozen_gates_accuracy": "frozen-gates acc",
             **metric_titles("train_loss", "weight_change", "unchanged_activations"), "lr_used": "lr",
             "lr_over_limit": "lr/limit", "n_train": "n train", "n_test": "n test", "depth": "depth",
             "seconds": "time (s)"},
    percent=("test_accuracy", "frozen_gates_accuracy", "unchanged_activations"),
    axes=("model", "method", "scale", "seed"), notes=notes, shared_work=shared_work,
    gpu=GpuRun(preset="quick", dataset="cifar10"),
)
