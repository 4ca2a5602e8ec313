#!/usr/bin/env python3
"""Goldens for the linear probe's solver: tiny float32 features (3 and 2 classes) with
scikit-learn's StandardScaler + LogisticRegression(C=1) fitted to convergence.
Writes Tests/Fixtures/golden/probe_solver.json. Needs: pip install scikit-learn numpy."""
import json, os
import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)
cases = []
for k, d, n_train, n_test in [(3, 6, 90, 45), (2, 5, 60, 30), (4, 8, 40, 40)]:
    centres = rng.normal(0, 1.2, size=(k, d))
    def draw(n):
        y = np.arange(n) % k
        x = centres[y] + rng.normal(0, 1.0, size=(n, d)) * rng.uniform(0.5, 3, size=d) + rng.normal(5, 2, size=d) * 0
        x[:, 0] = x[:, 0] * 40 + 7  # badly scaled feature: standardisation matters
        return x.astype(np.float32), y
    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    if k == 4:
        xtr[:, 3] = 2.5; xte[:, 3] = 2.5  # a constant feature: scale 1, as StandardScaler
    sc = StandardScaler().fit(xtr.astype(np.float64))
    clf = LogisticRegression(C=1.0, tol=1e-12, max_iter=100000).fit(sc.transform(xtr.astype(np.float64)), ytr)
    cases.append({
        "classes": k, "features": d,
        "x_train": xtr.ravel().tolist(), "y_train": ytr.tolist(),
        "x_test": xte.ravel().tolist(), "y_test": yte.tolist(),
        "scaler_mean": sc.mean_.tolist(), "scaler_scale": sc.scale_.tolist(),
        "coef": clf.coef_.ravel().tolist(), "intercept": clf.intercept_.tolist(),
        "train_accuracy": float(clf.score(sc.transform(xtr.astype(np.float64)), ytr)),
        "test_accuracy": float(clf.score(sc.transform(xte.astype(np.float64)), yte)),
        "test_predictions": clf.predict(sc.transform(xte.astype(np.float64))).tolist(),
    })
with open(os.path.join(here, "golden", "probe_solver.json"), "w") as f:
    json.dump({"sklearn": sklearn.__version__, "cases": cases}, f)
print("wrote golden/probe_solver.json", [(c["classes"], c["train_accuracy"], c["test_accuracy"]) for c in cases])
