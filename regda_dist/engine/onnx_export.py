"""An exported model as ONNX (`regda-dist export --onnx`): for deployment stacks without torch.

The graph takes what the model takes: `images`, uint8 RGB (B, 3, S, S) at data.image_size S,
each a crop cut as `predict` cuts it (a box made square and 1.25x larger, or the whole image
padded to a square; ImageNet normalisation is inside the graph). It returns `heatmaps`, the
main head's logits (B, K, H, W) at data.heatmap_size H. Decoding, as `predict` and PCK do:
keypoint k is the argmax cell (cx, cy) of heatmaps[b, k]; in crop pixels (cx, cy) * S / H; in
the file's pixels (x0, y0) + that * side / S for the crop's box (x0, y0, side); its confidence
the peak of a softmax over the H x H cells over a label heatmap's own peak. The file is checked
against the torch model on CPU with onnxruntime before it is kept.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from regda_dist.engine.predict import PredictError, Predictor

TOLERANCE = 1e-4


def require():
    """onnxruntime, once onnx (torch's exporter needs it) is there too; else one line."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise PredictError(
            "--onnx needs onnx and onnxruntime: pip install 'regda-dist[onnx]'"
        ) from None
    return onnxruntime


def to_onnx(predictor: Predictor, path: Path, batch: int = 2, seed: int = 0) -> float:
    """Write predictor's model to `path` (batch dimension dynamic) and return the largest
    difference between onnxruntime's heatmaps and torch's on a random batch (float32, CPU);
    above TOLERANCE the file is removed and PredictError says so."""
    onnxruntime = require()
    model = predictor.model.float().cpu().eval()
    size = predictor.cfg.data.image_size
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
            torch.onnx.export(
                model,
                (x,),
                str(tmp),
                dynamo=False,
                input_names=["images"],
                output_names=["heatmaps"],
                dynamic_axes={"images": {0: "batch"}, "heatmaps": {0: "batch"}},
                opset_version=17,
            )
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"images": x.numpy()})
        with torch.no_grad():
            want = model(x)
        diff = float((torch.from_numpy(got) - want).abs().max())
        if not diff <= TOLERANCE:
            raise PredictError(f"{path}: ONNX heatmaps differ from torch's by {diff:.2e} (> 1e-4)")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed export or check leaves nothing behind
    return diff
