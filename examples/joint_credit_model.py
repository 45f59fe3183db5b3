"""Joint credit model with Confide, from Python (the notebook
examples/notebooks/joint_credit_model.ipynb as a plain script).

A bank (alice) holds customers' repayment history and the default label; a platform (bob)
holds their bills and payments; carol deals the training randomness and lends into the
alliance's risk index. The script starts a local three-party alliance, declares the data
from pandas, finds the common customers (PSI), trains a logistic regression on both
parties' columns without either seeing the other's, scores held-out customers, asks the
risk index about applicants, proves a job from the audit log, and plots the ROC curve of
the joint model against each party's own model.

Run from the repository root after `cargo build` and `pip install ./python`:

    python examples/joint_credit_model.py [roc.png]
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python" / "tests"))
import confide  # noqa: E402
from alliance import Alliance, credit_tables, loans_table  # noqa: E402


def roc(y, s):
    """False and true positive rates and the AUC of scores `s` for labels `y`."""
    order = np.argsort(-np.asarray(s), kind="stable")
    y = np.asarray(y)[order]
    tpr = np.concatenate([[0], np.cumsum(y) / y.sum()])
    fpr = np.concatenate([[0], np.cumsum(1 - y) / (1 - y).sum()])
    return fpr, tpr, float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def own_model(train, test, cols, label="default", epochs=300, lr=0.5):
    """One party's own logistic regression (plaintext, its columns only)."""
    mu, sd = train[cols].mean(), train[cols].std().replace(0, 1)
    x = ((train[cols] - mu) / sd).to_numpy()
    y = train[label].to_numpy()
    w, b = np.zeros(len(cols)), 0.0
    for _ in range(epochs):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        w -= lr * x.T @ (p - y) / len(y)
        b -= lr * float(np.mean(p - y))
    xt = ((test[cols] - mu) / sd).to_numpy()
    return 1 / (1 + np.exp(-(xt @ w + b)))


def main(out_png=None):
    al = Alliance().up()
    try:
        alice, bob, carol = (al.party(n, progress=True) for n in ("alice", "bob", "carol"))
        print(alice.status())

        # 1. Data from pandas: 600 customers at the bank, ~80% of them at the platform.
        a, b = credit_tables(rows=600)
        test_ids = set(a["customer_id"].sample(frac=0.3, random_state=1))
        a_train, a_test = a[~a.customer_id.isin(test_ids)], a[a.customer_id.isin(test_ids)]
        alice.add_dataset("credit", a_train, id_column="customer_id",
                          allow={"psi": ["bob"], "train": ["bob"]})
        alice.add_dataset("applicants", a_test.drop(columns="default"), id_column="customer_id",
                          allow={"train": ["bob"]})
        bob.add_dataset("credit", b, id_column="customer_id",
                        allow={"psi": ["alice"], "train": ["alice"]})
        carol.add_dataset("loans", loans_table(0), id_column="customer_id",
                          allow={"risk": ["alice", "bob"]})

        # 2. PSI: the customers both know.
        r = alice.psi("credit", peers=["bob:credit"])
        print(r.summary)

        # 3. A joint model, kept secret-shared, then scoring of held-out applicants.
        model = alice.train("credit", peer="bob:credit", label="default", epochs=30,
                            learning_rate=0.5, keep_shared=True)
        print(model.summary)
        scores = alice.predict(model, "applicants", peer="bob:credit")
        truth = a_test.set_index("customer_id")["default"]
        joint = scores.assign(y=scores["id"].map(truth))

        # 4. Each party's own model on the same held-out customers (plaintext, for the
        #    comparison: in reality bob has no labels to train one).
        merged_train = a_train.merge(b, on="customer_id")
        merged_test = a_test.merge(b, on="customer_id").set_index("customer_id")
        merged_test = merged_test.loc[joint["id"]]
        a_cols = ["LIMIT_BAL", "AGE", "PAY_0", "PAY_2", "PAY_3"]
        b_cols = ["BILL_AMT1", "BILL_AMT2", "PAY_AMT1", "PAY_AMT2", "PAY_AMT3"]
        curves = {
            "joint (alice + bob, Confide)": roc(joint["y"], joint["score"]),
            "alice alone": roc(merged_test["default"], own_model(merged_train, merged_test, a_cols)),
            "bob alone": roc(merged_test["default"], own_model(merged_train, merged_test, b_cols)),
        }
        for name, (_, _, auc) in curves.items():
            print(f"held-out AUC, {name}: {auc:.3f}")

        # 5. The risk index: carol (a lender) contributes, then asks about applicants.
        print(carol.risk_ingest("loans")["summary"])
        print(carol.risk_query(["C000001", "C000002", "C999999"]))

        # 6. Audit: the log, its verification, and an offline proof of the training job.
        print(alice.audit_log()[["index", "member", "kind", "job_id"]].tail())
        print(alice.audit_verify())
        print(confide.check(alice.prove(model.job_id), al.genesis).summary)

        if out_png:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(5, 5))
            for name, (fpr, tpr, auc) in curves.items():
                ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
            ax.plot([0, 1], [0, 1], "k:", lw=0.8)
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
            ax.set_title("Held-out customers")
            ax.legend(loc="lower right")
            fig.savefig(out_png, dpi=100, bbox_inches="tight")
            print(f"ROC curves written to {out_png}")
        return curves
    finally:
        al.down()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
