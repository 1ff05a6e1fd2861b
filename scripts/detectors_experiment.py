"""Detector experiments at small scale: seed 002's detection matrix, saliency shift, adaptive
attacks and detector adversarial training; seed 001's steganalysis comparison; seed 004's
odds-are-odd comparison; detection throughput.

    python scripts/detectors_experiment.py                      # everything, ~15 min on 2 cores
    python scripts/detectors_experiment.py --sections digits    # one section
    python scripts/detectors_experiment.py --render             # rebuild the markdown from JSON
    python scripts/detectors_experiment.py --quick              # tiny sizes, a smoke test

Writes ``docs/experiments/detectors.json`` (after every section, so a run can be resumed with
``--resume``) and ``docs/experiments/detectors.md``. Classifiers and masking models are cached
in ``--work`` (default ``runs/detectors-experiment``). Everything is seeded; torch uses
``--threads`` threads (default 2).

Sections:

- ``digits`` / ``shapes``: a classifier (mnist-cnn on digits; shapes-cnn on 32-pixel shapes),
  the learned masking model on clean training images, seed 002's attacks on held-out training
  and test images, the ID / JSD / SMD / SPD generalisation matrix, the Mann-Whitney U test of
  the saliency shift per attack; on digits also the adaptive attacks on SMD / SPD before and
  after detector adversarial training.
- ``stego``: shapes at 96 pixels, I-FGM vs SAI-FGM at the same L2 budget, detection rate of the
  steganalysis detector (SPAM-686 + FLD ensemble) trained per attack (seed 001, Table 2).
- ``odds``: odds-are-odd on the 32-pixel shapes classifier, PGD vs the perceptual-ball attack
  at Linf 8/255 (seed 004, Table 2).
- ``speed``: SPD detection throughput (saliency model included) and the odds-are-odd cost per
  image, relative to one classifier forward pass.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

import foveal
from foveal.app.jobs import TrainJob, run_train_job
from foveal.app.reproductions.stego import changed_uint8, correctly_classified
from foveal.attacks import BIM, PGD, SAIFGM, PerceptualBall, sai_budget
from foveal.detectors import (
    ATTACK_LABELS,
    AdaptiveAttack,
    OddsAreOdd,
    SteganalysisDetector,
    adversarial_training,
    detection_accuracy,
    evasion_report,
    generalization_matrix,
    generate_adversarial,
    saliency_shift,
    seed002_attack,
)
from foveal.saliency import load_masking_model, save_masking_model, train_masking_model
from foveal.training import TrainConfig, accuracy

SIX = ["fgsm", "bim", "mim", "cw", "deepfool", "jsma"]

DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"arch": "mnist-cnn", "n_train": 400, "n_test": 200, "width": 0.5,
               "attacks": SIX, "clf_epochs": 4, "clf_n": None},
    "shapes": {"arch": "shapes-cnn", "n_train": 400, "n_test": 200, "width": 0.25,
               "attacks": SIX[:5], "clf_epochs": 6, "clf_n": 6000},
}  # fmt: skip
#: Detector epochs. Seed 002 trains 10 epochs on 50,000+ images; on 800 images 10 epochs are 160
#: Adam steps, after which the 12-layer ``cifar`` network still gives a constant output on the
#: small perturbations (measured on shapes BIM / DeepFool), so the experiment trains 30.
DETECTOR_EPOCHS = 30
MASK_N = 2000  # clean training images of the masking model; detectors use the next ones


def shuffled(name: str, split: str, n: int | None = None, size: int | None = None) -> Any:
    """A split in a seeded random order (``digits`` is stored sorted by class; the procedural
    ``shapes`` images are independent draws and are returned as generated)."""
    if name == "shapes":
        return foveal.data.load(name, split=split, n=n, size=size)
    data = foveal.data.load(name, split=split, size=size)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    return data.subset(order[:n] if n is not None else order)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------ models
def classifier(
    work: Path,
    data: str,
    arch: str,
    epochs: int,
    n: int | None,
    size: int | None = None,
    init: str | None = None,
    lr: float = 3e-3,
) -> Any:
    tag = f"{data}-{arch}" + (f"-{size}px" if size else "")
    path = work / tag
    if not (path / "model.safetensors").exists():
        log(f"training the {tag} classifier")
        job = TrainJob(
            data=data,
            arch=arch,
            size=size,
            n_train=n,
            n_test=500,
            out=str(path),
            init=init,
            training=TrainConfig(epochs=epochs, batch_size=64, lr=lr),
        )
        run_train_job(job)
    return foveal.models.load(path).eval(), path


def masker(work: Path, data: str, clf: torch.nn.Module, images: torch.Tensor) -> Any:
    path = work / f"{data}-masker"
    if (path / "masker.safetensors").exists():
        return load_masking_model(path)[0]
    log(f"training the {data} masking model on {len(images)} clean images")
    res = train_masking_model(clf, images, epochs=3, batch_size=64, width=8, seed=0)
    save_masking_model(res.masker, path, {"history": res.history})
    return res.masker


# ------------------------------------------------------------------------------ sections
def matrix_section(name: str, args: argparse.Namespace) -> dict[str, Any]:
    cfg = DEFAULTS[name]
    n_tr = args.quick or args.n_train or cfg["n_train"]
    n_te = args.quick or args.n_test or cfg["n_test"]
    attacks = args.attacks.split(",") if args.attacks else cfg["attacks"]
    start = time.perf_counter()
    clf, _ = classifier(args.work, name, cfg["arch"], cfg["clf_epochs"], cfg["clf_n"])
    train = shuffled(name, "train", MASK_N + n_tr)
    test = shuffled(name, "test", max(n_te, 500))
    mk = masker(args.work, name, clf, train.images[:MASK_N])
    xtr, ytr = train.images[MASK_N:], train.labels[MASK_N:]
    xte, yte = test.images[:n_te], test.labels[:n_te]
    out: dict[str, Any] = {
        "clean_accuracy": accuracy(clf, test),
        "n_train": n_tr,
        "n_test": n_te,
        "detector_width": cfg["width"],
        "detector_epochs": DETECTOR_EPOCHS,
    }
    adv_tr, adv_te, att = adversarial_sets(name, clf, attacks, xtr, ytr, xte, yte, args)
    out["attacks"] = att
    t = time.perf_counter()
    mat, _ = generalization_matrix(
        clf,
        xtr,
        adv_tr,
        xte,
        adv_te,
        masker=mk,
        detector_kwargs={"width": cfg["width"], "epochs": DETECTOR_EPOCHS, "seed": 0},
    )
    out["matrix"] = mat.to_dict()
    out["matrix_seconds"] = time.perf_counter() - t
    mat.save(args.out / "detectors", stem=f"{name}-matrix")
    log(f"{name} matrix: {out['matrix_seconds']:.0f} s")
    # Saliency shift (seed 002, Table 1): learned maps of the predicted class.
    with torch.no_grad():

        def maps(x: torch.Tensor) -> torch.Tensor:
            return mk(x, clf(x).argmax(1))

        clean_maps = maps(xte)
        out["shift"] = {
            a: saliency_shift(clean_maps, maps(adv_te[a]), seed=0).as_dict() for a in attacks
        }
    out["seconds"] = time.perf_counter() - start
    return out


def adversarial_sets(
    name: str,
    clf: torch.nn.Module,
    attacks: list[str],
    xtr: torch.Tensor,
    ytr: torch.Tensor,
    xte: torch.Tensor,
    yte: torch.Tensor,
    args: argparse.Namespace,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """Seed 002's attacks on the training and test slices, cached in the work directory."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = args.work / f"{name}-adversarial-{len(xtr)}-{len(xte)}.safetensors"
    tensors: dict[str, torch.Tensor] = {}
    info: dict[str, Any] = {}
    if path.exists():
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as fh:
            info = json.loads((fh.metadata() or {}).get("info", "{}"))
    for a in attacks:
        if f"train.{a}" in tensors and a in info:
            continue
        t = time.perf_counter()
        atk = seed002_attack(a, clf)
        tensors[f"train.{a}"], s_tr = generate_adversarial(atk, xtr, ytr)
        tensors[f"test.{a}"], s_te = generate_adversarial(atk, xte, yte)
        d = (tensors[f"test.{a}"] - xte).flatten(1)
        info[a] = {
            "success_train": s_tr,
            "success_test": s_te,
            "seconds": time.perf_counter() - t,
            "mean_l2": float(d.norm(dim=1).mean()),
            "mean_linf": float(d.abs().amax(1).mean()),
            "settings": atk.config(),
        }
        log(f"{name} {a}: success {s_te:.2f}, {info[a]['seconds']:.0f} s")
        args.work.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata={"info": json.dumps(info)})
    adv_tr = {a: tensors[f"train.{a}"] for a in attacks}
    adv_te = {a: tensors[f"test.{a}"] for a in attacks}
    return adv_tr, adv_te, {a: info[a] for a in attacks}


