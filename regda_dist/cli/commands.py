"""The commands: each calls functions that return data (a plan, a result, a summary, a report)
and prints what it got (cli/show.py). Heavy imports stay inside each command: `--help` and
`jobs` start fast, and `--no-ray` works without Ray installed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from regda_dist.cli.show import format_result, search_summary


def say_notes(notes: list[str]) -> None:
    for note in notes:
        print(f"note: {note}", flush=True)


def train(args) -> int:
    from regda_dist.cli.plans import plan_train

    overrides = list(args.set)
    if args.workers is not None:
        overrides.append(f"scaling.num_workers={args.workers}")
    plan = plan_train(args.experiment, overrides, args.name, args.address, args.resume,
                      args.no_ray)  # fmt: skip
    say_notes(plan.notes)
    if args.no_ray:
        from regda_dist.engine.run import run_here

        result = run_here(plan.cfg, plan.run_dir, resume=args.resume)
    else:
        from regda_dist.distributed import cluster
        from regda_dist.distributed import train as ray_train

        cluster.connect(args.address)
        result = ray_train.fit(plan.cfg, plan.run_dir, resume=args.resume)
    print(format_result(result, plan.name))
    print(f"\nrun folder: {plan.run_dir}")
    return 0


def tune(args) -> int:
    from regda_dist.cli.plans import plan_tune
    from regda_dist.folders import SearchFolder
    from regda_dist.search.folder import provenance
    from regda_dist.search.setup import prepare_search_dir

    plan = plan_tune(args.experiment, list(args.set), args.name, args.address, args.resume)
    say_notes(plan.notes)
    from regda_dist.distributed import cluster
    from regda_dist.distributed import search as tuning

    search, search_dir = plan.search, plan.search_dir
    if not args.resume:
        tuning.check_new_study(search, search_dir)
    cluster.connect(args.address)
    tuning.check_capacity(search)  # what the cluster can never place would wait forever
    prepare_search_dir(search_dir, search, args.resume)  # only now: nothing written before
    folder = SearchFolder(search_dir)
    if not folder.provenance.exists():
        folder.provenance.write_text(json.dumps(provenance(sys.argv), indent=2))
    try:
        summary = tuning.run_search(search, search_dir)
    except (tuning.SearchInterrupted, KeyboardInterrupt) as stop:
        again = " ".join(["regda-dist", *args.argv, *([] if args.resume else ["--resume"])])
        print(
            f"regda-dist: {stop or 'search interrupted'}; continue with: {again}", file=sys.stderr
        )
        return 130
    folder.summary.write_text(json.dumps(summary, indent=2))
    for line in search_summary(summary, search.settings.objective, plan.oracle):
        print(line)
    print(f"\nsearch folder: {search_dir}\nnext: regda-dist export {search_dir}")
    return 0


def export(args) -> int:
    from regda_dist.folders import ExportFolder
    from regda_dist.search.export import export as export_search

    if args.onnx:  # refused before anything is written
        from regda_dist.engine.onnx_export import require

        require()
    out = export_search(
        Path(args.run_dir), args.metric, args.top_k, Path(args.out) if args.out else None
    )
    print((out / ExportFolder.SUMMARY).read_text())
    if args.onnx:
        from regda_dist.engine.onnx_export import to_onnx
        from regda_dist.engine.predict import load_predictor

        for model in sorted(out.glob("**/model.pt")):
            onnx = model.with_name("model.onnx")
            diff = to_onnx(load_predictor(model.parent, "cpu"), onnx)
            print(f"{onnx} (onnxruntime vs torch: {diff:.1e}; decoding: docs/predict.md)")
    print(f"exported to {out}")
    return 0


def report(args) -> int:
    from regda_dist.distributed.study import plot_importances
    from regda_dist.folders import SearchFolder
    from regda_dist.search.report import report as make_report

    search_dir = Path(args.run_dir)
    made = make_report(search_dir, plot_importances)
    print(made.path.read_text())
    print("\n".join(["-" * 78, *made.headline]))
    best = SearchFolder(search_dir).best
    if best.is_dir():
        print(
            f"best configurations: {best} (config.yaml, model.pt, meta.json per task; "
            f"`regda-dist train {best}/<task>/config.yaml` re-runs one)"
        )
    print(f"report: {made.path}\nTensorBoard: tensorboard --logdir {search_dir}")
    return 0


def predict(args) -> int:
    from regda_dist.data.draw import draw_file
    from regda_dist.engine import predict as P

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise P.PredictError(f"--out {out}: exists and is not an empty folder (never overwritten)")
    predictor = P.load_predictor(Path(args.model), args.device)
    inputs = P.read_inputs(args.images, predictor.spec.num_keypoints, predictor.categories)
    print(f"{predictor.label} ({predictor.weights}) on {len(inputs.samples)} crop(s) of "
          f"{len(inputs.images)} image(s), {predictor.runtime.device}")  # fmt: skip
    results = P.run(predictor, inputs, args.batch_size, args.workers, progress=True)
    path = P.write_results(out, predictor, inputs, results)
    print(f"keypoints: {path} (COCO results; images and categories: {out / 'images.json'})")
    if args.draw:
        files = {img["id"]: Path(img["file_name"]) for img in inputs.images}
        per_image: dict = {}
        for r in results:
            per_image.setdefault(r["image_id"], []).append(r["keypoints"])
        for image_id, instances in per_image.items():
            name = f"{image_id:06d}_{files[image_id].stem}.png"
            draw_file(files[image_id], instances, predictor.spec, out / "drawn" / name,
                      names=not args.no_names)  # fmt: skip
        print(f"drawn: {out / 'drawn'} ({len(per_image)} image(s))")
    return 0


def evaluate(args) -> int:
    from regda_dist.engine import predict as P

    predictor = P.load_predictor(Path(args.model), args.device)
    found = P.evaluate(predictor, Path(args.coco))
    for note in found["notes"]:
        print(f"note: {note}")
    rule = f"PCK@{found['pck_threshold']:g} ({found['pck_normalize']})"
    print(f"{found['method']} on {found['file']}: {found['instances']} instance(s), {rule}")
    for group, value in found["pck"].items():
        print(f"  {group:<12} {value:6.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(found, indent=2))
        print(f"metrics: {args.out}")
    return 0


def categories_arg(text: str) -> list:
    """--categories: one category or a YAML list of them, by name or id."""
    import yaml

    from regda_dist import config as C

    try:
        categories = yaml.safe_load(text) if text else []
    except yaml.YAMLError:
        raise C.ConfigError(f"--categories {text!r} is not valid YAML") from None
    categories = categories if isinstance(categories, list) else [categories]
    problem = C.categories_problem(categories)
    if problem:
        raise C.ConfigError(f"--categories {problem}")
    return categories


def data_check(args) -> int:
    from regda_dist import config as C
    from regda_dist.data.check import check
    from regda_dist.data.datasets import chosen_keypoints
    from regda_dist.data.samples import DatasetError

    keypoints, min_match = args.keypoints, args.min_keypoint_match
    if keypoints.endswith((".yaml", ".yml")):  # an experiment: its data.keypoints (custom too)
        data = C.load(keypoints).data
        keypoints = chosen_keypoints(data)
        min_match = data.min_keypoint_match if min_match is None else min_match
    min_match = C.DataConfig().min_keypoint_match if min_match is None else min_match
    if not 0 <= min_match <= 1:
        raise C.ConfigError(f"--min-keypoint-match must be in [0, 1], got {min_match}")
    categories = categories_arg(args.categories)
    found = check(args.dataset, args.path, keypoints, args.decode, categories, min_match)
    print(found.text)
    if found.problems:
        raise DatasetError(f"{args.path}: {len(found.problems)} problem(s), listed above")
    return 0


def submit(args) -> int:
    from regda_dist.distributed import jobs

    overrides = list(args.set)
    if args.storage:
        overrides.append(f"train.output_dir={args.storage}")
    jobs.check(Path(args.experiment), overrides)  # bad input fails before connecting
    head = jobs.client(args.address)
    job_id = jobs.submit(head, Path(args.experiment), overrides, args.name)
    follow = f"regda-dist jobs logs {job_id} --address {head.url}"
    print(f"submitted job {job_id} to {head.url}", flush=True)
    if args.no_wait:
        print(f"follow it with: {follow}")
        return 0
    try:
        jobs.follow(head, job_id)
    except KeyboardInterrupt:
        print(f"regda-dist: job {job_id} keeps running; {follow}", file=sys.stderr)
        return 130
    print(f"job {job_id} SUCCEEDED")
    return 0


def jobs_command(args) -> int:
    from regda_dist.distributed import jobs

    head = jobs.client(args.address)
    if args.action == "list":
        print(jobs.listing(head))
        return 0
    actions = {"status": jobs.status, "logs": jobs.logs, "stop": jobs.stop}
    print(actions[args.action](head, args.job_id))
    return 0
