"""`regda-dist submit` / `jobs`: addresses and packaging (unit), and a real Ray head with the Jobs
API and token authentication on loopback (integration, started and stopped by this module)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")

from regda_dist.distributed import jobs  # noqa: E402
from regda_dist.distributed.cluster import ClusterError  # noqa: E402
from regda_dist.distributed.local_cluster import loopback_cluster, wait_for  # noqa: E402
from tests.conftest import applies, write_experiment  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "regda_dist.cli", *args],
        cwd=ROOT,
        env={**(env or os.environ), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(done, *needles):
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    err = done.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("regda-dist: error: "), err
    for needle in needles:
        assert needle in err, err


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("http://head:8265", "http://head:8265"),
        ("http://127.0.0.1:8265/", "http://127.0.0.1:8265"),
        ("https://ray.example.org", "https://ray.example.org:443"),
        ("http://head", "http://head:8265"),
        ("http://[::1]:8265", "http://[::1]:8265"),
    ],
)
def test_jobs_address_accepts_http_urls(address, expected):
    assert jobs.resolve_address(address) == expected


@pytest.mark.parametrize(
    "address", ["head:8265", "ray://head:10001", "ftp://head:21", "http://head:port", "http://a b"]
)
def test_jobs_address_rejects_other_forms(address):
    with pytest.raises(ClusterError, match="expected the head's Jobs API, http://HOST:PORT"):
        jobs.resolve_address(address)


def test_jobs_address_falls_back_to_the_environment(monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ClusterError, match="no Jobs API address"):
        jobs.resolve_address(None)
    monkeypatch.setenv("RAY_ADDRESS", "http://b:1")
    assert jobs.resolve_address(None) == "http://b:1"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://a:2")
    assert jobs.resolve_address(None) == "http://a:2"
    assert jobs.resolve_address("http://c:3") == "http://c:3"


def test_an_experiment_with_a_search_block_runs_tune(tmp_path):
    plain = write_experiment(tmp_path)
    assert jobs.command_for(plain) == "train"
    search = tmp_path / "search.yaml"
    search.write_text(plain.read_text() + "search:\n  regda.trade_off: {loguniform: [0.1, 10]}\n")
    assert jobs.command_for(search) == "tune"


def test_entrypoint_quotes_values_and_joins_the_jobs_cluster():
    line = jobs.entrypoint("train", "_submitted/my exp.yaml", ["train.output_dir=/s p"], "n1")
    assert line == (
        "python -m regda_dist.cli train '_submitted/my exp.yaml' --address auto "
        "--set 'train.output_dir=/s p' --name n1"
    )


def test_staging_ships_the_project_without_environments_results_or_tests(tmp_path):
    inside = jobs.stage(ROOT / "experiments" / "synth_hand.yaml", tmp_path / "a")
    assert inside == "experiments/synth_hand.yaml"
    shipped = {p.relative_to(tmp_path / "a").parts[0] for p in (tmp_path / "a").iterdir()}
    assert {"regda_dist", "experiments", "pyproject.toml"} <= shipped
    assert not shipped & {".git", ".venv", "runs", "data", "tests"}
    assert not list((tmp_path / "a").rglob("__pycache__"))
    source = {p.relative_to(ROOT) for p in (ROOT / "regda_dist").rglob("*.py")}
    staged = {p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / "regda_dist").rglob("*.py")}
    assert staged == source  # every module, at every depth (regda_dist/data included)
    outside = jobs.stage(write_experiment(tmp_path), tmp_path / "b")
    assert outside == "_submitted/tiny.yaml" and (tmp_path / "b" / outside).is_file()


def test_failure_line_prefers_the_jobs_own_error():
    logs = "loading\nregda-dist: error: runs/x holds a finished run; choose another --name\n"
    assert jobs.failure_line("j1", "FAILED", logs) == (
        "job j1 FAILED: runs/x holds a finished run; choose another --name"
    )
    assert jobs.failure_line("j1", "FAILED", "Traceback\nValueError: boom\n") == (
        "job j1 FAILED: ValueError: boom"
    )
    assert jobs.failure_line("j1", "STOPPED", "") == "job j1 STOPPED: no logs"


@pytest.mark.parametrize(
    ("address", "needle"),
    [
        ("http://127.0.0.9:1", "no Ray Jobs API answers at http://127.0.0.9:1"),
        ("ray://127.0.0.1:10001", "expected the head's Jobs API"),
        ("not an address", "expected the head's Jobs API"),
    ],
)
def test_submit_to_a_bad_or_unreachable_address_is_one_line(tmp_path, address, needle):
    one_line_error(cli("submit", str(write_experiment(tmp_path)), "--address", address), needle)


def test_submit_with_a_bad_value_fails_before_connecting(tmp_path):
    done = cli(
        "submit",
        str(write_experiment(tmp_path)),
        "--set",
        "regda.trade_off=-1",
        "--address",
        "http://127.0.0.9:1",
    )
    one_line_error(done, "regda.trade_off must be >= 0.0")


def test_jobs_without_an_address_is_one_line():
    env = {
        k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")
    }
    one_line_error(cli("jobs", "list", env=env), "no Jobs API address")


@pytest.fixture(scope="module")
@applies("ray")
def head():
    """One loopback Ray node with the Jobs API on 127.0.0.1 and its own token."""
    with loopback_cluster(node_ips=("127.0.0.2",), cpus_per_node=2) as cluster:

        def ready():
            try:
                return cli("jobs", "list", "--address", cluster["jobs_api"], env=cluster["env"])
            except subprocess.TimeoutExpired:
                return None

        wait_for(lambda: (done := ready()) is not None and done.returncode == 0, timeout_s=60)
        yield cluster


def test_submit_a_search_export_it_and_a_failed_job_is_one_line(head, tmp_path):
    experiment = write_experiment(tmp_path, scaling={"cpus_per_worker": 1})
    values = yaml.safe_load(experiment.read_text())
    # one trial: each trial's Ray Train workers start in the job's runtime env (about 80 s a
    # trial on 2 shared cores); a second only repeated what the local search tests check
    values["search"] = {"num_samples": 1, "scheduler": "fifo", "seed": 0,
                        "space": {"regda.trade_off": {"loguniform": [0.1, 10.0]}}}  # fmt: skip
    experiment.write_text(yaml.safe_dump(values))
    storage = tmp_path / "shared"
    args = ["submit", str(experiment), "--address", head["jobs_api"], "--storage", str(storage)]
    done = cli(*args, env=head["env"], timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1/1 trials completed" in done.stdout and "SUCCEEDED" in done.stdout
    job_id = done.stdout.split("submitted job ", 1)[1].split()[0]

    status = cli("jobs", "status", job_id, "--address", head["jobs_api"], env=head["env"])
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout, status.stderr
    listed = cli("jobs", "list", "--address", head["jobs_api"], env=head["env"])
    assert job_id in listed.stdout and "_submitted/tiny.yaml" in listed.stdout

    # Results are on the shared storage: export works from this machine.
    exported = cli("export", str(storage / "tiny"), env=head["env"])
    assert exported.returncode == 0, exported.stderr
    assert (storage / "tiny" / "best" / "synth_hand" / "config.yaml").is_file()

    # The same search again: refused inside the job (a search is never overwritten).
    one_line_error(cli(*args, env=head["env"]), "FAILED", "holds a search")


def test_a_submission_without_the_right_token_is_refused(head, tmp_path):
    experiment = str(write_experiment(tmp_path))
    no_token = {k: v for k, v in head["env"].items() if not k.startswith("RAY_AUTH")}
    no_token["HOME"] = str(tmp_path)  # not ~/.ray/auth_token either
    one_line_error(
        cli("submit", experiment, "--address", head["jobs_api"], env=no_token),
        "authentication required",
    )
    wrong = {**head["env"], "RAY_AUTH_TOKEN": "0" * 32}
    one_line_error(
        cli("submit", experiment, "--address", head["jobs_api"], env=wrong), "token was refused"
    )
    assert not (tmp_path / "runs").exists()


@ray.remote(num_cpus=0)
class _Probe:
    def ping(self) -> int:
        return 1


@ray.remote(num_cpus=0)
class _Asker:
    def ask(self, actor_id: str) -> bool:
        """What Ray Train's placement-group cleaner asks."""
        from ray.train.v2._internal.state.util import is_actor_alive

        return is_actor_alive(actor_id, timeout=30)


