"""A small, real training run: logistic regression on synthetic data, in numpy.

Deterministic for a given --seed. Logs loss and accuracy per epoch through
gitexp and saves the model to model.npz. Run it tracked:

    git exp run -e example -- python examples/train.py --epochs 20 --lr 0.5

or on its own (it then records its own run).
"""

from __future__ import annotations

import argparse

import numpy as np

import gitexp


def make_data(rng: np.random.Generator, n: int, dim: int):
    w_true = rng.normal(size=dim)
    x = rng.normal(size=(n, dim))
    logits = x @ w_true + 0.5 * rng.normal(size=n)
    y = (logits > 0).astype(np.float64)
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--out", default="model.npz")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    x, y = make_data(rng, args.n, args.dim)
    split = int(0.8 * len(x))
    x_train, y_train, x_val, y_val = x[:split], y[:split], x[split:], y[split:]
    w = np.zeros(args.dim)
    b = 0.0

    with gitexp.start_run(experiment="example", params=vars(args)) as run:
        for epoch in range(args.epochs):
            p = 1.0 / (1.0 + np.exp(-(x_train @ w + b)))
            grad_w = x_train.T @ (p - y_train) / len(y_train)
            grad_b = float(np.mean(p - y_train))
            w -= args.lr * grad_w
            b -= args.lr * grad_b
            eps = 1e-12
            loss = -np.mean(y_train * np.log(p + eps) + (1 - y_train) * np.log(1 - p + eps))
            pv = 1.0 / (1.0 + np.exp(-(x_val @ w + b)))
            acc = float(np.mean((pv > 0.5) == (y_val > 0.5)))
            run.log_metrics({"loss": float(loss), "accuracy": acc}, step=epoch)
            print(f"epoch {epoch:3d}  loss {loss:.4f}  accuracy {acc:.4f}")
        np.savez(args.out, w=w, b=np.array([b]))
        run.log_artifact(args.out)


if __name__ == "__main__":
    main()
