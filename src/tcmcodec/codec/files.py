"""Image folders: the one list of image file suffixes and :func:`list_images`.

Light to import (pathlib only).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["IMAGE_SUFFIXES", "list_images"]

#: File suffixes (lower case) read as images by training, evaluation and the anchors.
IMAGE_SUFFIXES = (".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")


def list_images(
    folders: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    max_images: int | None = None,
    *,
    recursive: bool = False,
) -> list[Path]:
    """Image files (by suffix, see :data:`IMAGE_SUFFIXES`) of one folder or several, sorted by path.

    Args:
        folders: a folder, or a list of folders (their images are listed together).
        max_images: keep the first N images of the sorted list (None: all).
        recursive: also list the images in subfolders (at any depth).

    Returns:
        The image paths, sorted.

    Raises:
        ValueError: a folder does not exist, none of them holds an image, or ``max_images`` < 1.
    """
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1):
        raise ValueError(f"max_images must be a positive integer or None, got {max_images!r}")
    roots = [Path(folders)] if isinstance(folders, (str, os.PathLike)) else [Path(f) for f in folders]
    if not roots:
        raise ValueError("no dataset folder given")
    files: list[Path] = []
    for root in roots:
        if not root.is_dir():
            raise ValueError(f"dataset folder not found: {root}")
        candidates = root.rglob("*") if recursive else root.iterdir()
        files += [p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not files:
        where = ", ".join(str(r) for r in roots)
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {where}")
    files.sort()
    return files if max_images is None else files[:max_images]
