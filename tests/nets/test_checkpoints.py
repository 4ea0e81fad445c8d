"""Checkpoints that cannot be resumed give one CheckpointError naming the file; a checkpoint is only resumed on
the same data and the same model (architecture and initial weights), checked by fingerprints stored in it."""
import pytest
import torch

from nets import MLP, train
from nets.training import CheckpointError, fingerprint


def _problem(seed=0):
    torch.manual_seed(seed)
    return MLP(3, [8]).double(), torch.randn(12, 3, dtype=torch.float64), torch.randn(12, dtype=torch.float64)


@pytest.mark.parametrize("content", [b"\x00garbage\xff" * 10, b"", None])
def test_unreadable_checkpoint_names_the_file(tmp_path, content):
    path = tmp_path / "ck.pt"
    if content is None:
        torch.save({"step": 3}, path)          # a dict, but not one `train` wrote
    else:
        path.write_bytes(content)
    net, X, y = _problem()
    with pytest.raises(CheckpointError, match=f"checkpoint '{path}'"):
        train(net, X, y, steps=4, checkpoint=path, quiet=True)


def test_resume_needs_the_same_data_and_model(tmp_path):
    """Interrupted after 3 of 6 steps; resuming with other targets, or with a model drawn from another seed
    (same shapes), is refused; the same data and a model re-drawn from the same seed resume bit for bit."""
    path = tmp_path / "ck.pt"
    net, X, y = _problem()
    train(net, X, y, lr=0.1, steps=3, checkpoint=path, checkpoint_every=1, quiet=True)
    other_y = y + 1.0
    with pytest.raises(CheckpointError, match="a different dataset"):
        train(_problem()[0], X, other_y, lr=0.1, steps=3, checkpoint=path, quiet=True)
    with pytest.raises(CheckpointError, match="a different model"):
        train(_problem(seed=1)[0], X, y, lr=0.1, steps=3, checkpoint=path, quiet=True)
    fresh, _, _ = _problem()
    history = train(fresh, X, y, lr=0.1, steps=3, checkpoint=path, quiet=True)
    assert history.steps == [0, 1, 2]


def test_fingerprint_sees_values_shapes_and_dtypes():
    a = torch.arange(6.0)
    assert fingerprint(a) == fingerprint(a.clone())
    assert len({fingerprint(a), fingerprint(a.reshape(2, 3)), fingerprint(a.float()), fingerprint(a.double()),
                fingerprint(a + 1e-12)}) == 4   # arange(6.0) is float32 already: a == a.float()
