#!/usr/bin/env python3
"""Runs facelock ONNX models in onnxruntime: latency, and agreement with tract's outputs.

For each MODEL prints one JSON line with the onnxruntime version, the median latency of a
batch-1 run over --runs runs (--bench), and, with --check DIR, the max abs difference and
the lowest cosine between onnxruntime's embeddings and tract's, read from
DIR/model-<k>.input.f32 ([n, 3, h, w], little-endian f32) and
DIR/model-<k>.tract.f32 ([n, dim]), k the model's 0-based position on the command line (two
files of the same name in different folders do not collide); `facelock bench infer` writes
those files.
"""
import argparse
import json
import os
import statistics
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="ONNX files")
    parser.add_argument("--bench", action="store_true", help="measure latency")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads")
    parser.add_argument("--runs", type=int, default=50, help="timed runs (after 5 warm-ups)")
    parser.add_argument("--check", metavar="DIR", help="compare with tract outputs in DIR")
    args = parser.parse_args()
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as error:
        print(f"ort_check.py: {error}; install with `pip install onnxruntime`", file=sys.stderr)
        return 2

    for index, path in enumerate(args.models):
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        height = int(meta["facelock.input_height"])
        width = int(meta["facelock.input_width"])
        input_name = session.get_inputs()[0].name
        result = {"model": path, "onnxruntime": ort.__version__, "size_bytes": os.path.getsize(path)}

        if args.bench:
            image = np.random.default_rng(0).uniform(-1, 1, (1, 3, height, width)).astype(np.float32)
            for _ in range(5):
                session.run(None, {input_name: image})
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                session.run(None, {input_name: image})
                times.append((time.perf_counter() - start) * 1000.0)
            result["ort_median_ms"] = statistics.median(times)
            result["threads"] = args.threads

        if args.check:
            name = f"model-{index}"
            images = np.fromfile(os.path.join(args.check, name + ".input.f32"), dtype="<f4")
            images = images.reshape(-1, 3, height, width)
            tract = np.fromfile(os.path.join(args.check, name + ".tract.f32"), dtype="<f4")
            tract = tract.reshape(images.shape[0], -1)
            ort_out = session.run(None, {input_name: images})[0].reshape(tract.shape)
            dot = (ort_out * tract).sum(axis=1)
            norms = np.linalg.norm(ort_out, axis=1) * np.linalg.norm(tract, axis=1)
            result["images"] = int(images.shape[0])
            result["max_abs_diff"] = float(np.abs(ort_out - tract).max())
            result["min_cosine"] = float((dot / norms).min())
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
