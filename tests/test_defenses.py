"""Input-transform defenses and randomized smoothing on closed-form cases."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import norm
from torch import nn

import foveal
from foveal.defenses import ABSTAIN, TRANSFORMS, InputTransform, Smooth, make_transform
from foveal.defenses.transforms import masked_tv


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return foveal.data.load("shapes", split="test", n=4, size=32).images


@pytest.mark.parametrize("name", TRANSFORMS.names())
def test_transforms_keep_shape_and_range(name: str, images: torch.Tensor) -> None:
    t = make_transform(name)
    y = t(images)
    assert y.shape == images.shape and y.dtype == images.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    gray = t(images[:, :1])
    assert gray.shape == images[:, :1].shape


@pytest.mark.parametrize("name", ["avg-pool", "max-pool", "median", "resize", "tvm"])
def test_constant_image_stays_constant(name: str) -> None:
    x = torch.full((2, 3, 16, 16), 0.3)
    atol = 2e-3 if name == "tvm" else 1e-5  # TVM: an iterative solver, 100 iterations
    torch.testing.assert_close(make_transform(name)(x), x, atol=atol, rtol=0)


def test_bit_depth_one_gives_binary_image(images: torch.Tensor) -> None:
    y = make_transform("bit-depth", bits=1)(images)
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(y, (images >= 0.5).float())


def test_jpeg_quality_100_is_near_identity(images: torch.Tensor) -> None:
    hi = (make_transform("jpeg", quality=100)(images) - images).abs().mean()
    lo = (make_transform("jpeg", quality=10)(images) - images).abs().mean()
    assert float(hi) < 0.03 and float(lo) > 2 * float(hi)


def test_dnn_jpeg_keeps_low_frequencies_and_identity_table(images: torch.Tensor) -> None:
    # With qs = 0 and quality 50 every step is 1: only colour-space rounding remains.
    y = make_transform("dnn-jpeg", quality=50, qs=0)(images)
    assert float((y - images).abs().max()) <= 3.5 / 255
    # A smooth ramp lives in the low band and survives the default table almost unchanged.
    ramp = torch.linspace(0.2, 0.8, 16).repeat(1, 3, 16, 1)
    assert float((make_transform("dnn-jpeg")(ramp) - ramp).abs().max()) <= 3.5 / 255
    noisy = make_transform("dnn-jpeg")(images)
    assert float((noisy - images).abs().mean()) > float((y - images).abs().mean())


def test_median_removes_salt_noise() -> None:
    x = torch.full((1, 1, 9, 9), 0.5)
    x[0, 0, 4, 4] = 1.0
    torch.testing.assert_close(make_transform("median", k=3)(x), torch.full_like(x, 0.5))


def test_masked_tv_fills_dropped_pixels_from_neighbours() -> None:
    x = torch.zeros(1, 1, 8, 8)
    x[..., 4:] = 1.0
    keep = torch.ones_like(x)
    keep[..., 2, 1] = 0  # a dropped pixel deep in the dark half
    x_obs = x.clone()
    x_obs[..., 2, 1] = 1.0  # whatever it held is ignored
    z = masked_tv(x_obs, keep, weight=0.01, iters=300)
    assert float(z[..., 2, 1]) < 0.05
    assert float((z - x).abs().mean()) < 0.05


def test_transform_argument_errors() -> None:
    with pytest.raises(ValueError, match="quality must lie in \\[1, 100\\]; got 0"):
        make_transform("jpeg", quality=0)
    with pytest.raises(ValueError, match="gamma must lie in \\(0, 1\\]; got 1.5"):
        make_transform("resize", gamma=1.5)
    with pytest.raises(ValueError, match="bits must lie in \\[1, 8\\]; got 9"):
        make_transform("bit-depth", bits=9)
    with pytest.raises(ValueError, match="unknown input transform 'jpg'"):
        make_transform("jpg")


def test_bpda_gives_identity_gradient_through_jpeg(images: torch.Tensor) -> None:
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2))
    wrapped = InputTransform(lin, "jpeg", quality=50)
    assert wrapped.bpda
    x = images.clone().requires_grad_(True)
    wrapped(x)[:, 0].sum().backward()
    expected = lin[1].weight[0].reshape(1, 3, 32, 32).expand_as(x)
    torch.testing.assert_close(x.grad, expected)
    # Differentiable transforms keep their true gradient by default.
    assert not InputTransform(lin, "avg-pool").bpda
    with pytest.raises(ValueError, match="x must lie in \\[0, 1\\]"):
        wrapped(images * 255)


class _Constant(nn.Module):
    """Always predicts class ``c`` (of ``k``)."""

    def __init__(self, c: int, k: int = 4) -> None:
        super().__init__()
        self.c, self.k = c, k
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], self.k)
        out[:, self.c] = 1.0
        return out


def test_predict_abstains_on_tied_counts() -> None:
    tied = torch.tensor([[50, 50, 0], [90, 10, 0]])
    assert Smooth.decide(tied, 0.001).tolist() == [ABSTAIN, 0]


def test_certify_radius_matches_closed_form() -> None:
    sigma, n, alpha = 0.25, 1000, 0.001
    smooth = Smooth(_Constant(2), sigma)
    cert = smooth.certify(torch.full((2, 1, 4, 4), 0.5), n0=10, n=n, alpha=alpha, batch_size=300)
    # All n samples vote for class 2: pA_lower = alpha ** (1/n) (Clopper-Pearson, k = n).
    p_low = alpha ** (1 / n)
    assert cert.prediction.tolist() == [2, 2]
    torch.testing.assert_close(cert.radius, torch.full((2,), sigma * norm.ppf(p_low),
                                                        dtype=torch.float64))  # fmt: skip
    # Known counts: 600 of 1000 -> radius sigma * Phi^-1(lower bound); 500 of 1000 -> abstain.
    res = Smooth.radius(torch.tensor([1, 1]), torch.tensor([600, 500]), 1000, alpha, sigma)
    from scipy.stats import beta

    low = beta.ppf(alpha, 600, 401)
    assert res.prediction.tolist() == [1, ABSTAIN]
    assert float(res.radius[0]) == pytest.approx(sigma * norm.ppf(low))
    assert float(res.radius[1]) == 0.0


def test_predict_on_a_constant_model_and_noise_is_seeded() -> None:
    x = torch.rand(3, 1, 4, 4)
    assert Smooth(_Constant(1), 0.5).predict(x, n=50, alpha=0.01).tolist() == [1, 1, 1]
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    a = Smooth(lin, 0.5, seed=3).counts(x, 64, batch_size=16)
    b = Smooth(lin, 0.5, seed=3).counts(x, 64, batch_size=16)
    assert torch.equal(a, b) and int(a.sum()) == 3 * 64


def test_smooth_cli_certify_and_predict(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from foveal.app.cli import app

    net = foveal.models.create("shapes-cnn", width=4)
    foveal.models.save(net, tmp_path / "m", {"arch": "shapes-cnn", "arch_kwargs": {"width": 4},
                                            "num_classes": 10, "in_channels": 3})  # fmt: skip
    runner = CliRunner()
    res = runner.invoke(app, ["smooth", "certify", "--model", str(tmp_path / "m"), "--n-images",
                              "3", "--n0", "10", "--n", "50", "--out", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "certify.json").read_text())
    assert len(record["radii"]) == 3 and all(r >= 0 for r in record["radii"])
    # Certified accuracy can only fall as the radius grows.
    values = list(record["certified"].values())
    assert values == sorted(values, reverse=True)
    res = runner.invoke(app, ["smooth", "predict", "--model", str(tmp_path / "m"), "--n-images",
                              "4", "--n", "20"])  # fmt: skip
    assert res.exit_code == 0 and "smoothed accuracy" in res.output
    res = runner.invoke(app, ["smooth", "certify", "--model", str(tmp_path / "m"), "--sigma", "-1"])
    assert res.exit_code == 2 and "sigma > 0" in res.output
