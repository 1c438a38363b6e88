"""Integrated gradients on pixels, with the project's convergence criterion and adaptive steps.

Per example, F(x) and F(x') are computed once; the step count starts at the median that recent examples
needed and doubles along the schedule only while |sum(attributions) - (F(x) - F(x'))| > tolerance *
|F(x) - F(x')| on the target logit (completeness, Sundararajan et al. 2017), as attribution_engine does for
text. Attributions are summed over colour channels into one H x W map per image.

Baselines (what "absence of evidence" means; Sturmfels et al. 2020, "Visualizing the Impact of Feature
Attribution Baselines", Distill):
- black: every pixel 0 before normalisation. Natural where dark means "no signal" (an electroluminescence
  image of a dead cell is dark), but it cannot credit dark pixels, which equal the baseline.
- blurred: the image under a Gaussian blur (sigma = side / 16). Keeps colour and overall brightness and
  removes edges and texture, so attribution goes to fine structure (cracks, contacts), including dark
  structure a black baseline misses.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

SCHEDULE = (8, 16, 24, 32, 50, 100, 200, 300)      # attribution_engine.attribute_one's ladder
TOLERANCE = 0.05
BLUR_SIGMA_FRACTION = 1 / 16


class Baseline(str, Enum):
    BLACK = "black"
    BLURRED = "blurred"


@dataclass(frozen=True)
class PixelAttribution:
    scores: np.ndarray      # H x W, summed over channels
    target: int
    delta: float            # completeness error: sum(attr) - gap
    gap: float              # F(x) - F(baseline) on the target logit
    steps: int              # steps of the accepted run
    passes: int             # forward + backward passes spent, all tries
    converged: bool


def probe_forward(model, weight: np.ndarray, bias: np.ndarray):
    """M1 as a function of pixels: the frozen backbone's pooled features through the linear probe
    (models.baselines.probe_as_linear gives weight and bias), for attribution on the base."""
    import torch

    inner = model.for_inference()
    w = torch.as_tensor(weight, dtype=torch.float32)
    b = torch.as_tensor(bias, dtype=torch.float32)
    return lambda x: inner.forward_all(x).features @ w.T + b


def gaussian_blur(x, sigma: float):
    """Separable Gaussian blur of N x C x H x W (edges replicated)."""
    import torch
    import torch.nn.functional as F

    radius = max(1, int(round(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    h = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
                 groups=c)
    return F.conv2d(F.pad(h, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                    groups=c)


def make_baseline(x, kind: Baseline, preprocess):
    """The baseline for a normalised batch x (N x 3 x H x W) in the same normalised space."""
    import torch

    if kind is Baseline.BLACK:
        black = torch.tensor([-m / s for m, s in zip(preprocess.mean, preprocess.std)], dtype=x.dtype)
        return black.view(1, 3, 1, 1).expand_as(x).clone()
    # blur commutes with the per-channel affine normalisation (the kernel sums to 1)
    return gaussian_blur(x, max(x.shape[2], x.shape[3]) * BLUR_SIGMA_FRACTION)


def pixel_attribution(forward, x, baseline, target: int | None, schedule=SCHEDULE, tolerance: float = TOLERANCE,
                      max_batch: int = 32, method: str = "gausslegendre") -> PixelAttribution:
    """Attributions for one image (1 x 3 x H x W); forward maps a batch to logits."""
    import torch
    from captum.attr import IntegratedGradients

    with torch.inference_mode():
        both = forward(torch.cat([x, baseline]))
    target = int(both[0].argmax()) if target is None else int(target)
    gap = float(both[0, target] - both[1, target])
    ig = IntegratedGradients(forward)
    passes = 2
    for steps in schedule:
        attr = ig.attribute(x, baselines=baseline, target=target, n_steps=steps, method=method,
                            internal_batch_size=min(steps, max_batch))
        passes += steps
        scores = attr[0].sum(0).detach().numpy().astype(np.float64)
        delta = float(scores.sum() - gap)
        converged = abs(delta) <= tolerance * max(abs(gap), 1e-8)
        if converged:
            break
    return PixelAttribution(scores, target, delta, gap, steps, passes, converged)


def attribute_images(forward, x, targets, baseline: Baseline, preprocess, schedule=SCHEDULE,
                     tolerance: float = TOLERANCE, what: str | None = None) -> list[PixelAttribution]:
    """One attribution per image of the normalised batch x. Each example starts at the median step count of
    the last five converged ones: similar images need similar steps, and a failed try is wasted work."""
    import torch

    from ..progress import Progress

    torch.manual_seed(0)
    out, needed = [], []
    bar = Progress(what, len(x), "images") if what else None
    for i in range(len(x)):
        xi = x[i:i + 1]
        first = int(np.median(needed[-5:])) if needed else schedule[0]
        rungs = tuple(s for s in schedule if s >= first) or schedule[-1:]
        a = pixel_attribution(forward, xi, make_baseline(xi, baseline, preprocess),
                              None if targets is None else targets[i], rungs, tolerance)
        out.append(a)
        if a.converged:
            needed.append(a.steps)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return out


def region_share(scores: np.ndarray, mask: np.ndarray) -> float:
    """Share of absolute attribution inside the mask (compare with mask.mean(), the share of area)."""
    a = np.abs(np.asarray(scores, dtype=np.float64))
    total = a.sum()
    return float(a[np.asarray(mask, dtype=bool)].sum() / total) if total > 0 else float("nan")


def box_mask(height: int, width: int, box) -> np.ndarray:
    """A rectangle given as fractions (x0, y0, x1, y1) of the width and height, as an H x W bool mask."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise ValueError(f"box must be fractions 0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1; got {box}")
    mask = np.zeros((height, width), dtype=bool)
    rows = slice(int(np.floor(y0 * height)), int(np.ceil(y1 * height)))
    mask[rows, int(np.floor(x0 * width)):int(np.ceil(x1 * width))] = True
    return mask


