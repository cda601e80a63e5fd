#!/usr/bin/env python3
"""Training throughput of facelock's MobileFaceNet-style backbone in PyTorch (CPU).

Builds the same layout as host/src/model (stem 3x3 s2, depthwise 3x3, inverted-residual
stages, 1x1 conv, global depthwise conv, linear embedding + BN; BN + PReLU everywhere as in
facelock), trains it with an AM-Softmax head and SGD (momentum 0.9, weight decay 5e-4) on
random 112x112 batches, and prints images per second, so the number can be put next to
`facelock bench train` run on the same machine.

Usage: python3 bench/torch_train.py [--width 0.7] [--batch 32 64] [--threads 2] [--steps 10]
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

STAGES = [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)]


def scaled(channels, width):
    return max(8, int(round(channels * width / 8.0)) * 8)


class ConvUnit(nn.Sequential):
    def __init__(self, cin, cout, kernel, stride=1, padding=0, groups=1, prelu=True):
        layers = [nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
                  nn.BatchNorm2d(cout)]
        if prelu:
            layers.append(nn.PReLU(cout))
        super().__init__(*layers)


class Bottleneck(nn.Module):
    def __init__(self, cin, cout, expansion, stride):
        super().__init__()
        hidden = cin * expansion
        self.body = nn.Sequential(
            ConvUnit(cin, hidden, 1),
            ConvUnit(hidden, hidden, 3, stride, 1, groups=hidden),
            ConvUnit(hidden, cout, 1, prelu=False),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class MobileFaceNet(nn.Module):
    def __init__(self, width=0.7, embedding=128, size=112):
        super().__init__()
        stem = scaled(64, width)
        layers = [ConvUnit(3, stem, 3, 2, 1), ConvUnit(stem, stem, 3, 1, 1, groups=stem)]
        channels = stem
        for expansion, c, repeats, stride in STAGES:
            out = scaled(c, width)
            for r in range(repeats):
                layers.append(Bottleneck(channels, out, expansion, stride if r == 0 else 1))
                channels = out
        head = scaled(512, width)
        side = size // 16
        layers += [ConvUnit(channels, head, 1), ConvUnit(head, head, side, groups=head, prelu=False)]
        self.features = nn.Sequential(*layers)
        self.linear = nn.Linear(head, embedding, bias=False)
        self.bn = nn.BatchNorm1d(embedding)

    def forward(self, x):
        return self.bn(self.linear(self.features(x).flatten(1)))


def am_softmax(embeddings, weight, labels, scale=30.0, margin=0.35):
    cos = F.normalize(embeddings) @ F.normalize(weight).t()
    logits = scale * (cos - margin * F.one_hot(labels, weight.shape[0]))
    return F.cross_entropy(logits, labels)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=float, default=0.7)
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--classes", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MobileFaceNet(args.width)
    weight = nn.Parameter(torch.randn(args.classes, 128) * 0.01)
    params = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__}, {args.threads} threads, width {args.width}, {params} parameters")
    optimizer = torch.optim.SGD(list(model.parameters()) + [weight], lr=0.01, momentum=0.9,
                                weight_decay=5e-4)
    model.train()
    for batch in args.batch:
        images = torch.randn(batch, 3, 112, 112)
        labels = torch.randint(0, args.classes, (batch,))
        for step in range(args.steps + 2):
            if step == 2:
                start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = am_softmax(model(images), weight, labels)
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - start
        print(f"batch {batch}: {batch * args.steps / seconds:.1f} train img/s "
              f"({1000 * seconds / args.steps:.0f} ms/step)")


if __name__ == "__main__":
    main()
