#!/usr/bin/env bash
# The README's picture (docs/images/predicted_keypoints.jpg): a mean teacher adapted on the
# embedded hand task (a shortened schedule), `predict --draw` on eight of its target test
# images, side by side. About 15 minutes on 2 cores.
#   scripts/predict_picture.sh [WORK_DIR]     (default: runs/picture-<time>; never reused)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs/picture-$(date +%Y%m%d-%H%M%S)}
bin=.venv/bin
mkdir -p "$work"
if [ ! -f "$work/runs/picture/model.pt" ]; then
  "$bin/regda-dist" train experiments/synth_hand.yaml --no-ray --name picture \
    --set adapt.method=mean_teacher --set "train.output_dir=$work/runs" \
    --set train.progress=false --set pretrain.epochs=3 --set "pretrain.milestones=[2]" \
    --set adapt.epochs=2
fi
"$bin/python" - "$work" <<'PY'
import sys
from pathlib import Path

from regda_dist import config as C
from regda_dist.data.coco import export_split
from regda_dist.data.datasets import build_task

work = Path(sys.argv[1])
cfg = C.load("experiments/synth_hand.yaml")
task = build_task(cfg.data)
export_split(task.target_test, task.spec, work / "target", "test")
PY
images=("$work"/target/images/test/00000{0..7}.png)
rm -rf "$work/predicted"
"$bin/regda-dist" predict "$work/runs/picture" "${images[@]}" --out "$work/predicted" --draw \
  --no-names
"$bin/python" - "$work" <<'PY'
import sys
from pathlib import Path

from PIL import Image

work = Path(sys.argv[1])
drawn = sorted((work / "predicted" / "drawn").glob("*.png"))[:8]
tiles = [Image.open(p).convert("RGB") for p in drawn]
w, h = tiles[0].size
grid = Image.new("RGB", (4 * w, 2 * h))
for i, tile in enumerate(tiles):
    grid.paste(tile, ((i % 4) * w, (i // 4) * h))
out = Path("docs/images/predicted_keypoints.jpg")
out.parent.mkdir(parents=True, exist_ok=True)
grid.save(out, quality=88)
print(f"{out}: {grid.size[0]} x {grid.size[1]} px from {work / 'predicted'}")
PY
