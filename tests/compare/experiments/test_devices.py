"""The devices are resolved once, on the command line (nets where torch sees a GPU, kernels where CuPy does), and
every run and every kernel it builds gets its own.

No GPU is needed: torch (and CuPy) are told what they see, for the resolution; the kernels are either replaced by
recording stand-ins that note the ``device=`` they are asked for and then compute on the CPU, or (the workstation
case) run for real on the CPU they were given.
"""
import argparse

import pytest

import kernels
from compare import experiments, options
from compare.experiment import Config
from compare.experiments import cifar_nets, equivalence, table
from compare.sweep.memo import Memo


class Recorder:
    """Stands in for a kernel class: records each ``device=`` asked for, builds the real one on the CPU."""

    def __init__(self, real):
        self.real, self.devices = real, []

    def __call__(self, *args, **kwargs):
        self.devices.append(kwargs.get("device"))
        return self.real(*args, **{**kwargs, "device": "cpu"})


@pytest.fixture
def recorded(monkeypatch):
    stand_ins = {name: Recorder(getattr(kernels, name))
                 for name in ("FullyConnected", "Convolutional", "RandomFeaturesClassifier", "infinite_width")}
    for name, stand_in in stand_ins.items():
        monkeypatch.setattr(kernels, name, stand_in)
    return stand_ins


def _args(**kwargs):
    defaults = dict(dataset=None, preset="quick", overrides=[], seeds=None, device="auto", data_dir=None, jobs=1,
                    threads=None)
    return argparse.Namespace(**{**defaults, **kwargs})