@ray.remote(num_cpus=0)
def _alive(actor_id: str) -> bool:
    """Asked as the cleaner asks it: from a detached actor that a worker of the job created with
    runtime_env variables of its own (Tune's trial and Train's controller set theirs)."""
    env = {"env_vars": {"REGDA_DIST_PROBE": "1"}}
    asker = _Asker.options(lifetime="detached", runtime_env=env).remote()
    try:
        return ray.get(asker.ask.remote(actor_id))
    finally:
        ray.kill(asker)


def test_the_embedded_rays_workers_ask_their_own_state_api_beside_another_ray(head, local_ray):
    """Beside this module's Ray, the embedded one's workers still ask their own State API.
    Ray Train's placement-group cleaner asks it whether a trial's controller lives; when it
    could not tell its Ray from another ("Found multiple active Ray instances") its thread
    died, the placement group of a trial the scheduler stopped was never removed, and a later
    trial waited for its CPUs forever (the test suite's search beside a running search)."""
    probe = _Probe.remote()  # local_ray: the embedded Ray (cluster.connect), started second
    assert ray.get(probe.ping.remote()) == 1
    actor_id = probe._actor_id.hex()
    assert ray.get(_alive.remote(actor_id)) is True
    ray.kill(probe)
    assert wait_for(lambda: ray.get(_alive.remote(actor_id)) is False, timeout_s=60)


def test_checking_a_search_needs_no_data_here(tmp_path):
    """The data of a from_data search may live only on the cluster: `submit`'s check does not
    read it (search.metric auto is chosen by tune, where the keypoint set is)."""
    coco = {"dataset": "coco", "root": "/only/on/the/cluster"}
    experiment = write_experiment(
        tmp_path,
        data={"task": "", "keypoints": "from_data", "source": coco, "target": coco},
        train={"output_dir": str(tmp_path / "runs")},
    )
    experiment.write_text(experiment.read_text() + "search:\n  num_samples: 2\n")
    assert jobs.check(experiment, []) == "tune"
