"""Every call of the API against a live local alliance."""

import json
import time

import pandas as pd
import pytest

import confide


def test_status_and_jobs(alliance):
    alice = alliance.party("alice")
    st = alice.status()
    assert st["party"] == "alice"
    assert {p["name"]: p["reachable"] for p in st["peers"]} == {"bob": True, "carol": True}
    assert alice.status(peers=False)["peers"] == []
    jobs = alice.jobs()
    assert isinstance(jobs, pd.DataFrame)
    assert list(jobs.columns)[:6] == ["job_id", "kind", "state", "initiator", "parties", "error"]


def test_psi(alliance):
    alice = alliance.party("alice")
    r = alice.psi("credit", peers=["bob:credit"])
    bob = pd.read_csv(alliance.party("bob").data_dir / "datasets" / "credit.csv", dtype=str)
    mine = pd.read_csv(alice.data_dir / "datasets" / "credit.csv", dtype=str)
    truth = set(bob["customer_id"]) & set(mine["customer_id"])
    assert r.size == len(truth)
    assert set(r.ids["id"]) == truth
    assert r.job_id and r.summary.startswith(f"psi job {r.job_id}: alice 600 distinct IDs")
    assert r.job_id in set(alice.jobs()["job_id"])
    assert r.result["protocol"] == "kkrt" and r.summary.endswith("(kkrt PSI)")
    ecdh = alice.psi("credit", peers=["bob:credit"], protocol="ecdh")
    assert ecdh.result["protocol"] == "ecdh" and set(ecdh.ids["id"]) == truth
    only = alice.psi("credit", peers=["bob:credit"], size_only=True)
    assert only.size == len(truth) and only.ids is None
    assert only.result["protocol"] == "ecdh"


def test_train_predict(alliance, tmp_path):
    alice = alliance.party("alice")
    m = alice.train("credit", peer="bob:credit", label="default", epochs=5,
                    learning_rate=0.5, output=tmp_path / "m.json")
    assert m.metrics["common_rows"] > 400 and m.metrics["epochs"] == 5
    assert 0.5 < m.metrics["train_auc"] <= 1.0
    assert "PAY_0" in m.weights and "BILL_AMT1" in m.weights and "intercept" in m.weights
    assert json.loads((tmp_path / "m.json").read_text())["intercept"] == m.weights["intercept"]
    assert m.summary.startswith(f"train job {m.job_id}:")
    shared = alice.train("credit", peer="bob:credit", label="default", epochs=5,
                         keep_shared=True)
    assert shared.weights is None, "a secret-shared model is not revealed"
    scores = alice.predict(shared, "credit", peer="bob:credit")
    assert list(scores.columns) == ["id", "score"]
    assert len(scores) == shared.metrics["common_rows"]
    assert scores["score"].between(0, 1).all()
    # bob learns no weights of a shared model either, and gets no scores.
    assert not any(alliance.party("bob").data_dir.glob("python/scores-*"))


def test_risk(alliance):
    carol = alliance.party("carol")
    s = carol.risk_ingest("loans")
    assert s["rows"] == 60 and s["summary"].startswith("risk ingest")
    loans = pd.read_csv(carol.data_dir / "datasets" / "loans.csv", dtype={"customer_id": str})
    ids = list(loans["customer_id"][:3]) + ["nobody"]
    df = carol.risk_query(ids)
    assert list(df.columns) == ["id", "blacklisted", "loans", "amount", "overdue", "queried_by"]
    for col in ["blacklisted", "loans", "amount", "overdue"]:
        assert list(df[col][:3]) == list(loans[col][:3]), col
    assert list(df.iloc[3][["blacklisted", "loans", "amount", "overdue"]]) == [0, 0, 0, 0]


def test_audit(alliance, tmp_path):
    alice = alliance.party("alice")
    r = alice.psi("credit", peers=["bob:credit"], size_only=True)
    log = alice.audit_log()
    assert r.job_id in set(log["job_id"])
    assert {"index", "member", "kind", "job_id", "fingerprint"} <= set(log.columns)
    summary = alice.audit_log(summary=True)
    assert "alice" in set(summary["member"])
    assert "verified" in alice.audit_verify()
    bundle = alice.prove(r.job_id, output=tmp_path / "proof.json")
    ok = confide.check(bundle, alliance.genesis)
    assert ok.job_id == r.job_id and ok.member == "alice"
    assert confide.check(tmp_path / "proof.json", alliance.genesis).index == ok.index
    forged = json.loads(bundle)
    forged["entry"] = forged["entry"][:-4] + ("0000" if forged["entry"][-4:] != "0000" else "1111")
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    with pytest.raises(confide.ProofError, match="proof rejected"):
        confide.check(tmp_path / "forged.json", alliance.genesis)


def test_add_dataset_persists_in_party_toml(alliance):
    bob = alliance.party("bob")
    df = pd.DataFrame({"phone": ["p1", "p2", "p3"], "x": [1, 2, 3]})
    path = bob.add_dataset("phones", df, id_column="phone", allow={"psi": ["carol"]})
    assert path.read_text().startswith("phone,x")
    text = alliance.config("bob").read_text()
    assert "[datasets.phones]" in text and str(path) in text
    # The daemon uses it at once: carol may run PSI on it ...
    carol_df = pd.DataFrame({"phone": ["p2", "p3", "p9"]})
    alliance.party("carol").add_dataset("phones", carol_df, id_column="phone",
                                        allow={"psi": ["bob"]})
    r = alliance.party("carol").psi("phones", peers=["bob:phones"], size_only=True)
    assert r.size == 2
    # ... alice may not (the policy came with it).
    alliance.party("alice").add_dataset("phones", carol_df, id_column="phone",
                                        allow={"psi": ["bob"]})
    with pytest.raises(confide.PolicyError, match="refused: by `bob`"):
        alliance.party("alice").psi("phones", peers=["bob:phones"], size_only=True)
    # The change is logged like a refusal.
    assert "policy changed: dataset registered" in alliance.log("bob")
    # After a restart the daemon reads it from party.toml.
    alliance.stop("bob")
    alliance.start("bob")
    deadline = time.time() + 30
    while True:
        try:
            r = alliance.party("carol").psi("phones", peers=["bob:phones"], size_only=True)
            break
        except confide.ConfideError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)
    assert r.size == 2