@pytest.mark.parametrize("name", ["equivalence", "rates", "teacher-student", "table", "alpha-sweep"])
def test_auto_resolves_once_to_cuda_and_every_run_carries_it(name, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    experiment = experiments.get(name)
    config = options.resolve(experiment, _args(dataset=experiment.default_dataset))
    assert config.device == "cuda"
    runs = experiment.plan(config)
    assert runs and {run.device for run in runs} == {"cuda"}
    assert experiment.sweep_config(runs)["device"] == "cuda"        # part of the fingerprint: never mixed


def test_image_equivalence_plans_the_analytic_kernels_only_on_cuda():
    def methods(device):
        config = Config("equivalence", "cifar10", "quick", dict(equivalence.PRESETS["quick"].settings), device)
        return {run.method for run in equivalence.plan(config)}
    assert {"ntk", "nngp"} <= methods("cuda") and not {"ntk", "nngp"} & methods("cpu")


def test_a_cuda_equivalence_run_asks_the_analytic_kernels_for_cuda(recorded):
    """The ``ntk`` and ``nngp`` rows of a cuda run, end to end through run_one; the reference Θ₀ (torch, which
    would need the GPU) is computed by the CPU twin and handed over in the run's explicit Memo."""
    settings = {**equivalence.PRESETS["quick"].settings, "n_train": 40, "n_test": 30, "widths": [16], "steps": 5}
    cpu_runs = equivalence.plan(Config("equivalence", "digits", "quick", settings, "cpu"))
    cuda_runs = equivalence.plan(Config("equivalence", "digits", "quick", settings, "cuda"))
    for method in ("ntk", "nngp"):
        cpu = next(r for r in cpu_runs if r.method == method)
        cuda = next(r for r in cuda_runs if r.method == method)
        memo = Memo()
        memo.get(equivalence._problem_key(cuda), lambda: equivalence._problem(cpu))
        memo.get({"reference": equivalence.shared_work(cuda)}, lambda: equivalence._reference(cpu, memo))
        row = equivalence.run_one(cuda, memo)
        assert recorded["FullyConnected"].devices[-1] == "cuda"
        # the kernel regression is the one of the CPU run: same numbers
        assert row == equivalence.run_one(cpu)
    assert recorded["FullyConnected"].devices == ["cuda", "cpu", "cuda", "cpu"]
    image_run = next(r for r in equivalence.plan(Config("equivalence", "cifar10", "quick", settings, "cuda"))
                     if r.method == "ntk")
    kernel = equivalence.analytic_kernel(image_run, 3, 2)    # the kernel of the very CNN the run trains
    assert recorded["infinite_width"].devices == ["cuda"] and "infinite_width(CNN)" in kernel.name


def test_a_cuda_table_run_asks_random_features_and_the_cntk_for_cuda(recorded, tiny_cifar):
    """The random-features row of a cuda run, end to end through run_one (it used to be pinned to the CPU)."""
    settings = {**table.PRESETS["quick"].settings, "models": [], "n_train": 12, "n_test": 12, "rff_features": 50,
                "cntk_n_train": 4, "cntk_depth": 1}
    config = Config("table", "cifar10", "quick", settings, "cuda", str(tiny_cifar))
    runs = {run.method: run for run in table.plan(config)}
    row = table.run_one(runs["rff"])
    assert recorded["RandomFeaturesClassifier"].devices == ["cuda"]
    # each test image is a pixel-for-pixel copy of a training image of its class (same colours), so the fitted
    # ridge classifier (α = 1e-3) labels them as it labels its training set: measured 100%
    assert row["test_accuracy"] > 0.9 and row["n_train"] == 12
    cifar_nets.cntk_kernel(runs["ntk"])
    assert recorded["Convolutional"].devices == ["cuda"]


def test_a_gpu_workstation_without_cupy_runs_the_real_kernels_on_the_cpu(monkeypatch, capsys):
    """The default PyPI torch is a CUDA build, CuPy an extra: with torch seeing a GPU and CuPy absent, --device
    auto puts the nets on cuda and the kernels on the CPU, says so in one line, and the real analytic-kernel rows
    compute (before, every ``ntk``/``nngp`` row failed with "CuPy is not installed or sees no GPU")."""
    import torch

    from compare.cli import devices_notice
    from kernels import backend
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(backend, "gpu_available", lambda: False)
    experiment = experiments.get("equivalence")
    settings = ["n_train=40", "n_test=30", "widths=[16]", "steps=5"]
    config = options.resolve(experiment, _args(dataset="digits", overrides=settings))
    assert (config.device, config.kernels_device) == ("cuda", "cpu")
    assert "nets on cuda (torch), kernels on cpu (CuPy)" in devices_notice(config)
    cuda_runs = experiment.plan(config)
    assert {run.device for run in cuda_runs} == {"cuda"} and {run.kernels_device for run in cuda_runs} == {"cpu"}
    assert all(run.config()["kernel_device"] == "cpu" for run in cuda_runs)      # part of the run's identity
    cpu_config = options.resolve(experiment, _args(dataset="digits", overrides=settings, device="cpu"))
    cpu_runs = experiment.plan(cpu_config)
    assert all("kernel_device" not in run.config() for run in cpu_runs)           # older folders still resume
    for method in ("ntk", "nngp"):
        cpu = next(r for r in cpu_runs if r.method == method)
        cuda = next(r for r in cuda_runs if r.method == method)
        memo = Memo()   # the reference Θ₀ is torch's (it would need the GPU): the CPU twin's, handed over
        memo.get(equivalence._problem_key(cuda), lambda: equivalence._problem(cpu))
        memo.get({"reference": equivalence.shared_work(cuda)}, lambda: equivalence._reference(cpu, memo))
        kernel = equivalence.analytic_kernel(cuda, 64, 10)
        assert isinstance(kernel, kernels.FullyConnected) and kernel.device == "cpu"
        assert equivalence.run_one(cuda, memo) == equivalence.run_one(cpu)


def test_explicit_cuda_names_the_library_that_sees_no_gpu(monkeypatch):
    import torch

    from kernels import backend
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(backend, "gpu_available", lambda: False)
    with pytest.raises(ValueError, match=r"--device cuda: .*CuPy \(the kernels\) is not installed or sees no GPU.*"
                                         r"'auto'"):
        options.resolve(experiments.get("equivalence"), _args(dataset="digits", device="cuda"))


@pytest.mark.parametrize("jobs, threads, want", [(-1, None, (16, 1)), (4, None, (4, 4)), (1, None, (1, 16)),
                                                 (32, None, (32, 1)), (4, 3, (4, 3))])
def test_workers_and_threads_are_decided_together(monkeypatch, jobs, threads, want):
    # --jobs -1 used to give each of 16 workers 16 torch threads (256 on 16 cores)
    monkeypatch.setattr(options.os, "cpu_count", lambda: 16)
    config = options.resolve(experiments.get("rates"), _args(dataset="teacher-student", jobs=jobs, threads=threads))
    assert (config.jobs, config.threads) == want       # workers × threads ≤ cores unless asked otherwise


@pytest.mark.parametrize("jobs, threads", [(0, None), (-2, None), (True, None), (2, 0)])
def test_bad_jobs_and_threads_are_refused(jobs, threads):
    with pytest.raises(ValueError, match="--jobs|--threads"):
        options.resolve(experiments.get("rates"), _args(dataset="teacher-student", jobs=jobs, threads=threads))
