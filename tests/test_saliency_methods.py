"""Saliency methods: the properties every registered method must have, plus closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import foveal
from foveal.data import ArrayDataset
from foveal.models import Normalized
from foveal.saliency import (
    CAM,
    METHODS,
    CenterBaseline,
    DensityModel,
    GradCAM,
    Gradient,
    GroundTruth,
    MaskingModel,
    PerturbationMagnitude,
    SmoothGrad,
    SpectralResidual,
    create_method,
    find_last_conv_block,
    normalize_maps,
    perturbation_magnitude,
    spectral_residual,
)
from foveal.saliency.fixation import gaussian_blur


class TinyNet(nn.Module):
    """Two convs, GAP and a linear layer: CAM and Grad-CAM both apply."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


@pytest.fixture(scope="module")
def model() -> nn.Module:
    torch.manual_seed(0)
    return Normalized(TinyNet(), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _shift_attack(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A deterministic 'attack': moves each image by a class-dependent pattern."""
    pattern = torch.linspace(0, 0.05, x.shape[-1]).view(1, 1, 1, -1)
    return (x + pattern * (1 + y.view(-1, 1, 1, 1).float())).clamp(0, 1)


def _build(name: str, model: nn.Module, images: torch.Tensor):
    if name == "ground-truth":
        masks = (images[:, :1] > 0.5).float()
        return GroundTruth(masks)
    if name == "perturbation":
        return PerturbationMagnitude(model, attack=_shift_attack)
    if name == "density":
        return DensityModel(lambda x: x.mean(dim=1, keepdim=True) * 3.0)
    if name == "learned":
        torch.manual_seed(0)
        return create_method(name, model, masker=MaskingModel(num_classes=4, width=4, depth=2))
    if name == "smoothgrad":
        return create_method(name, model, n_samples=3)
    if name == "ig":
        return create_method(name, model, n_steps=8)
    return create_method(name, model)


ALL = METHODS.names()


def test_registry_lists_the_required_methods() -> None:
    need = {"gradient", "smoothgrad", "ig", "guided-backprop", "input-x-gradient", "gradcam"}
    need |= {"cam", "spectral-residual", "density", "ground-truth", "perturbation", "learned"}
    assert need <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_method_contract(name: str, model: nn.Module, images: torch.Tensor) -> None:
    method = _build(name, model, images)
    model.train()
    grads_before = [p.grad for p in model.parameters()]
    maps = method(images)
    assert model.training, "the model's train mode must be restored"
    assert [p.grad for p in model.parameters()] == grads_before
    assert maps.shape == (5, 1, 16, 16)
    assert maps.device == images.device
    assert maps.dtype == torch.float32
    assert bool(torch.isfinite(maps).all())
    assert float(maps.min()) >= 0.0
    assert not maps.requires_grad
    # Batched == per sample (the images as given; stochastic methods use fixed seeds).
    for i in (0, 3):
        single = _build(name, model, images[i : i + 1]) if name == "ground-truth" else method
        one = single(images[i : i + 1])
        torch.testing.assert_close(one, maps[i : i + 1], rtol=1e-4, atol=1e-6)
    model.eval()


@pytest.mark.parametrize("name", ["gradient", "gradcam", "cam", "ig", "guided-backprop"])
def test_maps_depend_on_the_target(name: str, model: nn.Module, images: torch.Tensor) -> None:
    method = _build(name, model, images)
    a = method(images, target=0)
    b = method(images, target=torch.tensor([1, 1, 1, 1, 1]))
    assert not torch.allclose(a, b)
    pred = model(images).argmax(1)
    torch.testing.assert_close(method(images), method(images, target=pred))


def test_gradient_closed_form_on_linear_model() -> None:
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    x = torch.rand(2, 3, 4, 4)
    maps = Gradient(lin)(x, target=torch.tensor([2, 0]))
    w = lin[1].weight.detach().view(3, 3, 4, 4)
    expected = torch.stack([w[2].abs().amax(0), w[0].abs().amax(0)]).unsqueeze(1)
    torch.testing.assert_close(maps, expected)
    summed = Gradient(lin, reduce="sum")(x, target=1)
    torch.testing.assert_close(summed, w[1].abs().sum(0).expand(2, 1, 4, 4))


def test_gradcam_matches_captum(model: nn.Module, images: torch.Tensor) -> None:
    from captum.attr import LayerAttribution, LayerGradCam

    layer = foveal.models.get_layer(model, "features")
    target = torch.tensor([0, 1, 2, 3, 0])
    ours = GradCAM(model, layer="features")(images, target)
    ref = LayerGradCam(model, layer).attribute(images, target=target, relu_attributions=True)
    ref = LayerAttribution.interpolate(ref, (16, 16), "bilinear")
    torch.testing.assert_close(ours, ref.detach())
    assert float(ours.max()) > 0


def test_cam_equals_gradcam_times_area_on_gap_linear(
    model: nn.Module, images: torch.Tensor
) -> None:
    # For GAP + linear, Grad-CAM's alpha_k = w_ck / (h w): CAM = (h w) * Grad-CAM.
    cam = CAM(model)(images)
    grad_cam = GradCAM(model)(images)
    torch.testing.assert_close(cam, grad_cam * 16 * 16, rtol=1e-4, atol=1e-5)


def test_cam_rejects_non_gap_networks() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    )
    with pytest.raises(ValueError, match="CAM needs"):
        CAM(net, layer="1")(torch.rand(2, 3, 8, 8))


def test_layer_detection_agrees_with_default_layers() -> None:
    for arch in ("shapes-cnn", "resnet18"):
        net = foveal.models.create(arch)
        assert find_last_conv_block(net) == foveal.models.default_layer(arch)
    with pytest.raises(ValueError, match="no Conv2d"):
        find_last_conv_block(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))


def test_smoothgrad_is_seeded(model: nn.Module, images: torch.Tensor) -> None:
    a = SmoothGrad(model, n_samples=3, seed=0)(images)
    b = SmoothGrad(model, n_samples=3, seed=0)(images)
    c = SmoothGrad(model, n_samples=3, seed=1)(images)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    plain = Gradient(model)(images)
    assert not torch.allclose(a, plain)
    torch.testing.assert_close(SmoothGrad(model, n_samples=2, sigma=0.0)(images), plain)


def test_normalize_option(model: nn.Module, images: torch.Tensor) -> None:
    maps = GradCAM(model, normalize=True)(images)
    flat = maps.flatten(1)
    torch.testing.assert_close(flat.max(1).values, torch.ones(5))
    torch.testing.assert_close(flat.min(1).values, torch.zeros(5))
    torch.testing.assert_close(
        normalize_maps(torch.full((1, 1, 2, 2), 3.0)), torch.zeros(1, 1, 2, 2)
    )


def test_input_validation(model: nn.Module, images: torch.Tensor) -> None:
    method = Gradient(model)
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        method(images * 255)
    with pytest.raises(TypeError, match="floating-point"):
        method((images * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="target must have shape"):
        method(images, target=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="needs a classifier"):
        Gradient(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduce must be one of"):
        Gradient(model, reduce="median")
    with pytest.raises(ValueError, match="unknown saliency method"):
        create_method("gradcamm", model)


# --------------------------------------------------------------------- fixation
def test_spectral_residual_density_and_gradient() -> None:
    x = foveal.data.load("shapes", split="test", n=3).images.clone().requires_grad_(True)
    d = SpectralResidual(differentiable=True)(x)
    torch.testing.assert_close(d.sum(dim=(1, 2, 3)), torch.ones(3))
    assert float(d.detach().min()) >= 0
    # Not uniform: the map prefers some pixels.
    assert float(d.detach().max()) > 2.0 / (32 * 32)
    d[:, :, 8:24, 8:24].sum().backward()
    assert x.grad is not None
    assert bool(torch.isfinite(x.grad).all())
    assert float(x.grad.abs().sum()) > 0
    detached = SpectralResidual()(x)
    assert not detached.requires_grad
    torch.testing.assert_close(detached, d.detach())


def _spectral_residual_reference(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """The spectral residual written stage by stage with torch ops (autograd gradient)."""
    grey = (images * torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype).view(1, 3, 1, 1)).sum(
        1, keepdim=True
    ) * 255.0
    small = F.interpolate(grey, size=(resolution,) * 2, mode="bilinear", align_corners=False)
    spec = torch.fft.fft2(small[:, 0])
    mag = torch.sqrt(spec.real**2 + spec.imag**2 + 1e-16)
    log_amp = torch.log(mag)
    smooth = F.avg_pool2d(F.pad(log_amp[:, None], (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    back = torch.fft.ifft2(spec * torch.exp(log_amp - smooth[:, 0]) / mag)
    sal = torch.sqrt(back.real**2 + back.imag**2 + 1e-16)[:, None]
    sal = gaussian_blur(sal, 8.0, size=5) ** 2
    sal = sal / sal.amax(dim=(2, 3), keepdim=True)
    big = F.interpolate(sal, size=images.shape[2:], mode="bilinear", align_corners=False)
    return big / big.sum(dim=(2, 3), keepdim=True)


@pytest.mark.parametrize(("size", "resolution"), [(32, 64), (28, 64), (20, 16)])
def test_spectral_residual_matches_stagewise_reference_and_gradient(
    size: int, resolution: int
) -> None:
    # The fast path (cached matrices, written-out backward) is the same function as the
    # stage-by-stage version, and so is its gradient.
    gen = torch.Generator().manual_seed(size)
    x = torch.rand(3, 3, size, size + 4, generator=gen, dtype=torch.float64, requires_grad=True)
    weights = torch.rand(3, 1, size, size + 4, generator=gen, dtype=torch.float64)
    ours = spectral_residual(x, resolution=resolution)
    ref = _spectral_residual_reference(x, resolution)
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)
    (g_ours,) = torch.autograd.grad((ours * weights).sum(), x)
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), x)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-7, atol=1e-9 * float(g_ref.abs().max()))


def test_spectral_residual_gradcheck() -> None:
    x = torch.rand(2, 3, 10, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: spectral_residual(t, resolution=8), (x,))


def test_spectral_residual_matches_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "saliency"):
        pytest.skip("cv2 without the contrib saliency module")
    for size in (64, 96):
        x = foveal.data.load("shapes", split="test", n=6, size=size).images
        ours = spectral_residual(x)
        for i in range(len(x)):
            bgr = (x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)[:, :, ::-1]
            sr = cv2.saliency.StaticSaliencySpectralResidual_create()
            ok, ref = sr.computeSaliency(np.ascontiguousarray(bgr))
            assert ok
            corr = np.corrcoef(ours[i, 0].numpy().ravel(), ref.ravel())[0, 1]
            assert corr > 0.97, (size, i, corr)


def test_density_model_plugin() -> None:
    x = torch.rand(2, 3, 8, 8)
    logd = torch.randn(2, 1, 4, 4)
    d = DensityModel(lambda _x: logd)(x)
    assert d.shape == (2, 1, 8, 8)
    torch.testing.assert_close(d.sum(dim=(1, 2, 3)), torch.ones(2))
    same = DensityModel(lambda _x: logd[:, 0].exp(), log_density=False)(torch.rand(2, 3, 4, 4))
    torch.testing.assert_close(same, torch.softmax(logd.flatten(1), 1).view(2, 1, 4, 4))
    with pytest.raises(ValueError, match="negative"):
        DensityModel(lambda _x: -torch.ones(2, 1, 8, 8), log_density=False)(x)
    with pytest.raises(ValueError, match=r"\(N,1,h,w\)"):
        DensityModel(lambda _x: torch.ones(2, 2, 8, 8))(x)


# --------------------------------------------------------------------- other sources
def test_ground_truth_source() -> None:
    ds = foveal.data.load("shapes", split="test", n=4)
    gt = GroundTruth.from_dataset(ds)
    torch.testing.assert_close(gt(ds.images), ds.masks)
    sub = GroundTruth.from_dataset(ds, [1, 2])
    torch.testing.assert_close(sub(ds.images[1:3]), ds.masks[1:3])
    bare = ArrayDataset(ds.images_uint8, ds.labels, name="nomasks")
    with pytest.raises(ValueError, match="'nomasks' has no masks"):
        GroundTruth.from_dataset(bare)
    with pytest.raises(ValueError, match="masks must have shape"):
        gt(ds.images[:2])


def test_perturbation_magnitude(model: nn.Module, images: torch.Tensor) -> None:
    x = torch.full((1, 3, 2, 2), 0.5)
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] = 0.8
    x_adv[0, :, 1, 1] = 0.4
    rms = perturbation_magnitude(x, x_adv)
    torch.testing.assert_close(
        rms[0, 0], torch.tensor([[(0.09 / 3) ** 0.5, 0.0], [0.0, 0.1]]), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        perturbation_magnitude(x, x_adv, reduce="max")[0, 0], torch.tensor([[0.3, 0], [0, 0.1]])
    )
    fixed = PerturbationMagnitude(attack=x_adv)(x)
    torch.testing.assert_close(fixed, rms)
    y = torch.tensor([0, 1, 2, 3, 0])
    maps = PerturbationMagnitude(attack=_shift_attack)(images, y)
    torch.testing.assert_close(maps, perturbation_magnitude(images, _shift_attack(images, y)))
    with pytest.raises(ValueError, match="needs target labels"):
        PerturbationMagnitude(attack=_shift_attack)(images)
    with pytest.raises(TypeError, match=r"attack must be a tensor x_adv or a callable .*'pgd'"):
        PerturbationMagnitude(attack="pgd")
    with pytest.raises(ValueError, match="x_adv must have the shape"):
        perturbation_magnitude(images, images[:2])


def test_center_baseline_peaks_in_the_middle() -> None:
    maps = CenterBaseline()(torch.rand(2, 3, 9, 9))
    assert int(maps[0, 0].argmax()) == 4 * 9 + 4
    assert float(maps[0, 0, 4, 4]) == pytest.approx(1.0)
    torch.testing.assert_close(maps[0], maps[1])