def adaptive_section(args: argparse.Namespace) -> dict[str, Any]:
    """Seed 002, section 3.7 and Table 3, on digits detectors trained on FGSM."""
    from foveal.detectors import create_detector

    start = time.perf_counter()
    cfg = DEFAULTS["digits"]
    n_tr = args.quick or cfg["n_train"]
    n_te = args.quick or cfg["n_test"]
    clf, _ = classifier(args.work, "digits", cfg["arch"], cfg["clf_epochs"], cfg["clf_n"])
    train = shuffled("digits", "train", MASK_N + n_tr)
    test = shuffled("digits", "test", max(n_te, 500))
    mk = masker(args.work, "digits", clf, train.images[:MASK_N])
    xtr, ytr = train.images[MASK_N:], train.labels[MASK_N:]
    xte, yte = test.images[:n_te], test.labels[:n_te]
    adv_tr, adv_te, _ = adversarial_sets("digits", clf, ["fgsm"], xtr, ytr, xte, yte, args)
    settings = {"eps": 0.15, "alpha": 0.015, "steps": 5, "repeats": 4, "gradient": "full"}
    res: dict[str, Any] = {"settings": settings, "rounds": 2, "epochs_per_round": 10}
    for name in ("id", "smd", "spd"):
        extra = {"masker": mk} if name != "id" else {}
        det = create_detector(
            name, clf, width=cfg["width"], epochs=DETECTOR_EPOCHS, seed=0, **extra
        )
        det.fit(xtr, adv_tr["fgsm"])
        row: dict[str, Any] = {"black_box": evasion_report(clf, det, xte, adv_te["fgsm"], yte)}
        white_before = {}
        for grad in ("input", "full"):
            white_before[grad] = AdaptiveAttack(clf, det, **{**settings, "gradient": grad})(
                xte, yte
            )
            row[f"white_box_{grad}"] = evasion_report(clf, det, xte, white_before[grad], yte)
        combined = AdaptiveAttack(clf, det, **{**settings, "mode": "combined"})(xte, yte)
        row["white_box_combined"] = evasion_report(clf, det, xte, combined, yte)
        t = time.perf_counter()
        at = adversarial_training(
            det, clf, xtr, ytr, adv_tr["fgsm"], rounds=2, epochs=10, attack_kwargs=settings
        )
        row["training_history"] = at.history
        row["training_seconds"] = time.perf_counter() - t
        white = AdaptiveAttack(clf, det, **settings)(xte, yte)
        row["after_white_box_full"] = evasion_report(clf, det, xte, white, yte)
        row["after_black_box"] = evasion_report(clf, det, xte, adv_te["fgsm"], yte)
        # The white-box images made against the detector before its adversarial training.
        row["after_old_white_box_full"] = evasion_report(clf, det, xte, white_before["full"], yte)
        res[name] = row
        log(f"adaptive {name}: before {row['white_box_full']}, after {row['after_white_box_full']}")
    res["seconds"] = time.perf_counter() - start
    return res


