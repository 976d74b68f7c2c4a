"""regda-dist: RegDA unsupervised domain adaptation for keypoint detection."""

__version__ = "0.1.0"
