"""Test-time augmentation speed: does ``mode: auto`` pick the faster of batched and loop, and what do views cost?

For an MLP (tabular, 64 features), a small conv net (3 x 16 x 16 images) and a GRU (32 steps x 3), at
input batches of 1 and 64 rows, with 8 views (the identity and 7 transforms), in this process:

- P6 = time of the mode ``auto`` chose / the faster of ``batched`` and ``loop`` (each the best of the
  repeats); 1.00 means auto picked the faster. Also shown: ``auto``'s own time once its choice is cached
  (the same code path, so it differs from the chosen mode's time by machine noise only) and its first
  call, which pays for the probe, against the faster mode.
- the cost of k views: time of evaluating with k views (the faster mode) / one plain forward pass over
  the same rows (the baseline: ``model(x).softmax(-1)`` under ``no_grad``, no TTA machinery).

Runs where only torch is installed (CPU or one GPU). Every figure is the best of ``--repeat`` runs;
modes are interleaved within a repeat so that machine noise hits them alike.

    python bench/tta.py [--device auto|cpu|cuda] [--repeat 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from scribbles.core import ModelSpec, create
from scribbles.core.evaluation import IDENTITY, clear_mode_cache, predict_views
from scribbles.core.training import pick_device
from torch import nn

VIEWS = 8


def tta_views(name: str, params: dict) -> list:
    return create("tta", name, **params).views()


def cases() -> list[tuple[str, ModelSpec, nn.Module, list]]:
    """(label, spec, model, the 7 non-identity views) for each model of the benchmark."""
    torch.manual_seed(0)
    mlp_spec = ModelSpec("tabular", (64,), 10)
    cnn_spec = ModelSpec("image", (3, 16, 16), 10)
    gru_spec = ModelSpec("sequence", (32, 3), 5)
    image_views = (
        tta_views("hflip", {}) + tta_views("vflip", {}) + tta_views("rot90", {"k": [1, 2, 3]})
        + tta_views("shift", {"dx": [-1, 1], "dy": [0]})
    )
    sequence_views = (
        tta_views("time_shift", {"shifts": [-2, -1, 1, 2]}) + tta_views("scale", {"factors": [0.9, 1.1]})
        + tta_views("reverse", {})
    )
    return [
        ("MLP 64-128-64-10", mlp_spec, create("model", "mlp").build(mlp_spec),
         tta_views("noise", {"copies": VIEWS - 1})),
        ("CNN 16-32 on 3x16x16", cnn_spec, create("model", "cnn").build(cnn_spec), image_views),
        ("GRU 48 on 32x3", gru_spec, create("model", "gru").build(gru_spec), sequence_views),
    ]


def timed(device: torch.device, fn: Callable[..., object], *args: object) -> float:
    """Seconds of ``fn(*args)``, the GPU synchronised on both sides."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


@torch.no_grad()
def plain_pass(model: nn.Module, x: torch.Tensor, chunk: int, device: torch.device) -> None:
    """The baseline: one forward pass per block, no TTA machinery."""
    for start in range(0, len(x), chunk):
        model(x[start : start + chunk].to(device)).softmax(-1).cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the flow's default is 1)")
    parser.add_argument("--rows", type=int, default=0,
                        help="rows per case; default 128 at batch 1, 1024 at 64 (x4 for the MLP)")
    args = parser.parse_args()
    device = pick_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"cpu, {torch.get_num_threads()} thread(s)"
    print(f"device {name}; torch {torch.__version__}; {VIEWS} views (identity + {VIEWS - 1}); "
          f"best of {args.repeat}")
    print()
    print(f"{'model':<22} {'batch':>5} {'batched s':>10} {'loop s':>10} {'auto s':>10} {'chosen':>8} "
          f"{'P6':>6} {'auto/faster':>11} {'1st call':>9}")
    costs: list[str] = []
    worst = 0.0
    for label, spec, model, extra in cases():
        model.to(device).eval()
        views = [IDENTITY, *extra]
        for batch in (1, 64):
            rows = args.rows or (128 if batch == 1 else 1024) * (4 if label.startswith("MLP") else 1)
            x = torch.randn(rows, *spec.input_shape)
            for mode in ("batched", "loop"):  # warm-up: first calls allocate and pick kernels
                predict_views(model, x[: 4 * batch], views, batch, mode)
            clear_mode_cache()
            first = timed(device, predict_views, model, x, views, batch, "auto")
            chosen = predict_views(model, x[: 4 * batch], views, batch, "auto").mode
            best = {"batched": float("inf"), "loop": float("inf"), "auto": float("inf")}
            for _ in range(args.repeat):
                for mode in best:
                    seconds = timed(device, predict_views, model, x, views, batch, mode)
                    best[mode] = min(best[mode], seconds)
            faster = min(best["batched"], best["loop"])
            p6 = best[chosen] / faster
            worst = max(worst, p6)
            print(f"{label:<22} {batch:>5} {best['batched']:>10.4f} {best['loop']:>10.4f} {best['auto']:>10.4f} "
                  f"{chosen:>8} {p6:>6.2f} {best['auto'] / faster:>10.2f}x {first / faster:>8.2f}x", flush=True)
            if batch == 64:
                fastest = "batched" if best["batched"] <= best["loop"] else "loop"
                costs.append(cost_line(label, model, x, views, batch, device, args.repeat, fastest))
    print(f"\nworst P6 (auto / faster of batched and loop): {worst:.2f}")
    print("\ncost of k views (identity + k-1) / one plain forward pass (baseline: model(x).softmax() per block"
          " of 64 rows), in the mode faster at k=8")
    print(f"{'model':<22} " + " ".join(f"{f'k={k}':>7}" for k in (1, 2, 4, 8)))
    for line in costs:
        print(line)


def cost_line(label: str, model: nn.Module, x: torch.Tensor, views: list, batch: int, device: torch.device,
              repeat: int, mode: str) -> str:
    """Time of k views (in the mode that was faster with 8 views) over one plain pass, for k = 1, 2, 4, 8."""
    baseline = float("inf")
    best = {k: float("inf") for k in (1, 2, 4, 8)}
    for _ in range(repeat):
        baseline = min(baseline, timed(device, plain_pass, model, x, batch, device))
        for k in best:
            best[k] = min(best[k], timed(device, predict_views, model, x, views[:k], batch, mode))
    return f"{label:<22} " + " ".join(f"{best[k] / baseline:>6.2f}x" for k in best) + f"  ({mode})"


if __name__ == "__main__":
    main()
