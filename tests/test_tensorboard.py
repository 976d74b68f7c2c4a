"""TensorBoard event files of a run, read back with TensorBoard's own reader."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from regda_dist.engine import run


def read_events(logdir) -> EventAccumulator:
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def hparams_of(acc: EventAccumulator) -> dict:
    """The HParams plugin's session-start hyperparameters recorded in a run."""
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    out = {}
    for key, value in data.session_start_info.hparams.items():
        kind = value.WhichOneof("kind")
        out[key] = getattr(value, kind)
    return out


def test_a_run_writes_scalars_images_and_hparams(tiny_cfg, tmp_path):
    run_dir = tmp_path / "run"
    run.run_here(tiny_cfg, run_dir)
    acc = read_events(run_dir / "tb")
    tags = acc.Tags()
    scalars = set(tags["scalars"])
    expected = {"train/loss_a", "train/loss_b", "train/loss_c", "train/lambda", "train/lr_f",
                "source/pck", "oracle/target_pck", "proxy/dev", "proxy/source_pck",
                "proxy/aug_consistency", "proxy/confidence", "proxy/head_agreement",
                "pretrain/loss", "pretrain/val_pck"}  # fmt: skip
    assert expected <= scalars
    assert any(t.startswith("oracle/target_pck/") for t in scalars)  # per-group PCK
    steps = [e.step for e in acc.Scalars("proxy/dev")]
    assert steps == [0, 1, 2]  # source-only model at 0, then every adaptation epoch
    (image_tag,) = tags["images"]
    image = acc.Images(image_tag)[-1]
    assert "source-only" in image_tag and image.height > image.width / 8  # two rows
    assert hparams_of(acc)["regda.trade_off"] == 1.0


def columns_of(acc: EventAccumulator) -> set[str]:
    """The HParams table's columns a run's experiment record declares."""
    content = acc.PluginTagToContent("hparams")["_hparams_/experiment"]
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    return {info.name for info in data.experiment.hparam_infos}


def test_every_trial_of_a_conditional_search_declares_every_column(tmp_path):
    # TensorBoard builds the HParams table from the first experiment record it finds: when each
    # trial declared only its own method's knobs, the other method's columns were missing
    from regda_dist.engine.tensorboard import TensorBoardLogger

    space = {"adapt.method": "regda", "regda.trade_off": 1.0, "mean_teacher.keep": 0.5}
    trials = {
        "regda": {"adapt.method": "regda", "regda.trade_off": 2.0},
        "mt": {"adapt.method": "mean_teacher", "mean_teacher.keep": 0.3},
    }
    for name, values in trials.items():
        logger = TensorBoardLogger(tmp_path / name)
        logger.start_session(values, ["oracle/target_pck"], space)
        logger.end_session()
        logger.close()
    for name, values in trials.items():
        acc = read_events(tmp_path / name)
        assert columns_of(acc) == set(space)
        assert hparams_of(acc) == values  # its session: its own knobs only
