"""Errors map to ConfideError subclasses carrying the CLI's one-line message."""

import _thread
import threading
import time

import pandas as pd
import pytest

import confide


def test_unknown_peer(alliance):
    with pytest.raises(confide.UnknownPeerError, match="unknown peer `dave`"):
        alliance.party("alice").psi("credit", peers=["dave:credit"])


def test_policy_refusal(alliance):
    carol = alliance.party("carol")
    # carol's own policy: `loans` allows risk only.
    with pytest.raises(confide.PolicyError, match="does not allow psi for `bob`"):
        carol.psi("loans", peers=["bob:credit"], size_only=True)
    # bob's policy: its `credit` allows PSI to alice only.
    carol.add_dataset("probe", pd.DataFrame({"id": ["C000001"]}), id_column="id",
                      allow={"psi": ["bob"]})
    with pytest.raises(confide.PolicyError, match="refused: by `bob`") as e:
        carol.psi("probe", peers=["bob:credit"], size_only=True)
    assert "\n" not in str(e.value)
    assert "refused job" in alliance.log("bob")


def test_unknown_dataset_and_bad_column(alliance):
    with pytest.raises(confide.InvalidRequestError, match="has no dataset `nothing`"):
        alliance.party("alice").psi("nothing", peers=["bob:credit"])
    with pytest.raises(confide.InvalidRequestError, match="label column `nolabel`"):
        alliance.party("alice").train("credit", peer="bob:credit", label="nolabel")
    alice = alliance.party("alice")
    with pytest.raises(confide.InvalidRequestError, match="no column `phone`"):
        alice.add_dataset("bad", alice.data_dir / "datasets" / "credit.csv", id_column="phone")
    assert not (alice.data_dir / "datasets" / "bad.csv").exists()
    # The daemon refuses a second dataset of the same name (the file is not overwritten).
    with pytest.raises(confide.InvalidRequestError, match="already declared"):
        alice._c.add_dataset("credit", str(alice.data_dir / "datasets" / "credit.csv"),
                             "customer_id", [])


def test_usage_errors(alliance):
    with pytest.raises(confide.UsageError, match="PARTY:DATASET"):
        alliance.party("alice").psi("credit", peers=["bob"])
    with pytest.raises(confide.UsageError, match="no-such-flag"):
        alliance.party("alice").train("credit", peer="bob:credit", label="default",
                                      no_such_flag=1)
    with pytest.raises(confide.UsageError, match="tolerance"):
        alliance.party("alice").train("credit", peer="bob:credit", label="default",
                                      tolerance=0.5)


def test_config_and_daemon_not_running(alliance, tmp_path):
    with pytest.raises(confide.ConfigError, match="config file"):
        confide.Party(tmp_path / "missing.toml")
    alliance.stop("carol")
    try:
        with pytest.raises(confide.DaemonNotRunningError, match="is `confide serve` running"):
            alliance.party("carol").status()
    finally:
        alliance.start("carol")
        deadline = time.time() + 30
        while True:
            try:
                alliance.party("carol").status(peers=False)
                break
            except confide.DaemonNotRunningError:
                assert time.time() < deadline
                time.sleep(0.2)


def test_cancel_unknown_job(alliance):
    with pytest.raises(confide.JobNotFoundError, match="not found"):
        alliance.party("alice").cancel("nosuchjob")


def test_ctrl_c_cancels_at_every_party(alliance):
    alice = alliance.party("alice")
    before = set(alice.jobs()["job_id"])
    timer = threading.Timer(1.5, _thread.interrupt_main)
    timer.start()
    started = time.time()
    with pytest.raises(KeyboardInterrupt):
        alice.train("credit", peer="bob:credit", label="default", epochs=100000,
                    tolerance=0, batch_size=16, optimizer="sgd", learning_rate=0.001)
    timer.cancel()
    assert time.time() - started < 30, "the interrupt ended the wait promptly"
    job = (set(alice.jobs()["job_id"]) - before).pop()
    for name in ("alice", "bob", "carol"):
        deadline = time.time() + 20
        while True:
            jobs = alliance.party(name).jobs().set_index("job_id")
            state = jobs.loc[job, "state"] if job in jobs.index else None
            if state in ("cancelled", "failed"):
                break
            assert time.time() < deadline, f"{name}: job {job} still {state}"
            time.sleep(0.2)
        assert state == "cancelled" or "cancel" in jobs.loc[job, "error"], (name, state)


def test_resume_refusals(alliance):
    """``resume=`` reaches the daemon for PSI and training (the resume itself, with a
    peer killed part way, is tested across real daemons in tests/resume.rs)."""
    alice = alliance.party("alice")
    with pytest.raises(confide.InvalidRequestError, match="is not a job id"):
        alice.psi("credit", peers=["bob:credit"], resume="not-a-job")
    done = alice.psi("credit", peers=["bob:credit"])
    # A job that succeeded deleted its checkpoints: nothing to resume, nothing run.
    before = len(alice.jobs())
    with pytest.raises(confide.InvalidRequestError,
                       match=f"job {done.job_id} has no checkpoint at `alice`"):
        alice.psi("credit", peers=["bob:credit"], resume=done.job_id)
    with pytest.raises(confide.InvalidRequestError,
                       match=f"job {done.job_id} has no checkpoint at `alice`"):
        alice.train("credit", peer="bob:credit", label="default", epochs=2,
                    resume=done.job_id)
    assert len(alice.jobs()) == before, "a refused resume starts no job"
