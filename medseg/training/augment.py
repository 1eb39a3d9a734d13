"""Training-time data augmentation of one patch (nnU-Net-like, scaled down), deterministic given an RNG.

All functions take and return ``(z, y, x)`` arrays: the normalised float32 image and the uint8 label.
Spatial transforms are applied to both (label with nearest neighbour); intensity transforms only to
the image. Rotation is in-plane (about the z axis) so anisotropic plans stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage


@dataclass(frozen=True)
class AugmentParams:
    """Probabilities and ranges of the augmentations (defaults follow nnU-Net's, slightly milder)."""

    p_rotate: float = 0.2
    max_rotation_deg: float = 15.0
    p_scale: float = 0.2
    scale_range: tuple[float, float] = (0.85, 1.15)
    p_flip: float = 0.5
    p_noise: float = 0.15
    noise_variance: tuple[float, float] = (0.0, 0.1)
    p_brightness: float = 0.15
    brightness_range: tuple[float, float] = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast_range: tuple[float, float] = (0.75, 1.25)
    p_gamma: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)


def _spatial(
    image: NDArray[np.float32], label: NDArray[np.uint8], angle: float, scale: float
) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
    """Rotate by ``angle`` (radians) in the y-x plane and zoom by ``scale`` about the patch centre."""
    c, s = np.cos(angle), np.sin(angle)
    # output index o maps to input index  m @ (o - centre) + centre
    m = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]) / scale
    m[0, 0] = 1.0 / scale if label.shape[0] > 1 else 1.0
    centre = (np.asarray(label.shape, dtype=float) - 1) / 2
    offset = centre - m @ centre
    if image.ndim == 4:  # (channels, z, y, x): the same transform for every channel
        img = np.stack([ndimage.affine_transform(ch, m, offset=offset, order=1, mode="nearest") for ch in image])
    else:
        img = ndimage.affine_transform(image, m, offset=offset, order=1, mode="nearest")
    img = img.astype(np.float32)
    lab = ndimage.affine_transform(label, m, offset=offset, order=0, mode="constant", cval=0).astype(np.uint8)
    return img, lab


def augment_patch(
    image: NDArray[np.float32], label: NDArray[np.uint8], rng: np.random.Generator, params: AugmentParams
) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
    """Randomly augment one ``(z, y, x)`` patch; same RNG state -> same output.

    Args:
        image: normalised image patch, float32; ``(channels, z, y, x)`` for a multi-channel plan (one
            spatial transform for all channels; the intensity transforms draw one set of values for all).
        label: label patch, uint8, same shape.
        rng: source of randomness (draws are made in a fixed order).
        params: probabilities and ranges.

    Returns:
        ``(image, label)`` of the same shape and dtypes.
    """
    do_rot = rng.random() < params.p_rotate
    do_scale = rng.random() < params.p_scale
    angle = np.deg2rad(rng.uniform(-params.max_rotation_deg, params.max_rotation_deg))
    scale = rng.uniform(*params.scale_range)
    if do_rot or do_scale:
        image, label = _spatial(image, label, angle if do_rot else 0.0, scale if do_scale else 1.0)
    flips = rng.random(3) < params.p_flip
    lead = image.ndim - 3  # 1 for a multi-channel patch (channels, z, y, x)
    for axis in range(3):
        if flips[axis] and label.shape[axis] > 1:
            image, label = np.flip(image, axis + lead), np.flip(label, axis)
    image = np.ascontiguousarray(image, dtype=np.float32)
    label = np.ascontiguousarray(label, dtype=np.uint8)

    u = rng.random(4)
    if u[0] < params.p_noise:
        std = float(np.sqrt(rng.uniform(*params.noise_variance)))
        image = image + rng.normal(0.0, std, size=image.shape).astype(np.float32)
    if u[1] < params.p_brightness:
        image = image * np.float32(rng.uniform(*params.brightness_range))
    if u[2] < params.p_contrast:
        mean, lo, hi = image.mean(), image.min(), image.max()
        image = np.clip((image - mean) * np.float32(rng.uniform(*params.contrast_range)) + mean, lo, hi)
    if u[3] < params.p_gamma:
        lo, hi = float(image.min()), float(image.max())
        span = max(hi - lo, 1e-7)
        gamma = rng.uniform(*params.gamma_range)
        image = (np.power((image - lo) / span, gamma) * span + lo).astype(np.float32)
    return image.astype(np.float32, copy=False), label


def draw_augmentation(rng: np.random.Generator, params: AugmentParams, shape: tuple[int, ...]) -> dict[str, Any]:
    """Draw the random parameters of one patch's augmentation without applying it (device augmentation).

    The draws follow :func:`augment_patch`'s order except that the noise field is replaced by a seed
    (the device generates it), so the result is deterministic given ``rng`` but not bit-identical to the
    CPU path. Disabled transforms get neutral values (angle 0, scale/brightness/contrast/gamma 1).

    Args:
        rng: source of randomness.
        params: probabilities and ranges.
        shape: ``(z, y, x)`` patch shape (axes of size 1 are never flipped).

    Returns:
        ``{"spatial": bool, "angle": rad, "scale": float, "flip": bool (3,), "noise_std": float,
        "noise_seed": int, "brightness": float, "contrast": float, "do_contrast": bool, "gamma": float,
        "do_gamma": bool}`` as numpy scalars/arrays (collated to tensors by the DataLoader).
    """
    do_rot = rng.random() < params.p_rotate
    do_scale = rng.random() < params.p_scale
    angle = np.deg2rad(rng.uniform(-params.max_rotation_deg, params.max_rotation_deg))
    scale = rng.uniform(*params.scale_range)
    flips = (rng.random(3) < params.p_flip) & (np.asarray(shape) > 1)
    u = rng.random(4)
    noise_std = float(np.sqrt(rng.uniform(*params.noise_variance))) if u[0] < params.p_noise else 0.0
    noise_seed = int(rng.integers(0, 2**62))
    brightness = float(rng.uniform(*params.brightness_range)) if u[1] < params.p_brightness else 1.0
    contrast = float(rng.uniform(*params.contrast_range)) if u[2] < params.p_contrast else 1.0
    gamma = float(rng.uniform(*params.gamma_range)) if u[3] < params.p_gamma else 1.0
    return {
        "spatial": np.bool_(do_rot or do_scale),
        "angle": np.float64(angle if do_rot else 0.0),
        "scale": np.float64(scale if do_scale else 1.0),
        "flip": flips.astype(np.bool_),
        "noise_std": np.float64(noise_std),
        "noise_seed": np.int64(noise_seed),
        "brightness": np.float64(brightness),
        "contrast": np.float64(contrast),
        "do_contrast": np.bool_(u[2] < params.p_contrast),
        "gamma": np.float64(gamma),
        "do_gamma": np.bool_(u[3] < params.p_gamma),
    }
