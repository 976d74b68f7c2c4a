"""A labelled split read lazily from image files: decode, crop, resize, flip (uint8 out).

A crop much larger than the output (a person in a 1000 px frame, read at 256 px) is decoded at
a reduced scale where the format allows it (JPEG), and the keypoints are mapped with the box
actually cut, so image and keypoints stay aligned to the pixel."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from regda_dist.data.io import open_image, to_tensor
from regda_dist.data.samples import Sample, image_box


def crop(image: Image.Image, box: tuple[int, int, int], size: int, flip: bool) -> Image.Image:
    """The square box of the image (zero padding outside it), resized to size x size."""
    x0, y0, side = box
    out = image.crop((x0, y0, x0 + side, y0 + side))
    if side != size:
        out = out.resize((size, size), Image.Resampling.BILINEAR)
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else out


def crop_keypoints(keypoints: np.ndarray, box: tuple[float, float, float], size: int,
                   flip: bool):  # fmt: skip
    """Keypoints (K, 2) in the file's pixels -> in the crop's pixels (continuous coordinates)."""
    x0, y0, side = box
    out = (keypoints - np.array([x0, y0], dtype=np.float64)) * (size / side)
    if flip:
        out[:, 0] = size - out[:, 0]
    return out


class ImageSamples(Dataset):
    """Items: (uint8 image (3, S, S), keypoints (K, 2) in its pixels, weight (K,))."""

    def __init__(self, samples: list[Sample], image_size: int):
        self.samples, self.image_size = samples, image_size
        self._box_sides: torch.Tensor | None = None

    def box_sides(self) -> torch.Tensor:
        """(N,) the longer side of each sample's annotation box in its item's pixels (NaN where
        the dataset gives none): the PCK normaliser of train.pck_normalize 'bbox'."""
        if self._box_sides is None:
            sides = []
            for s in self.samples:
                crop = (s.box[2] if s.box else None) or None
                known = s.bbox_side is not None and crop
                sides.append(s.bbox_side * self.image_size / crop if known else float("nan"))
            self._box_sides = torch.tensor(sides, dtype=torch.float32)
        return self._box_sides

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        image, kp, weight, _ = self.read(i)
        return image, kp, weight

    def read(self, i):
        """Item i and the box actually cut, (x0, y0, side) in the file's pixels: a crop pixel
        p (continuous) shows file point (x0, y0) + p * side / S (mirrored first if flipped)."""
        s, size = self.samples[i], self.image_size
        boxes = {}

        def shrink(width: int, height: int) -> float:  # decode no smaller than the output
            boxes["file"] = s.box or image_box(width, height)
            return boxes["file"][2] / size

        image, factor = open_image(s.image, shrink)
        x0, y0, side = (round(v / factor) for v in boxes["file"])  # in the decoded pixels
        cut = (x0 * factor, y0 * factor, side * factor)
        kp = crop_keypoints(s.keypoints, cut, size, s.flip)
        image = to_tensor(crop(image, (x0, y0, side), size, s.flip))
        weight = torch.from_numpy(np.asarray(s.weight, dtype=np.float32))
        return image, torch.from_numpy(kp).float(), weight, torch.tensor(cut, dtype=torch.float64)


class Crops(Dataset):
    """The images of samples as the model sees them, with the box each was cut from (file
    pixels): what `predict` runs, read exactly as an evaluated split is (ImageSamples)."""

    def __init__(self, samples: list[Sample], image_size: int):
        self.samples = ImageSamples(samples, image_size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        image, _, _, cut = self.samples.read(i)
        return image, cut
