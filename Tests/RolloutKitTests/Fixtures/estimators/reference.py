"""Reference values for pass@k and pass^k, written to pass_at_k_reference.json.

pass@k is the numpy implementation of Chen et al. 2021 ("Evaluating Large Language Models
Trained on Code", Figure 3), unchanged. pass^k = C(c, k) / C(n, k) (τ-bench) is computed
exactly with Python's integers (math.comb and fractions) and with numpy as a running product,
and the two must agree. Cases with k > n have no value (the estimator is undefined there: the
numpy function returns 1.0, which is why rollout refuses or caps instead).

Run: python3 reference.py > pass_at_k_reference.json   (numpy 2.x; the test runs it again
when numpy is installed and checks that it reproduces the file).
"""
import json
import sys
from fractions import Fraction
from math import comb

import numpy as np


def pass_at_k(n, c, k):
    """Chen et al. 2021: 1 - comb(n - c, k) / comb(n, k), computed stably."""
    if n - c < k:
        return 1.0
    return 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))


def pass_hat_k(n, c, k):
    exact = float(Fraction(comb(c, k), comb(n, k)))
    product = float(np.prod((c - np.arange(k)) / (n - np.arange(k)))) if c >= k else 0.0
    assert abs(exact - product) <= 1e-12 * max(1.0, exact), (n, c, k, exact, product)
    return exact


cases = []
for n in range(1, 11):
    for c in range(0, n + 1):
        for k in range(1, n + 2):  # k = n + 1 is a k > n case
            cases.append((n, c, k))
# Larger n: no factorial overflow, n - c < k, k = n, many samples.
cases += [(20, 3, 10), (20, 17, 10), (50, 25, 25), (100, 1, 99), (100, 99, 100), (200, 100, 50),
          (1000, 7, 100), (1000, 993, 100), (10000, 5000, 100), (10000, 1, 1), (10000, 9999, 10000)]
seen = set()
rows = []
for n, c, k in cases:
    if (n, c, k) in seen:
        continue
    seen.add((n, c, k))
    if k > n:
        rows.append({"n": n, "c": c, "k": k, "pass_at_k": None, "pass_hat_k": None})
    else:
        rows.append({"n": n, "c": c, "k": k, "pass_at_k": float(pass_at_k(n, c, k)), "pass_hat_k": pass_hat_k(n, c, k)})
json.dump({"generator": "reference.py", "numpy": np.__version__, "cases": rows}, sys.stdout, indent=0)
sys.stdout.write("\n")