def stego_section(args: argparse.Namespace) -> dict[str, Any]:
    """Seed 001, Table 2: steganalysis detection rate of I-FGM vs SAI-FGM, shapes at 96 px."""
    start = time.perf_counter()
    _, base_path = classifier(args.work, "shapes", "shapes-cnn", 4, 4000)
    clf, _ = classifier(args.work, "shapes", "shapes-cnn", 5, 1000, size=96, init=str(base_path))
    n = args.quick or args.stego_n
    pool = foveal.data.load("shapes", split="test", n=3 * n, size=96)
    correct, accuracy = correctly_classified(clf, pool.images, pool.labels, n)
    x, y = pool.images[correct], pool.labels[correct]
    half = len(x) // 2
    out: dict[str, Any] = {
        "classifier_accuracy_96px": accuracy,
        "n": len(x),
        "n_train": half,
        "n_test": len(x) - half,
        "deltas": {},
    }
    for delta in [float(d) for d in args.stego_deltas.split(",")]:
        eps = sai_budget(delta, x.shape[1:])
        runs = {
            "I-FGM": BIM(clf, norm="l2", eps=eps, steps=10),
            "SAI-FGM": SAIFGM(clf, delta=delta),
        }
        advs, row = {}, {}
        for label, atk in runs.items():
            t = time.perf_counter()
            advs[label], succ = generate_adversarial(atk, x, y, batch_size=50)
            row[label] = {
                "success": succ,
                "seconds": time.perf_counter() - t,
                "changed_uint8_pixels": changed_uint8(advs[label], x),
            }
        for label in runs:
            det = SteganalysisDetector(seed=0).fit(x[:half], advs[label][:half])
            clean_scores = det.score(x[half:])
            for test_label in runs:
                r = detection_accuracy(det, clean_scores, advs[test_label][half:])
                key = "detect" if test_label == label else f"detect_{test_label}"
                row[label][key] = r
        out["deltas"][f"{delta:g}"] = {"eps_l2": eps, **row}
        log(
            f"stego delta {delta:g}: I-FGM TPR {row['I-FGM']['detect']['tpr']:.2f}, SAI-FGM "
            f"{row['SAI-FGM']['detect']['tpr']:.2f}"
        )
    out["seconds"] = time.perf_counter() - start
    return out


