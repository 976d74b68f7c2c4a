"""The pure-PyTorch core (everything below `distributed`, and the CLI's import) never imports ray
or optuna: checked in a fresh interpreter, so other tests' imports cannot hide or fake it."""

import os
import subprocess
import sys
import textwrap

CORE = [
    "regda_dist.config",
    "regda_dist.data.datasets",
    "regda_dist.data.synthetic",
    "regda_dist.data.heatmap",
    "regda_dist.models.regda",
    "regda_dist.models.backbones",
    "regda_dist.losses",
    "regda_dist.metrics",
    "regda_dist.engine.trainer",
    "regda_dist.engine.run",
    "regda_dist.engine.evaluate",
    "regda_dist.engine.collect",
    "regda_dist.engine.tensorboard",
    "regda_dist.proxies",
    "regda_dist.search.spec",
    "regda_dist.search.folder",
    "regda_dist.search.export",
    "regda_dist.search.report",
    "regda_dist.engine.collectives",
    "regda_dist.data.loader",
    "regda_dist.cli",
]

SCRIPT = textwrap.dedent(
    """
    import importlib
    import sys

    def forbidden():
        return sorted(
            m for m in sys.modules
            if m in ("ray", "optuna") or m.startswith(("ray.", "optuna."))
        )

    for name in {core!r}:
        importlib.import_module(name)
    # The check can see an imported module: torch must be there, or the check is blind.
    assert "torch" in sys.modules and "regda_dist.cli" in sys.modules, "detection is broken"
    bad = forbidden()
    assert not bad, "core imports " + ", ".join(bad)
    {extra}
    print("ok")
    """
)


def _run(extra="", pythonpath=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([pythonpath, env.get("PYTHONPATH", "")])
    script = SCRIPT.format(core=CORE, extra=extra)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )


def test_core_does_not_import_ray_or_optuna():
    proc = _run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "ok"


def test_core_does_not_import_ray_or_optuna_even_when_installed(tmp_path):
    # Stand-in packages make a guarded `try: import ray` succeed (and show up) even where ray
    # is not installed; the script then imports them itself to prove the check sees them.
    for name in ("ray", "optuna"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    extra = 'import ray, optuna\nassert forbidden() == ["optuna", "ray"], forbidden()'
    proc = _run(extra, pythonpath=str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "ok"
