#!/usr/bin/env python3
"""Plaintext XGBoost on the same splits and hyperparameters as the boosted-tree example.

    pip install xgboost
    python3 training/xgboost_baseline.py [TREES DEPTH]

For each data set in data/credit/: row i is a test row when i % 5 == 4, or
i % 5 == GBDT_FOLD with the environment variable GBDT_FOLD=0..4 (the rule of
training/examples/gbdt_accuracy.rs); xgboost.train(objective="binary:logistic", tree_method="hist",
max_bin=32, max_depth=DEPTH, eta=0.3, reg_lambda=1, gamma=0, min_child_weight=1,
num_boost_round=TREES; the same as XGBClassifier's n_estimators) is fitted on the raw training rows (trees need no scaling).
Two base scores: 0.5 (logit 0, as Confide starts from F = 0) and XGBoost's default
(estimated from the labels); and, to separate binning from the rest, base 0.5 on the
columns replaced by Confide's own bin indices (bins.rs's quantile thresholds, so XGBoost
sees exactly Confide's split candidates). Prints the test AUC and the versions used. Not run by CI;
its output is recorded in training/ACCURACY.md ("Boosted trees").
"""
import os
import sys

import numpy as np
import xgboost as xgb

SETS = [
    ("Breast cancer", "breast_cancer_wisconsin.csv"),
    ("Australian", "australian_credit.csv"),
    ("German", "german_credit_onehot.csv"),
    ("Taiwan", "credit_default_taiwan.csv"),
]
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "credit")


def auc(s, y):
    """Rank AUC with ties counted half (the same definition as confide_training::auc)."""
    order = np.argsort(s, kind="mergesort")
    s, y = s[order], y[order]
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    pos = y == 1
    n1, n0 = pos.sum(), (~pos).sum()
    return (ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


def confide_bins(train_col, col, bins=32):
    """Confide's local binning (training/src/gbdt/bins.rs): thresholds at quantile values,
    left is `v <= t_k`; returns each value's bin index."""
    v = np.sort(train_col)
    distinct = np.unique(v)
    if len(distinct) <= bins:
        t = list(distinct)
    else:
        t = [max(v[(i * len(v)) // bins - 1], v[0]) for i in range(1, bins)]
    t = sorted(set(t))
    t = [x for x in t if x < distinct[-1]]
    return np.searchsorted(np.array(t), col, side="left").astype(float)


def main():
    trees = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    depth = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    fold = int(os.environ.get("GBDT_FOLD", "4"))
    assert 0 <= fold < 5, "GBDT_FOLD is 0 to 4"
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, xgboost {xgb.__version__}")
    print(f"trees {trees}, depth {depth}, eta 0.3, max_bin 32, lambda 1, gamma 0, min_child_weight 1; test rows i % 5 == {fold}")
    print("| data set | train/test rows | features | XGBoost AUC (base 0.5) | XGBoost AUC (default base) | XGBoost on Confide's bins (base 0.5) |")
    print("|---|---|---|---|---|---|")
    for name, file in SETS:
        a = np.loadtxt(os.path.join(DATA, file), delimiter=",", skiprows=1)
        x, y = a[:, :-1], a[:, -1]
        test = np.arange(len(y)) % 5 == fold
        binned = np.column_stack(
            [confide_bins(x[~test, j], x[:, j]) for j in range(x.shape[1])]
        )
        out = []
        for base, xs in ((0.5, x), (None, x), (0.5, binned)):
            params = {
                "objective": "binary:logistic",
                "tree_method": "hist",
                "max_bin": 32,
                "max_depth": depth,
                "eta": 0.3,
                "reg_lambda": 1.0,
                "gamma": 0.0,
                "min_child_weight": 1.0,
                "nthread": 2,
            }
            if base is not None:
                params["base_score"] = base
            if xs is binned:
                params["max_bin"] = 64  # every one of Confide's bins is its own XGBoost bin
            m = xgb.train(params, xgb.DMatrix(xs[~test], label=y[~test]), num_boost_round=trees)
            out.append(auc(m.predict(xgb.DMatrix(xs[test])), y[test]))
        print(f"| {name} | {(~test).sum()}/{test.sum()} | {x.shape[1]} | {out[0]:.4f} | {out[1]:.4f} | {out[2]:.4f} |")


if __name__ == "__main__":
    main()