def odds_section(args: argparse.Namespace) -> dict[str, Any]:
    """Seed 004, Table 2: odds-are-odd detection of PGD vs the perceptual-ball attack."""
    start = time.perf_counter()
    clf, _ = classifier(args.work, "shapes", "shapes-cnn", 4, 4000)
    n_fit, n_cal, n_test = (args.quick,) * 3 if args.quick else (400, 200, 150)
    train = foveal.data.load("shapes", split="train", n=MASK_N + 1000)
    test = foveal.data.load("shapes", split="test", n=n_test)
    noise = ["n0.005", "s0.005", "u0.005"]
    det = OddsAreOdd(clf, noise=noise, samples=32)
    x_fit = train.images[MASK_N : MASK_N + n_fit]
    det.fit(x_fit, labels=train.labels[MASK_N : MASK_N + n_fit])
    x_cal = train.images[MASK_N + n_fit : MASK_N + n_fit + n_cal]
    det.calibrate(x_cal, fpr=0.05)
    z, _ = det.zscores(test.images)
    zv = z[~torch.isnan(z)]
    out: dict[str, Any] = {
        "noise": noise,
        "samples": 32,
        "n_fit": n_fit,
        "n_calibration": n_cal,
        "n_test": n_test,
        "threshold": det.threshold,
        "clean_test_flagged": float(det.detect(test.images).float().mean()),
        "clean_z_mean": float(zv.mean()),
        "clean_z_std": float(zv.std()),
    }
    attacks = {
        "PGD": PGD(clf, eps=8 / 255, steps=10),
        "perceptual ball": PerceptualBall(clf, eps=8 / 255, steps=20),
    }
    for label, atk in attacks.items():
        t = time.perf_counter()
        result = atk.run(test.images, test.labels)
        flagged = det.detect(result.adversarial)
        ok = result.success
        out[label] = {
            "success": float(ok.float().mean()),
            "detected_successful": float(flagged[ok].float().mean()) if ok.any() else math.nan,
            "detected_all": float(flagged.float().mean()),
            "seconds": time.perf_counter() - t,
        }
        log(f"odds {label}: {out[label]}")
    out["seconds"] = time.perf_counter() - start
    return out


