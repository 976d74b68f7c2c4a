"""A labelled split read lazily from image files: crop, resize, flip, augment, normalise."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from regda_dist.data.io import open_image, to_tensor
from regda_dist.data.samples import Sample, image_box
from regda_dist.data.transforms import Augment, normalise


def crop(image: Image.Image, box: tuple[int, int, int], size: int, flip: bool) -> Image.Image:
    """The square box of the image (zero padding outside it), resized to size x size."""
    x0, y0, side = box
    out = image.crop((x0, y0, x0 + side, y0 + side))
    if side != size:
        out = out.resize((size, size), Image.Resampling.BILINEAR)
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else out


def crop_keypoints(keypoints: np.ndarray, box: tuple[int, int, int], size: int, flip: bool):
    """Keypoints (K, 2) in the file's pixels -> in the crop's pixels (continuous coordinates)."""
    x0, y0, side = box
    out = (keypoints - np.array([x0, y0], dtype=np.float64)) * (size / side)
    if flip:
        out[:, 0] = size - out[:, 0]
    return out


class ImageSamples(Dataset):
    """Items: (normalised float image (3, S, S), keypoints (K, 2) in its pixels, weight (K,))."""

    def __init__(self, samples: list[Sample], image_size: int, augment: Augment | None = None):
        self.samples, self.image_size, self.augment = samples, image_size, augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        s, size = self.samples[i], self.image_size
        image = open_image(s.image)
        box = s.box or image_box(*image.size)
        kp = torch.from_numpy(crop_keypoints(s.keypoints, box, size, s.flip)).float()
        image = to_tensor(crop(image, box, size, s.flip))
        weight = torch.from_numpy(np.asarray(s.weight, dtype=np.float32))
        if self.augment is None:
            return normalise(image), kp, weight
        image, kp = self.augment(image, kp)
        return image, kp, weight
