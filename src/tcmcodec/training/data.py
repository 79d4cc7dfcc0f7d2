"""Training crops: random crops and flips addressed by a global sample index, and the sampler that
makes a run's batches a function of (seed, rank, step) only, so that resuming is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tcmcodec.codec.files import list_images
from tcmcodec.codec.image import prepare_image

__all__ = ["CropDataset", "StepSampler", "rng_for", "load_rgb"]


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random size x size crop with random flips; smaller images are edge-padded first."""
    h, w = img.shape[:2]
    if h < size or w < size:
        img = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="edge")
        h, w = img.shape[:2]
    top, left = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    crop = img[top : top + size, left : left + size]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[::-1]
    return np.ascontiguousarray(crop)


def load_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an image file, as the codec normalises them (EXIF applied)."""
    return prepare_image(path)[0]


class CropDataset(torch.utils.data.Dataset):
    """Random crops addressed by a global sample index, so that sample i is the same crop in every run.

    Args:
        sources: image folders, or ``.npy`` files of packed uint8 crops (N, H, W, 3).
        crop_size: side of the square crops.
        seed: base seed; the crop of sample i depends only on (seed, i).
        cache_crops: when > 0, pre-extract this many crops per image into memory (each at least
            256 px, so that the training crops taken from them still vary).
    """

    def __init__(self, sources: list[str], crop_size: int, seed: int, cache_crops: int = 0):
        self.crop_size, self.seed = crop_size, seed
        packed = [s for s in sources if s.endswith(".npy")]
        folders = [s for s in sources if not s.endswith(".npy")]
        self.bank: np.ndarray | None = None
        if packed:
            self.bank = np.concatenate([np.load(p, mmap_mode="r") for p in packed]) if len(packed) > 1 else np.load(packed[0])
        self.files = list_images(folders, recursive=True) if folders else []
        if cache_crops and self.files:
            crops = [
                _random_crop(load_rgb(f), max(crop_size, 256), rng_for(seed, 7, i, j))
                for i, f in enumerate(self.files)
                for j in range(cache_crops)
            ]
            stack = np.stack(crops)
            self.bank = stack if self.bank is None else np.concatenate([self.bank, stack])
            self.files = []
        if self.bank is not None and self.bank.shape[1] < crop_size:
            raise ValueError(f"packed crops are {self.bank.shape[1]} px, smaller than crop_size {crop_size}")

    def __len__(self) -> int:
        return 1 << 62  # samples are addressed by index; the sampler decides which

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = rng_for(self.seed, 11, index)
        if self.bank is not None:
            img = self.bank[rng.integers(len(self.bank))]
        else:
            img = load_rgb(self.files[rng.integers(len(self.files))])
        crop = _random_crop(np.asarray(img), self.crop_size, rng)
        return torch.from_numpy(crop).permute(2, 0, 1)  # (3, S, S) uint8


class StepSampler(torch.utils.data.Sampler):
    """Yields the global sample indices of rank ``rank`` from step ``start_step`` on."""

    def __init__(self, batch_size: int, rank: int, world: int, start_step: int):
        self.batch_size, self.rank, self.world, self.start = batch_size, rank, world, start_step

    def __iter__(self):
        step = self.start
        while True:
            base = (step * self.world + self.rank) * self.batch_size
            yield from range(base, base + self.batch_size)
            step += 1