def _best_time(fn: Any, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _speed(name: str, args: argparse.Namespace) -> dict[str, Any]:
    from foveal.detectors import SalientPixelDetector

    cfg = DEFAULTS[name]
    clf, _ = classifier(args.work, name, cfg["arch"], cfg["clf_epochs"], cfg["clf_n"])
    data = shuffled(name, "train", MASK_N + 200)
    mk = masker(args.work, name, clf, data.images[:MASK_N])
    x = shuffled(name, "test", 256).images
    spd = SalientPixelDetector(clf, masker=mk, width=cfg["width"], epochs=1)
    spd.fit(data.images[MASK_N : MASK_N + 20], data.images[MASK_N + 20 : MASK_N + 40])
    odds = OddsAreOdd(clf, noise=["n0.005", "s0.005", "u0.005"], samples=32)
    odds.fit(data.images[MASK_N:], labels=data.labels[MASK_N:])
    with torch.no_grad():
        t_fwd = _best_time(lambda: clf(x))
    t_spd = _best_time(lambda: spd.score(x, batch_size=256))
    t_odds = _best_time(lambda: odds.score(x[:32], batch_size=32), 1)
    return {
        "classifier_images_per_s": 256 / t_fwd,
        "spd_images_per_s": 256 / t_spd,
        "spd_x_forward": t_spd / t_fwd,
        "odds_ms_per_image": 1000 * t_odds / 32,
        "odds_x_forward": (t_odds / 32) / (t_fwd / 256),
        "odds_passes_per_image": 3 * 32 + 1,
    }


def speed_section(args: argparse.Namespace) -> dict[str, Any]:
    """SPD throughput and odds-are-odd cost per image, relative to one classifier forward."""
    out = {name: _speed(name, args) for name in ("digits", "shapes")}
    log(f"speed: {out}")
    return out


# ------------------------------------------------------------------------------ report
def _f(v: float, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Detectors at small scale: seed 002 (SMD / SPD), seed 001 (steganalysis), "
        "seed 004 (odds-are-odd)",
        "",
        "Produced by `python scripts/detectors_experiment.py` (raw numbers in "
        "`detectors.json`, heatmaps in `detectors/`). " + results.get("setup", ""),
        "",
    ]
    for name in ("digits", "shapes"):
        r = results.get(name)
        if not r:
            continue
        m = r["matrix"]
        lines += [
            f"## {name}: detection matrix (seed 002, Fig. 2)",
            "",
            f"Classifier clean accuracy {r['clean_accuracy']:.3f}. Detectors trained on "
            f"{r['n_train']} clean + {r['n_train']} adversarial images per attack, tested on "
            f"{r['n_test']} clean + {r['n_test']} adversarial test images; detector CNN "
            f"width {r['detector_width']} x seed 002's filters, "
            f"{r.get('detector_epochs', 10)} epochs (seed 002: 10 on 50,000+ images), batch 50, "
            "Adam, dropout 0.6. Entry: balanced detection accuracy at the detector's own "
            f"threshold. Heatmap: `detectors/{name}-matrix.png`.",
            "",
            "| attack | success (test) | mean L2 | mean Linf | time (s) |",
            "|---|---|---|---|---|",
        ]
        for a, v in r["attacks"].items():
            lines.append(
                f"| {ATTACK_LABELS.get(a, a)} | {_f(v['success_test'], 2)} | "
                f"{_f(v['mean_l2'], 2)} | {_f(v['mean_linf'], 2)} | {v['seconds']:.0f} |"
            )
        lines.append("")
        attacks = m["attacks"]
        cols = [ATTACK_LABELS.get(a, a) for a in attacks]
        for det in m["detectors"]:
            lines += [
                f"**{det.upper()}** (rows: trained on; columns: tested on)",
                "",
                "| train \\ test | " + " | ".join(cols) + " |",
                "|---" * (len(cols) + 1) + "|",
            ]
            for tr in attacks:
                vals = " | ".join(_f(m["results"][det][tr][te]["accuracy"]) for te in attacks)
                lines.append(f"| {ATTACK_LABELS.get(tr, tr)} | {vals} |")
            lines.append("")
        # Claim: SPD detects C&W and DeepFool better than ID.
        lines += [
            f"**SPD vs ID on C&W and DeepFool ({name})** (accuracy; AUC in brackets)",
            "",
            "| trained on | tested on | SPD | ID | SMD | JSD | SPD > ID |",
            "|---|---|---|---|---|---|---|",
        ]
        for te in ("cw", "deepfool"):
            if te not in attacks:
                continue
            for tr in attacks:
                res = m["results"]
                vals = {d: res[d][tr][te] for d in ("spd", "id", "smd", "jsd")}
                cells = " | ".join(
                    f"{_f(vals[d]['accuracy'])} ({_f(vals[d]['auc'], 2)})"
                    for d in ("spd", "id", "smd", "jsd")
                )
                verdict = "yes" if vals["spd"]["accuracy"] > vals["id"]["accuracy"] else "no"
                lines.append(f"| {ATTACK_LABELS[tr]} | {ATTACK_LABELS[te]} | {cells} | {verdict} |")
        lines += [
            "",
            f"**Saliency shift ({name}, seed 002 Table 1)**: RMS distance between learned "
            "saliency maps (predicted class) of a clean test image and its adversarial "
            "version, vs between two different clean images; two-sided Mann-Whitney U.",
            "",
            "| attack | clean vs adversarial: mean (std) | different images: mean (std) "
            "| p-value | P(adv > diff) |",
            "|---|---|---|---|---|",
        ]
        for a, s in r["shift"].items():
            lines.append(
                f"| {ATTACK_LABELS.get(a, a)} | {_f(s['adversarial_mean'])} "
                f"({_f(s['adversarial_std'])}) | {_f(s['different_mean'])} "
                f"({_f(s['different_std'])}) | {s['p_value']:.2g} | {_f(s['effect'], 2)} |"
            )
        lines.append("")
        ad = results.get("adaptive") if name == "digits" else None
        if ad:
            st = ad["settings"]
            lines += [
                "## digits: adaptive white-box attacks and detector adversarial training "
                "(seed 002, section 3.7, Table 3)",
                "",
                "Detectors trained on FGSM (as in the matrix above). White-box attack: "
                f"Linf {st['eps']}, step {st['alpha']}, T = {st['steps']} x n = {st['repeats']} "
                "alternations "
                "(classifier step, then detector step) on the test images; `input` = seed "
                "002's Algorithms 2-3 (gradient w.r.t. the detector's input), `full` = "
                "through the masking model, `combined` = one objective CE + detector "
                f"evasion. Adversarial training: {ad['rounds']} rounds (attack the training "
                f"images, {ad['epochs_per_round']} more epochs on clean vs FGSM + the white-box "
                "images that fool the classifier); the retrained detector is tested on the "
                "white-box test images made against it before training and on a fresh "
                "full-gradient attack. Accuracy = balanced detection accuracy at the detector's "
                "threshold (clean test vs attacked test); AUC = threshold-free ROC AUC of the "
                "same two sets; evaded = misclassified and not flagged.",
                "",
                "| detector | setting | accuracy | AUC | detected | misclassified | evaded |",
                "|---|---|---|---|---|---|---|",
            ]
            labels = [
                ("black_box", "FGSM (black box)"),
                ("white_box_input", "white box, input"),
                ("white_box_full", "white box, full"),
                ("white_box_combined", "white box, combined"),
                ("after_black_box", "after adv. training: FGSM"),
                ("after_old_white_box_full", "after adv. training: earlier white-box images"),
                ("after_white_box_full", "after adv. training: white box, full"),
            ]
            for det in ("id", "smd", "spd"):
                for key, label in labels:
                    if key not in ad[det]:
                        continue
                    v = ad[det][key]
                    lines.append(
                        f"| {det.upper()} | {label} | {_f(v['accuracy'])} | {_f(v.get('auc'))} | "
                        f"{_f(v['detected'])} | {_f(v['misclassified'])} | "
                        f"{_f(v['evaded'])} |"
                    )
            lines.append("")
    st = results.get("stego")
    if st:
        lines += [
            "## shapes at 96 pixels: steganalysis detection of I-FGM vs SAI-FGM "
            "(seed 001, Table 2)",
            "",
            f"shapes-cnn fine-tuned at 96 px (accuracy {st['classifier_accuracy_96px']:.3f});"
            f" {st['n']} correctly classified test images, the steganalysis detector "
            "(SPAM-686 per channel, 2058 features; 51 FLDs on 300-feature subspaces) trained "
            f"per attack on {st['n_train']} clean + {st['n_train']} adversarial images and "
            f"tested on the other {st['n_test']} (+ their adversarial versions). Detect rate "
            "= TPR at the ensemble's threshold.",
            "",
            "| delta (0-255) | L2 budget | attack | success | changed uint8 pixels | "
            "detect rate | FPR | accuracy | AUC | detector trained on the other attack: "
            "detect rate |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for delta, row in st["deltas"].items():
            for label, other in (("I-FGM", "SAI-FGM"), ("SAI-FGM", "I-FGM")):
                v = row[label]
                d = v["detect"]
                cross = row[other][f"detect_{label}"]["tpr"]
                lines.append(
                    f"| {delta} | {row['eps_l2']:.2f} | {label} | {_f(v['success'], 2)} | "
                    f"{_f(v['changed_uint8_pixels'], 2)} | {_f(d['tpr'])} | "
                    f"{_f(d['fpr'])} | {_f(d['accuracy'])} | {_f(d['auc'])} | "
                    f"{_f(cross)} |"
                )
        lines.append("")
    od = results.get("odds")
    if od:
        lines += [
            "## shapes: odds-are-odd detection of PGD vs the perceptual ball (seed 004, Table 2)",
            "",
            f"Statistics from {od['n_fit']} clean training images (correctly classified "
            f"ones), noise {', '.join(od['noise'])} x {od['samples']} samples, threshold "
            f"set for a 5% false-positive rate on {od['n_calibration']} other clean images "
            f"({od['threshold']:.2f}); {od['n_test']} test images. Clean test images "
            f"flagged: {od['clean_test_flagged']:.3f}. Clean z-scores: mean "
            f"{od['clean_z_mean']:.3f}, std {od['clean_z_std']:.3f}.",
            "",
            "| attack (Linf 8/255) | success | detected (successful) | detected (all) |",
            "|---|---|---|---|",
        ]
        for label in ("PGD", "perceptual ball"):
            v = od[label]
            lines.append(
                f"| {label} | {_f(v['success'], 2)} | {_f(v['detected_successful'])} | "
                f"{_f(v['detected_all'])} |"
            )
        lines.append("")
    sp = results.get("speed")
    if sp:
        lines += [
            "## Throughput (see also `benchmarks/detection_speed.py`)",
            "",
            "| data | classifier forward (img/s) | SPD incl. saliency model (img/s) | "
            "SPD / forward | odds-are-odd (ms / image) | odds / forward |",
            "|---|---|---|---|---|---|",
        ]
        for name, v in sp.items():
            lines.append(
                f"| {name} | {v['classifier_images_per_s']:.0f} | "
                f"{v['spd_images_per_s']:.0f} | {v['spd_x_forward']:.1f}x | "
                f"{v['odds_ms_per_image']:.1f} | {v['odds_x_forward']:.0f}x |"
            )
        lines.append("")
    if results.get("notes"):
        lines += ["## Reading", "", results["notes"], ""]
    lines += [
        "Timings: "
        + ", ".join(
            f"{k} {results[k]['seconds']:.0f} s"
            for k in ("digits", "shapes", "stego", "odds")
            if k in results and "seconds" in results[k]
        )
        + "."
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default="digits,adaptive,shapes,stego,odds,speed")
    parser.add_argument("--work", type=Path, default=Path("runs/detectors-experiment"))
    parser.add_argument("--out", type=Path, default=Path("docs/experiments"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--attacks", default=None, help="override the attacks of the matrices")
    parser.add_argument("--n-train", type=int, default=0, help="detector-training images")
    parser.add_argument("--n-test", type=int, default=0, help="test images of the matrices")
    parser.add_argument("--stego-n", type=int, default=240)
    parser.add_argument("--stego-deltas", default="4")
    parser.add_argument("--quick", type=int, default=0, help="tiny sizes (this many images)")
    parser.add_argument("--resume", action="store_true", help="keep finished sections")
    parser.add_argument("--render", action="store_true", help="only rebuild the markdown")
    parser.add_argument("--notes", type=Path, default=None, help="markdown to add as 'Reading'")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    json_path = args.out / "detectors.json"
    results: dict[str, Any] = {}
    if (args.resume or args.render) and json_path.exists():
        results = json.loads(json_path.read_text())
    if args.notes is not None:
        results["notes"] = args.notes.read_text().strip()
    if not args.render:
        results["setup"] = f"torch {torch.__version__}, {args.threads} threads, CPU; seeds 0."
        sections = {
            "adaptive": lambda: adaptive_section(args),
            "digits": lambda: matrix_section("digits", args),
            "shapes": lambda: matrix_section("shapes", args),
            "stego": lambda: stego_section(args),
            "odds": lambda: odds_section(args),
            "speed": lambda: speed_section(args),
        }
        for name in args.sections.split(","):
            if args.resume and name in results:
                continue
            log(f"section {name}")
            torch.manual_seed(0)
            results[name] = sections[name]()
            if name in ("digits", "adaptive"):
                results.get("digits", {}).pop("adaptive", None)
            args.out.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(results, indent=2, default=float) + "\n")
    (args.out / "detectors.md").write_text(render(results))
    log(f"wrote {json_path} and {args.out / 'detectors.md'}")


if __name__ == "__main__":
    main()
