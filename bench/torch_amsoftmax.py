#!/usr/bin/env python3
"""Plain PyTorch CPU AM-Softmax head, written the usual way, timed next to `facelock bench loss`.

normalise features and weights, matmul, subtract the margin at the target, scale,
F.cross_entropy; gradients to both features and weights. Reports the median of 10
forward+backward runs after 3 warm-ups, and the peak RSS above the RSS before the first step
(so dW and all temporaries count, the inputs do not), as a table and optionally CSV.

    pip install torch
    python3 bench/torch_amsoftmax.py --threads 2 --dims 128,512 --classes 1000,10000,100000
"""
import argparse
import csv
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def rss_mb():
    """Current resident set size in MB (10^6 bytes), from /proc."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError("no VmRSS in /proc/self/status")


def reset_peak():
    """Resets the kernel's RSS high-water mark (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def peak_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def am_softmax_loss(features, weights, labels, scale, margin):
    cos = F.normalize(features, dim=1) @ F.normalize(weights, dim=1).t()
    onehot = F.one_hot(labels, weights.shape[0]).to(cos.dtype)
    logits = scale * (cos - margin * onehot)
    return F.cross_entropy(logits, labels)


def bench(batch, dim, classes, scale, margin, warmups, runs):
    gen = torch.Generator().manual_seed(42)
    features = (torch.rand(batch, dim, generator=gen) * 2 - 1).requires_grad_()
    weights = (torch.rand(classes, dim, generator=gen) * 2 - 1).requires_grad_()
    labels = torch.randint(0, classes, (batch,), generator=gen)

    def step():
        features.grad = None
        weights.grad = None
        am_softmax_loss(features, weights, labels, scale, margin).backward()

    reset_peak()
    before = rss_mb()
    for _ in range(warmups):
        step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), peak_mb() - before


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dims", default="128,512")
    parser.add_argument("--classes", default="1000,10000,100000")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scale", type=float, default=30.0)
    parser.add_argument("--margin", type=float, default=0.35)
    parser.add_argument("--csv", help="also write the rows here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    rows = []
    print(f"PyTorch {torch.__version__} AM-Softmax forward+backward, batch {args.batch}, "
          f"{args.threads} threads")
    print(f"{'D':>5} {'C':>9} {'median ms':>10} {'peak extra MB':>14}")
    for dim in map(int, args.dims.split(",")):
        for classes in map(int, args.classes.split(",")):
            ms, mb = bench(args.batch, dim, classes, args.scale, args.margin, warmups=3, runs=10)
            rows.append(("torch", "cpu", args.batch, dim, classes, f"{ms:.1f}", f"{mb:.1f}"))
            print(f"{dim:>5} {classes:>9} {ms:>10.1f} {mb:>14.1f}", flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["implementation", "device", "batch", "dim", "classes", "median_ms",
                             "peak_extra_mb"])
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