def load_mask(path, preprocess, where: str = "mask") -> np.ndarray:
    """A region mask image (nonzero = inside), put through the same resize/crop geometry as the model's
    input with nearest-neighbour sampling, as an H x W bool mask."""
    from dataclasses import replace

    from .decode import open_image
    from .preprocess import Resample, resize

    img = open_image(path, where).convert("L")
    return resize(img, replace(preprocess, resample=Resample.NEAREST))[:, :, 0] > 127


def quality_scores(forward, x, baseline: Baseline, preprocess, target: int, steps: int, seed: int,
                   n_perturb: int = 5, sensitivity: bool = True) -> dict:
    """captum's infidelity and sensitivity_max for one image (1 x 3 x H x W, normalised), with perturbations
    scaled to the spread of its normalised pixels; the baseline stays the original image's (as for text)."""
    import torch
    from captum.attr import IntegratedGradients
    from captum.metrics import infidelity, sensitivity_max

    torch.manual_seed(seed)
    base = make_baseline(x, baseline, preprocess)
    scale = float(x.std())
    ig = IntegratedGradients(forward)
    attr = ig.attribute(x, baselines=base, target=target, n_steps=steps, internal_batch_size=min(steps, 32))

    def perturb(inputs):
        noise = torch.randn_like(inputs) * 0.05 * scale
        return noise, inputs - noise

    infid = infidelity(forward, perturb, x, attr, target=target, n_perturb_samples=10, normalize=True)

    def explain(inputs, **kwargs):
        return ig.attribute(inputs, baselines=base, target=target, n_steps=steps,
                            internal_batch_size=min(steps, 32))

    if not sensitivity:
        return {"infidelity": float(infid[0]), "sensitivity_max": None, "passes": steps + 10 + 2}
    sens = sensitivity_max(explain, x, perturb_radius=0.02 * scale, n_perturb_samples=n_perturb)
    return {"infidelity": float(infid[0]), "sensitivity_max": float(sens[0]),
            "passes": steps * (1 + n_perturb) + 10 + 2}
