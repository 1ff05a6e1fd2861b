"""Detectors: thresholds at a target FPR, checkpoints, SPAM closed forms, odds-are-odd z-scores,
feature squeezing, CNN detectors that detect, adaptive attacks and detector adversarial
training, saliency-shift statistics and the generalisation matrix (tiny models, fixed seeds)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from foveal.attacks import FGSM
from foveal.detectors import (
    DETECTORS,
    AdaptiveAttack,
    DetectorEvasion,
    FeatureSqueezing,
    FLDEnsemble,
    ImageDetector,
    OddsAreOdd,
    SalientPixelDetector,
    adversarial_training,
    collect_images,
    create_detector,
    evasion_report,
    generalization_matrix,
    load_detector,
    saliency_shift,
    spam_features,
    squeeze,
    threshold_for_fpr,
)
from foveal.saliency import MaskingModel


class TinyClassifier(nn.Module):
    """3 classes on 1x28x28 images: where the bright square is (left, centre, right)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 5, stride=2, padding=2), nn.ReLU())
        self.fc = nn.Linear(6 * 14 * 14, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


def make_data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = 0.25 * torch.rand(n, 1, 28, 28, generator=gen)
    for i in range(n):
        c = 3 + 9 * int(y[i])
        x[i, :, 10:18, c : c + 8] += 0.6
    return x.clamp(0, 1), y


@pytest.fixture(scope="module")
def classifier() -> nn.Module:
    torch.manual_seed(0)
    clf = TinyClassifier()
    x, y = make_data(150, seed=1)
    opt = torch.optim.Adam(clf.parameters(), lr=0.01)
    for _ in range(40):
        loss = nn.functional.cross_entropy(clf(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return clf.eval()


@pytest.fixture(scope="module")
def masker() -> MaskingModel:
    torch.manual_seed(0)
    return MaskingModel(num_classes=3, in_channels=1, width=4, depth=2).eval()


@pytest.fixture(scope="module")
def fgsm_data(classifier: nn.Module):
    x, y = make_data(240, seed=2)
    x_adv = FGSM(classifier, eps=0.15)(x, y)
    return x, y, x_adv


CNN_KW = {"width": 0.25, "epochs": 3}


# ---------------------------------------------------------------------------- interface
def test_threshold_for_fpr_exact_and_held_out(classifier: nn.Module) -> None:
    scores = torch.arange(1000.0)
    for fpr in (0.0, 0.01, 0.05, 0.5):
        t = threshold_for_fpr(scores, fpr)
        assert int((scores > t).sum()) == math.floor(fpr * 1000)
    assert threshold_for_fpr(torch.tensor([1.0, 1.0, 1.0]), 0.5) == 1.0  # ties: none above
    assert threshold_for_fpr(scores, 1.0) == -math.inf
    # A real detector: the FPR carries over to held-out clean data within sampling error.
    x, _ = make_data(2400, seed=5)
    det = FeatureSqueezing(classifier, squeezers=["bits:2", "median:3"], fpr=0.1).fit(x[:1200])
    assert int(det.detect(x[:1200]).sum()) <= 120
    det.calibrate(x[:1200], fpr=0.05)
    held_out = float(det.detect(x[1200:]).float().mean())
    sigma = math.sqrt(0.05 * 0.95 / 1200)
    assert abs(held_out - 0.05) < 3.5 * sigma, held_out
    assert det.calibration == {"fpr": 0.05, "n": 1200}


def test_collect_images_accepts_tensors_datasets_and_loaders() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.rand(10, 1, 4, 4)
    loader = DataLoader(TensorDataset(x, torch.zeros(10)), batch_size=3)
    assert torch.equal(collect_images(loader), x)
    assert torch.equal(collect_images([{"image": x[:4]}, {"image": x[4:]}]), x)
    with pytest.raises(ValueError, match="must lie in"):
        collect_images(x * 300)
    with pytest.raises(TypeError, match="image tensor"):
        collect_images(3)


def test_errors_are_clear(classifier: nn.Module, masker: MaskingModel) -> None:
    x = torch.rand(4, 1, 28, 28)
    with pytest.raises(ValueError, match="needs adversarial images"):
        ImageDetector(**CNN_KW).fit(x)
    with pytest.raises(RuntimeError, match="not fitted"):
        ImageDetector().score(x)
    with pytest.raises(ValueError, match="did you mean 'spd'"):
        create_detector("spdd", classifier)
    with pytest.raises(ValueError, match="needs the classifier"):
        create_detector("jsd")
    with pytest.raises(TypeError, match="needs masker"):
        create_detector("smd", classifier)
    with pytest.raises(ValueError, match="arch must be"):
        ImageDetector(arch="vgg")
    with pytest.raises(ValueError, match="noise setting"):
        OddsAreOdd(classifier, noise=["x0.1"])
    with pytest.raises(ValueError, match="squeezer"):
        FeatureSqueezing(classifier, squeezers=["blur:3"])


# ---------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("name", sorted(DETECTORS.names()))
def test_save_load_round_trip_gives_identical_scores(
    name: str, tmp_path, classifier: nn.Module, masker: MaskingModel, fgsm_data
) -> None:
    x, _, x_adv = fgsm_data
    kwargs: dict = {
        "id": CNN_KW, "jsd": CNN_KW, "smd": {**CNN_KW, "masker": masker},
        "spd": {**CNN_KW, "masker": masker}, "steganalysis": {"learners": 5, "subspace": 50},
        "odds": {"noise": ["n0.01", "u0.01"], "samples": 8}, "squeeze": {},
    }[name]  # fmt: skip
    det = create_detector(name, classifier, **kwargs)
    det.fit(x[:60], x_adv[:60] if det.needs_adversarial else None)
    det.calibrate(x[60:120], fpr=0.1)
    before = det.score(x_adv[120:150])
    det.save(tmp_path / name, {"note": "test"})
    loaded = load_detector(tmp_path / name, model=classifier)
    assert type(loaded) is type(det)
    assert torch.equal(loaded.score(x_adv[120:150]), before)
    assert loaded.threshold == det.threshold
    assert loaded.calibration == {"fpr": 0.1, "n": 60}
    desc = json.loads((tmp_path / name / "detector.json").read_text())
    assert desc["detector"] == name and desc["meta"]["note"] == "test"


def test_load_refuses_pickles_and_other_files(tmp_path, classifier: nn.Module, fgsm_data) -> None:
    x, _, x_adv = fgsm_data
    det = ImageDetector(**CNN_KW).fit(x[:20], x_adv[:20])
    torch.save({"w": torch.zeros(1)}, tmp_path / "det.pt")
    with pytest.raises(ValueError, match="no detector"):
        load_detector(tmp_path / "det.pt")
    det.save(tmp_path / "d")
    from safetensors.torch import load_file, save_file

    weights = tmp_path / "d" / "detector.safetensors"
    save_file(load_file(str(weights)), str(weights), metadata={"foveal": '{"kind": "model"}'})
    with pytest.raises(ValueError, match="not a detector checkpoint"):
        load_detector(tmp_path / "d")
    spd = tmp_path / "s"
    SalientPixelDetector(
        classifier, masker=MaskingModel(num_classes=3, in_channels=1, width=4, depth=2), **CNN_KW
    ).fit(x[:20], x_adv[:20]).save(spd)
    with pytest.raises(ValueError, match="needs the classifier"):
        load_detector(spd)


# ---------------------------------------------------------------------------- SPAM
def test_spam_constant_image_is_one_hot_per_half() -> None:
    for kind in ("joint", "transition"):
        f = spam_features(torch.full((2, 3, 9, 7), 0.4), kind=kind)
        assert f.shape == (2, 3 * 686)
        for c in range(3):
            straight, diagonal = f[0, 686 * c : 686 * c + 343], f[0, 686 * c + 343 : 686 * (c + 1)]
            assert straight[171] == 1.0 and diagonal[171] == 1.0
            assert straight.sum() == 1.0 and diagonal.sum() == 1.0
    assert spam_features(torch.zeros(1, 3, 8, 8), color="mean").shape == (1, 686)
    assert spam_features(torch.zeros(1, 3, 8, 8), color="gray").shape == (1, 686)


def test_spam_ramp_closed_form() -> None:
    # I(i, j) = j: horizontal differences are -1 (right) / +1 (left), vertical ones 0; the
    # diagonals see -1 (down-right, up-right) and +1 (up-left, down-left).
    ramp = torch.arange(16.0).div(255).expand(1, 1, 12, 16).contiguous()
    f = spam_features(ramp)[0]
    idx = {d: (d + 3) * 49 + (d + 3) * 7 + (d + 3) for d in (-1, 0, 1)}
    straight, diagonal = f[:343], f[343:]
    assert straight[idx[-1]] == pytest.approx(0.25) and straight[idx[1]] == pytest.approx(0.25)
    assert straight[idx[0]] == pytest.approx(0.5)
    assert diagonal[idx[-1]] == pytest.approx(0.5) and diagonal[idx[1]] == pytest.approx(0.5)
    # Perturbations below half a grey level vanish in the quantised image.
    assert np.array_equal(spam_features(ramp + 0.4 / 255), spam_features(ramp))


def test_fld_ensemble_separates_and_steganalysis_detects_noise() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, (300, 40)), rng.normal(0.4, 1, (300, 40))
    ens = FLDEnsemble(learners=21, subspace=20, seed=1).fit(a[:200], b[:200])
    acc = 0.5 * ((ens.decision(a[200:]) <= 0).mean() + (ens.decision(b[200:]) > 0).mean())
    assert acc > 0.85
    assert ens.subspaces.shape == (21, 20) and set(np.unique(ens.votes(a))) <= set(
        np.arange(22) / 21
    )
    # Smooth images vs the same images with +-2/255 pixel noise: SPAM sees the noise.
    gen = torch.Generator().manual_seed(0)
    base = torch.nn.functional.interpolate(torch.rand(200, 1, 4, 4, generator=gen), size=24,
                                           mode="bilinear", align_corners=False)  # fmt: skip
    noisy = (base + (2 / 255) * torch.randint(-1, 2, base.shape, generator=gen)).clamp(0, 1)
    det = create_detector("steganalysis", learners=11, subspace=200).fit(base[:100], noisy[:100])
    acc = 0.5 * (float(det.detect(noisy[100:]).float().mean())
                 + 1 - float(det.detect(base[100:]).float().mean()))  # fmt: skip
    assert acc > 0.9


# ---------------------------------------------------------------------------- odds are odd
def test_odds_zscores_of_clean_held_out_data_are_roughly_standard_normal(
    classifier: nn.Module,
) -> None:
    x, y = make_data(600, seed=3)
    det = OddsAreOdd(classifier, noise=["n0.02", "u0.02", "s0.02"], samples=16)
    det.fit(x[:300], labels=y[:300])
    assert int(det.counts.sum()) >= 290  # correctly classified training images
    z, pred = det.zscores(x[300:])
    assert z.shape == (300, 3, 3)
    assert torch.isnan(z.gather(2, pred.view(-1, 1, 1).expand(-1, 3, 1))).all()
    values = z[~torch.isnan(z)]
    assert abs(float(values.mean())) < 0.2
    assert 0.75 < float(values.std()) < 1.3
    # Batched noise: scores do not depend on the batch an image comes in (up to the float
    # rounding of convolutions over batches of other sizes, ~1e-4 here with two threads;
    # different noise would move the scores by ~0.1).
    assert torch.allclose(det.score(x[300:310], batch_size=3), det.score(x[300:310]), atol=2e-3)


def test_odds_flags_adversarial_images_and_correction_recovers_classes(
    classifier: nn.Module,
) -> None:
    from foveal.attacks import PGD

    x, y = make_data(420, seed=4)
    det = OddsAreOdd(classifier, noise=["n0.05", "u0.05"], samples=16,
                     correction_noise=["n0.1", "u0.1"]).fit(x[:300], labels=y[:300])  # fmt: skip
    det.calibrate(x[300:360], fpr=0.05)
    adv = PGD(classifier, eps=0.3, steps=10)(x[360:], y[360:])
    fooled = classifier(adv).argmax(1) != y[360:]
    assert float(fooled.float().mean()) > 0.8
    assert float(det.detect(adv)[fooled].float().mean()) > 0.5
    train_adv = PGD(classifier, eps=0.3, steps=10)(x[:300], y[:300])
    det.fit_correction(train_adv, y[:300])
    corrected = det.correct(adv)
    assert float((corrected == y[360:]).float().mean()) > float((~fooled).float().mean()) + 0.2


# ---------------------------------------------------------------------------- squeezing
def test_squeezers_closed_form() -> None:
    x = torch.tensor([[[[0.1, 0.9, 0.2], [0.4, 0.6, 0.5], [0.0, 1.0, 0.3]]]])
    assert torch.equal(squeeze(x, "bits:1"), (x > 0.5).float())
    med = squeeze(x, "median:3")
    assert med[0, 0, 1, 1] == pytest.approx(float(x.flatten().median()))
    assert squeeze(torch.rand(1, 3, 8, 8), "nlm:3-2-10").shape == (1, 3, 8, 8)


# ---------------------------------------------------------------------------- CNN detectors
@pytest.mark.parametrize("name", ["id", "jsd", "spd"])
def test_cnn_detectors_detect_fgsm(name: str, classifier: nn.Module, masker, fgsm_data) -> None:
    x, _, x_adv = fgsm_data
    extra = {"masker": masker} if name == "spd" else {}
    det = create_detector(name, classifier, width=0.25, epochs=8, **extra)
    det.fit(x[:160], x_adv[:160])
    report = {"tpr": float(det.detect(x_adv[160:]).float().mean()),
              "fpr": float(det.detect(x[160:]).float().mean())}  # fmt: skip
    assert report["tpr"] - report["fpr"] > 0.6, report
    assert det.features(x[:2]).shape[1] == {"id": 1, "jsd": 2, "spd": 1}[name]


def test_input_gradients(classifier: nn.Module, masker, fgsm_data) -> None:
    x, _, x_adv = fgsm_data
    for name in ("smd", "spd", "jsd"):
        extra = {"masker": masker} if name in ("smd", "spd") else {}
        det = create_detector(name, classifier, **CNN_KW, **extra).fit(x[:40], x_adv[:40])
        for mode in ("full", "input"):
            g = det.input_gradient(x[:3], mode=mode)
            assert g.shape == x[:3].shape and float(g.abs().sum()) > 0
            # A step along the gradient's sign raises the log-odds, against it lowers them.
            if mode == "full" or name != "smd":
                up = det.log_odds((x[:3] + 0.02 * g.sign()).clamp(0, 1))
                down = det.log_odds((x[:3] - 0.02 * g.sign()).clamp(0, 1))
                assert bool((up > down).all()), (name, mode, up, down)


# ---------------------------------------------------------------------------- adaptive attacks
def test_adaptive_attack_evades_and_adversarial_training_recovers(
    classifier: nn.Module, fgsm_data
) -> None:
    x, y, x_adv = fgsm_data
    det = ImageDetector(width=0.25, epochs=8).fit(x[:160], x_adv[:160])
    black = evasion_report(classifier, det, x[160:], x_adv[160:], y[160:])
    attack = AdaptiveAttack(classifier, det, eps=0.15, alpha=0.02, steps=5, repeats=2)
    white = attack(x[160:], y[160:])
    assert float((white - x[160:]).abs().amax()) <= 0.15 + 1e-6
    report = evasion_report(classifier, det, x[160:], white, y[160:])
    assert report["detected"] < black["detected"] - 0.3, (black, report)
    assert report["misclassified"] > 0.5
    combined = AdaptiveAttack(classifier, det, eps=0.15, mode="combined", steps=5, repeats=2)
    assert float(det.detect(combined(x[160:], y[160:])).float().mean()) < black["detected"]
    result = adversarial_training(det, classifier, x[:160], y[:160], x_adv[:160], rounds=2,
                                  epochs=4, attack_kwargs={"eps": 0.15, "alpha": 0.02,
                                                           "steps": 5, "repeats": 2})  # fmt: skip
    assert [r["round"] for r in result.history] == [1, 2]
    last = result.history[-1]
    assert last["white_box_detected_after"] > last["white_box_detected_before"]
    fresh = AdaptiveAttack(classifier, det, eps=0.15, alpha=0.02, steps=5, repeats=2)
    after = evasion_report(classifier, det, x[160:], fresh(x[160:], y[160:]), y[160:])
    # After training on white-box examples, the attack no longer gets past both.
    assert after["evaded"] < report["evaded"] - 0.3, (report, after)


def test_detector_evasion_objective_term(classifier: nn.Module, fgsm_data) -> None:
    from foveal.attacks import PGD, CrossEntropy

    x, y, x_adv = fgsm_data
    det = ImageDetector(**CNN_KW).fit(x[:80], x_adv[:80])
    objective = CrossEntropy() + 2.0 * DetectorEvasion(det)
    plain = PGD(classifier, eps=0.15, steps=10)(x[160:200], y[160:200])
    aware = PGD(classifier, eps=0.15, steps=10, objective=objective)(x[160:200], y[160:200])
    assert float(det.score(aware).mean()) < float(det.score(plain).mean())


# ---------------------------------------------------------------------------- statistics
def test_saliency_shift_statistics() -> None:
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(60, 1, 6, 6, generator=gen)
    same = saliency_shift(clean, clean.clone())
    assert same.adversarial_mean == 0.0 and same.p_value < 1e-10 and same.effect == 0.0
    # An adversarial "shift" as large as the difference between independent images.
    other = torch.rand(60, 1, 6, 6, generator=gen)
    like = saliency_shift(clean, other, seed=1)
    assert like.p_value > 0.01 and 0.35 < like.effect < 0.65
    assert like.different_mean == pytest.approx(math.sqrt(1 / 6), rel=0.15)  # E|U-U'|^2 = 1/6
    bigger = saliency_shift(clean, (1 - clean))
    assert bigger.adversarial_mean > bigger.different_mean and bigger.p_value < 1e-3


def test_generalization_matrix_writes_table_and_heatmap(
    tmp_path, classifier: nn.Module, masker, fgsm_data
) -> None:
    from foveal.attacks import BIM

    x, y, x_adv = fgsm_data
    bim = BIM(classifier, eps=0.15, steps=5)(x, y)
    mat, fitted = generalization_matrix(
        classifier, x[:100], {"fgsm": x_adv[:100], "bim": bim[:100]},
        x[200:], {"fgsm": x_adv[200:], "bim": bim[200:]}, detectors=("id", "smd"),
        masker=masker, detector_kwargs=CNN_KW,
    )  # fmt: skip
    assert set(fitted) == {"id", "smd"} and set(fitted["id"]) == {"fgsm", "bim"}
    for det in ("id", "smd"):
        for tr in ("fgsm", "bim"):
            for te in ("fgsm", "bim"):
                r = mat.results[det][tr][te]
                assert 0 <= r["accuracy"] <= 1 and 0 <= r["auc"] <= 1
                assert r["accuracy"] == pytest.approx(0.5 * (r["tpr"] + 1 - r["fpr"]))
    assert mat.value("id", "fgsm", "fgsm") > 0.8
    paths = mat.save(tmp_path)
    assert json.loads(paths[0].read_text())["attacks"] == ["fgsm", "bim"]
    assert "| FGSM |" in paths[1].read_text()
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
