#!/usr/bin/env python3
"""scikit-learn LogisticRegression(C=1.0) on the same splits as the accuracy example.

    pip install scikit-learn
    python3 training/sklearn_baseline.py

For each data set in data/credit/: row i is a test row when i % 5 == 4 (the rule of
training/examples/accuracy.rs), the features are standardized on the training rows
(population standard deviation, as each party does), and LogisticRegression(C=1.0)
(default L2 penalty, lbfgs, intercept not penalized) is fitted on the training rows.
Prints the test AUC, the number of lbfgs iterations and the versions used. Not run by CI;
its output is recorded in training/ACCURACY.md.
"""
import os
import sys

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

SETS = [
    ("Breast cancer", "breast_cancer_wisconsin.csv"),
    ("Australian", "australian_credit.csv"),
    ("German", "german_credit_onehot.csv"),
    ("Taiwan", "credit_default_taiwan.csv"),
]
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "credit")


def main():
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, scikit-learn {sklearn.__version__}")
    print("| data set | train/test rows | features | scikit-learn test AUC | lbfgs iterations |")
    print("|---|---|---|---|---|")
    for name, file in SETS:
        a = np.loadtxt(os.path.join(DATA, file), delimiter=",", skiprows=1)
        x, y = a[:, :-1], a[:, -1]
        test = np.arange(len(y)) % 5 == 4
        xtr, xte = x[~test], x[test]
        mean, std = xtr.mean(axis=0), xtr.std(axis=0)
        std[std <= 1e-12 * (1 + np.abs(mean))] = 1.0
        xtr, xte = (xtr - mean) / std, (xte - mean) / std
        model = LogisticRegression(C=1.0, max_iter=10_000).fit(xtr, y[~test])
        auc = roc_auc_score(y[test], model.decision_function(xte))
        print(f"| {name} | {len(xtr)}/{len(xte)} | {x.shape[1]} | {auc:.4f} | {model.n_iter_[0]} |")


if __name__ == "__main__":
    main()
