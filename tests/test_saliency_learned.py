"""The learned real-time masking model: the objective decreases, checkpoints round-trip."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from foveal.saliency import (
    LearnedSaliency,
    MaskingModel,
    MaskObjective,
    evaluate_objective,
    load_masking_model,
    save_masking_model,
    train_masking_model,
)


class TinyClassifier(nn.Module):
    """Classifies 3x16x16 images by the mean brightness of the centre (class 1) vs not."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def _data(n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = 0.3 * torch.rand(n, 3, 16, 16, generator=gen)
    y = torch.arange(n) % 2
    x[y == 1, :, 4:12, 4:12] += 0.6
    return x.clamp(0, 1), y


@pytest.fixture(scope="module")
def classifier() -> nn.Module:
    torch.manual_seed(0)
    clf = TinyClassifier()
    x, y = _data()
    opt = torch.optim.Adam(clf.parameters(), lr=0.05)
    for _ in range(30):
        loss = nn.functional.cross_entropy(clf(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    clf.eval()
    return clf


def test_training_lowers_the_objective(classifier: nn.Module) -> None:
    x, _ = _data()
    torch.manual_seed(1)
    masker = MaskingModel(num_classes=2, width=4, depth=2)
    before = evaluate_objective(classifier, masker, x, seed=3)
    classifier.train()
    flags = [p.requires_grad for p in classifier.parameters()]
    grads = [p.grad.clone() if p.grad is not None else None for p in classifier.parameters()]
    state = {k: v.clone() for k, v in classifier.state_dict().items()}
    result = train_masking_model(classifier, x, masker=masker, steps=40, batch_size=16, lr=5e-3)
    after = evaluate_objective(classifier, result.masker, x, seed=3)
    assert after["total"] < before["total"] - 0.05, (before, after)
    # The classifier is untouched: weights, flags, gradients and mode.
    assert classifier.training
    classifier.eval()
    assert [p.requires_grad for p in classifier.parameters()] == flags
    for g0, p in zip(grads, classifier.parameters(), strict=True):
        assert (g0 is None and p.grad is None) or torch.equal(g0, p.grad)
    for k, v in classifier.state_dict().items():
        assert torch.equal(v, state[k])
    assert result.history and result.history[-1]["step"] == 40
    assert not result.masker.training


def test_objective_terms_closed_form(classifier: nn.Module) -> None:
    x, y = _data(8)
    obj = MaskObjective(area_coef=1.0, destroy_coef=0.0, preserve_coef=0.0, area_power=1.0)
    ones = torch.ones(8, 1, 16, 16)
    terms = obj(classifier, x, ones, y, torch.Generator().manual_seed(0))
    assert float(terms["area"].detach()) == pytest.approx(1.0005, rel=1e-5)
    assert float(terms["total"].detach()) == pytest.approx(1.0005, rel=1e-5)
    assert float(terms["tv"]) == 0.0
    full = MaskObjective()(classifier, x, ones, y, torch.Generator().manual_seed(0))
    logp = torch.log_softmax(classifier(x), 1).gather(1, y[:, None]).mean()
    assert float(full["preserve"].detach()) == pytest.approx(-float(logp.detach()), rel=1e-4)
    with pytest.raises(ValueError, match="area_coef must be a finite number"):
        MaskObjective(area_coef=-1.0)


def test_mask_range_and_class_dependence() -> None:
    torch.manual_seed(0)
    net = MaskingModel(num_classes=3, width=8, depth=2).train()  # batch statistics in BN
    x = torch.rand(2, 3, 12, 12)
    a = net(x, torch.tensor([0, 0]))
    b = net(x, torch.tensor([1, 1]))
    assert a.shape == (2, 1, 12, 12)
    assert float(a.detach().min()) >= 0 and float(a.detach().max()) <= 1
    assert not torch.allclose(a, b)


def test_differentiable_learned_map(classifier: nn.Module) -> None:
    torch.manual_seed(0)
    masker = MaskingModel(num_classes=2, width=4, depth=2)
    x, _ = _data(2)
    x = x.clone().requires_grad_(True)
    maps = LearnedSaliency(classifier, masker=masker, differentiable=True)(x)
    maps.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert not LearnedSaliency(classifier, masker=masker)(x).requires_grad


def test_save_load_round_trip(tmp_path, classifier: nn.Module) -> None:
    torch.manual_seed(0)
    masker = MaskingModel(num_classes=2, width=4, depth=2).eval()
    x, _ = _data(4)
    y = torch.tensor([0, 1, 1, 0])
    save_masking_model(masker, tmp_path / "m", {"classifier": "tiny", "metrics": {"iou": 0.5}})
    loaded, desc = load_masking_model(tmp_path / "m")
    assert desc["meta"]["metrics"]["iou"] == 0.5
    assert desc["config"] == masker.config
    torch.testing.assert_close(loaded(x, y), masker(x, y))
    on_disk = json.loads((tmp_path / "m" / "masker.json").read_text())
    assert on_disk["kind"] == "masking-model"
    from_path = LearnedSaliency(classifier, masker=str(tmp_path / "m"))
    torch.testing.assert_close(from_path(x, y), masker(x, y))
    # A pickle, or a config that is not data, is refused.
    torch.save(masker.state_dict(), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="no masking model"):
        load_masking_model(tmp_path / "model.pt")
    bad = tmp_path / "bad"
    save_masking_model(masker, bad)
    from safetensors.torch import load_file, save_file

    meta = json.loads(on_disk and (bad / "masker.json").read_text())
    meta["config"]["width"] = "4"
    save_file(load_file(str(bad / "masker.safetensors")), str(bad / "masker.safetensors"),
              metadata={"foveal": json.dumps(meta)})  # fmt: skip
    with pytest.raises(ValueError, match="config values must be integers"):
        load_masking_model(bad)
