"""Adversarial-example detectors and the attacks that target them.

One interface (:class:`Detector`): ``fit(clean, adversarial)``, ``score(x) -> (N,)``,
``detect(x) -> bool (N,)``, ``calibrate(clean, fpr=...)`` for a threshold at a target
false-positive rate, ``save`` / :func:`load_detector` as safetensors + JSON. Registered
detectors (:data:`DETECTORS`, ``foveal detect``):

- ``id``, ``jsd``, ``smd``, ``spd``: the CNN detectors of the SMD/SPD paper ("Model-based saliency
  for the detection of adversarial examples", an anonymous ICLR 2020 submission) on the image,
  image + logit Jacobian, learned saliency map, and salient pixels (map x image);
- ``steganalysis``: SPAM-686 features + an ensemble of Fisher linear discriminants (as in
  Dong et al. 2020);
- ``odds``: the odds-are-odd statistical test (the target of Elliott et al. 2019);
- ``squeeze``: feature squeezing, a cheap baseline.

Also: :class:`AdaptiveAttack` (the SMD/SPD paper, Algorithms 1-3, and a combined objective),
:func:`adversarial_training` of detectors, :func:`saliency_shift` (L2 shift of saliency maps with
a Mann-Whitney U test) and :func:`generalization_matrix` (train on one attack, test on all).

Example:
    >>> import torch
    >>> from foveal.detectors import create_detector
    >>> x = torch.rand(40, 1, 28, 28)
    >>> x_adv = (x + 0.2 * torch.randn_like(x).sign()).clamp(0, 1)
    >>> det = create_detector("id", width=0.25, epochs=2).fit(x, x_adv)
    >>> det.detect(x_adv).shape
    torch.Size([40])
"""

from __future__ import annotations

from foveal.detectors.adaptive import (
    AdaptiveAttack,
    AdversarialTrainingResult,
    DetectorEvasion,
    adversarial_training,
    evasion_report,
)
from foveal.detectors.base import (
    DETECTORS,
    Detector,
    collect_images,
    create_detector,
    load_detector,
    threshold_for_fpr,
)
from foveal.detectors.cnn import (
    CNNDetector,
    ImageDetector,
    JacobianDetector,
    SaliencyMapDetector,
    SalientPixelDetector,
)
from foveal.detectors.matrix import (
    ATTACK_LABELS,
    SMD_SPD_ATTACKS,
    SMD_SPD_SETTINGS,
    DetectionMatrix,
    detection_accuracy,
    generalization_matrix,
    generate_adversarial,
    smd_spd_attack,
)
from foveal.detectors.networks import DetectorNet, auto_arch
from foveal.detectors.odds import CORRECTION_NOISE, DETECTION_NOISE, OddsAreOdd, parse_noise
from foveal.detectors.shift import (
    ShiftStatistics,
    map_distances,
    saliency_shift,
    saliency_shift_of,
)
from foveal.detectors.squeeze import FeatureSqueezing, squeeze
from foveal.detectors.steganalysis import FLDEnsemble, SteganalysisDetector, spam_features

__all__ = [
    "ATTACK_LABELS",
    "CORRECTION_NOISE",
    "DETECTION_NOISE",
    "DETECTORS",
    "SMD_SPD_ATTACKS",
    "SMD_SPD_SETTINGS",
    "AdaptiveAttack",
    "AdversarialTrainingResult",
    "CNNDetector",
    "DetectionMatrix",
    "Detector",
    "DetectorEvasion",
    "DetectorNet",
    "FLDEnsemble",
    "FeatureSqueezing",
    "ImageDetector",
    "JacobianDetector",
    "OddsAreOdd",
    "SaliencyMapDetector",
    "SalientPixelDetector",
    "ShiftStatistics",
    "SteganalysisDetector",
    "adversarial_training",
    "auto_arch",
    "collect_images",
    "create_detector",
    "detection_accuracy",
    "evasion_report",
    "generalization_matrix",
    "generate_adversarial",
    "load_detector",
    "map_distances",
    "parse_noise",
    "saliency_shift",
    "saliency_shift_of",
    "smd_spd_attack",
    "spam_features",
    "squeeze",
    "threshold_for_fpr",
]
