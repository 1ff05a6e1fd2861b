"""Saliency: maps, maskers, superpixels, the learned masking model and the foreground score.

Every method is a class called as ``method(images, target=None)`` returning non-negative maps
(N,1,H,W) on the images' device; ``METHODS`` maps names to classes. Maskers turn maps into
binary :class:`Regions`; :func:`slic_superpixels` gives superpixel ids (N,H,W).

What comes from where:

- captum: vanilla gradient, SmoothGrad's gradients, Integrated Gradients, Guided Backprop,
  input x gradient, Grad-CAM;
- scikit-image: SLIC and the region-adjacency-graph merge;
- written here (no library provides them in torch, batched and differentiable): CAM, the
  spectral-residual fixation model, the learned masking model and its objective, the maskers,
  the perturbation-magnitude and ground-truth sources, the foreground score.

Example:
    >>> import foveal
    >>> from foveal.saliency import create_method, HalfRange
    >>> model = foveal.models.create("shapes-cnn")
    >>> x = foveal.data.load("shapes", split="test", n=4).images
    >>> maps = create_method("gradcam", model)(x)
    >>> regions = HalfRange()(maps)
    >>> regions.foreground.shape
    torch.Size([4, 1, 32, 32])
"""

from __future__ import annotations

from foveal.saliency.base import (
    METHODS,
    SaliencyMethod,
    create_method,
    eval_mode,
    normalize_maps,
    resolve_target,
)
from foveal.saliency.cam import CAM, GradCAM, find_last_conv_block, resolve_layer
from foveal.saliency.fixation import DensityModel, SpectralResidual, spectral_residual
from foveal.saliency.gradients import (
    Gradient,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    SmoothGrad,
)
from foveal.saliency.learned import (
    LearnedSaliency,
    MaskingModel,
    MaskObjective,
    TrainResult,
    evaluate_objective,
    load_masking_model,
    save_masking_model,
    train_masking_model,
)
from foveal.saliency.maskers import (
    MASKERS,
    Binarize,
    GroundTruthMasker,
    HalfRange,
    Masker,
    Percentile,
    Regions,
    TopKMass,
    binarize,
    half_range,
    percentile,
    top_k_mass,
)
from foveal.saliency.score import ForegroundScore, foreground_score
from foveal.saliency.sources import (
    CenterBaseline,
    GroundTruth,
    PerturbationMagnitude,
    perturbation_magnitude,
)
from foveal.saliency.superpixels import merge_similar, slic_superpixels, superpixel_means

__all__ = [
    "CAM",
    "MASKERS",
    "METHODS",
    "Binarize",
    "CenterBaseline",
    "DensityModel",
    "ForegroundScore",
    "GradCAM",
    "Gradient",
    "GroundTruth",
    "GroundTruthMasker",
    "GuidedBackprop",
    "HalfRange",
    "InputXGradient",
    "IntegratedGradients",
    "LearnedSaliency",
    "MaskObjective",
    "Masker",
    "MaskingModel",
    "Percentile",
    "PerturbationMagnitude",
    "Regions",
    "SaliencyMethod",
    "SmoothGrad",
    "SpectralResidual",
    "TopKMass",
    "TrainResult",
    "binarize",
    "create_method",
    "eval_mode",
    "evaluate_objective",
    "find_last_conv_block",
    "foreground_score",
    "half_range",
    "load_masking_model",
    "merge_similar",
    "normalize_maps",
    "percentile",
    "perturbation_magnitude",
    "resolve_layer",
    "resolve_target",
    "save_masking_model",
    "slic_superpixels",
    "spectral_residual",
    "superpixel_means",
    "top_k_mass",
    "train_masking_model",
]
