"""Readers of the public dataset layouts (REGDA_SPEC.md section 5); importing registers them."""

from regda_dist.data import coco  # noqa: F401
from regda_dist.data.real import freihand, h3d, human36m, lsp, rhd, surreal  # noqa: F401
