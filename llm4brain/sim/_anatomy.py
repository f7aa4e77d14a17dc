"""Simulated functional anatomy on nilearn's real MNI152 brain mask.

Regions sit at literature MNI coordinates (bilateral); each is tuned to one feature group of
the clips. Tuning weights are smooth random fields defined in MNI millimetres (random Fourier
features), so a subject's spatial shift is a shift of the coordinates at which the fields and
the regions are evaluated.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Region", "REGIONS", "load_brain_mask", "voxel_coordinates", "region_weights",
           "SmoothField"]


@dataclass(frozen=True)
class Region:
    """A bilateral region of interest.

    name : short label; centre : (x, y, z) MNI mm of the right hemisphere (x mirrored);
    sigma_mm : Gaussian extent; group : feature group it is tuned to (None = not responsive);
    drive : response common to every clip (visual regions respond to any video).
    """

    name: str
    centre: tuple[float, float, float]
    sigma_mm: float
    group: str | None
    drive: float
    reference: str


# Centres: approximate group-average MNI coordinates reported in the literature.
REGIONS: tuple[Region, ...] = (
    Region("EVC", (10.0, -90.0, 2.0), 9.0, "lowlevel", 0.6, "calcarine V1/V2 (e.g. Wang et al. 2015 atlas)"),
    Region("MT+", (45.0, -70.0, 2.0), 7.0, "motion", 0.5, "hMT+/V5 (Dumoulin et al. 2000: +-44,-67,0)"),
    Region("LOC", (40.0, -82.0, -8.0), 7.0, "agent", 0.4, "lateral occipital complex (Grill-Spector 2001)"),
    Region("EBA/pSTS", (50.0, -55.0, 10.0), 8.0, "action", 0.3, "EBA (Downing 2001: +-51,-71,1) / pSTS action (Grossman 2000)"),
    Region("PPA", (27.0, -48.0, -10.0), 6.0, "scene", 0.3, "parahippocampal place area (Epstein 1998: +-27,-45,-9)"),
    Region("M1", (38.0, -22.0, 56.0), 8.0, None, 0.0, "hand motor cortex (not visual; no response)"),
    Region("A1", (50.0, -20.0, 8.0), 7.0, None, 0.0, "Heschl's gyrus (auditory; no response: silent clips)"),
    Region("dlPFC", (40.0, 36.0, 28.0), 9.0, None, 0.0, "dorsolateral prefrontal cortex (no response)"),
)


def load_brain_mask(resolution_mm: float):
    """nilearn's MNI152 brain mask at ``resolution_mm`` (a Nifti1Image, uint8 0/1)."""
    from nilearn.datasets import load_mni152_brain_mask

    res = float(resolution_mm)
    if res <= 0:
        raise ValueError(f"sim.resolution_mm must be positive, got {resolution_mm}")
    img = load_mni152_brain_mask(resolution=int(round(res)) if float(res).is_integer() else res)
    return img


def voxel_coordinates(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """MNI coordinates (n_voxels, 3) in mm of the True voxels of ``mask`` (C order)."""
    ijk = np.argwhere(mask)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def region_weights(coords: np.ndarray, regions=REGIONS) -> np.ndarray:
    """Membership (n_regions, n_voxels) in [0, 1]: bilateral Gaussian blobs around the centres."""
    out = np.zeros((len(regions), len(coords)), dtype=np.float32)
    for r, reg in enumerate(regions):
        c = np.asarray(reg.centre)
        for sx in (1.0, -1.0):
            cc = c * np.array([sx, 1.0, 1.0])
            d2 = ((coords - cc) ** 2).sum(1)
            out[r] = np.maximum(out[r], np.exp(-d2 / (2 * reg.sigma_mm ** 2)))
    out[out < 0.05] = 0.0
    return out


class SmoothField:
    """A smooth random vector field R^3 (mm) -> R^d made of random Fourier features.

    Parameters
    ----------
    dim : int
        Output dimension d.
    length_mm : float
        Spatial correlation length.
    rng : numpy Generator
    n_features : int
        Number of cosine components (more = closer to a Gaussian process).
    """

    def __init__(self, dim: int, length_mm: float, rng: np.random.Generator, n_features: int = 32):
        self.omega = rng.normal(0.0, 1.0 / length_mm, size=(n_features, 3))
        self.phase = rng.uniform(0, 2 * np.pi, size=n_features)
        self.amp = rng.normal(0.0, 1.0, size=(n_features, dim)) * np.sqrt(2.0 / n_features)

    def __call__(self, coords: np.ndarray) -> np.ndarray:
        """Field values (n_points, d) at ``coords`` (n_points, 3)."""
        return np.cos(coords @ self.omega.T + self.phase) @ self.amp
