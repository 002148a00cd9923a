#!/usr/bin/env python3
"""libdpm graph generator: command-line entry point.

    python onnx/gen.py all [--out DIR]           regenerate every bundled file (onnx/models/)
    python onnx/gen.py net NAME [--out DIR] [--no-weights]
    python onnx/gen.py init NAME --out FILE      write NAME's initial parameters (e.g. afhq64)
    python onnx/gen.py params NAME               parameter count and list
    python onnx/gen.py bench NAME [--batch B] [--threads T] [--iters N]
                                                 time inference and one training step in ORT
    python onnx/gen.py custom --spec JSON --out DIR [--count]
                                                 a network for the user's own data (see
                                                 dpmgen/custom.py; libdpm calls this)

Output is deterministic: the same inputs produce byte-identical files.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dpmgen import export, nets  # noqa: E402
from dpmgen import init as I  # noqa: E402

MODELS = HERE / "models"
# afhq64's initial weights (~235 MB) are not bundled; `init afhq64` writes them on demand.
UNBUNDLED_WEIGHTS = {"afhq64"}


def cmd_all(args) -> None:
    for name in nets.BUNDLED:
        cmd_net(argparse.Namespace(name=name, out=args.out,
                                   no_weights=name in UNBUNDLED_WEIGHTS))


def cmd_net(args) -> None:
    t0 = time.time()
    paths = export.emit(nets.get(args.name), args.out, weights=not args.no_weights)
    for p in paths:
        print(f"{p}  {os.path.getsize(p):,} bytes")
    print(f"{args.name}: {time.time() - t0:.1f} s", file=sys.stderr)


def cmd_init(args) -> None:
    net = nets.get(args.name)
    n = I.write_weights(args.out, export.param_specs(net), net.seed)
    print(f"{args.out}  {n:,} bytes")


def cmd_params(args) -> None:
    specs = export.param_specs(nets.get(args.name))
    for s in specs:
        print(f"{s.name:60s} {str(list(s.shape)):22s} {s.init.describe()}")
    print(f"{len(specs)} tensors, {sum(s.numel for s in specs):,} parameters")


def cmd_bench(args) -> None:
    from dpmgen import bench

    res = bench.run(args.name, args.models, batch=args.batch, threads=args.threads,
                    iters=args.iters)
    print(bench.format_result(res))


def cmd_custom(args) -> None:
    import json

    from dpmgen import custom

    spec = json.loads(args.spec)
    if args.count:
        print(custom.param_count(spec))
        return
    net = custom.network(spec)
    t0 = time.time()
    paths = export.emit(net, args.out, weights=True)
    for p in paths:
        print(f"{p}  {os.path.getsize(p):,} bytes")
    print(f"{net.name}: {time.time() - t0:.1f} s", file=sys.stderr)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("all", help="regenerate all bundled files")
    p.add_argument("--out", default=str(MODELS))
    p.set_defaults(fn=cmd_all)
    p = sub.add_parser("net", help="generate one network's files")
    p.add_argument("name", choices=nets.BUNDLED)
    p.add_argument("--out", default=str(MODELS))
    p.add_argument("--no-weights", action="store_true")
    p.set_defaults(fn=cmd_net)
    p = sub.add_parser("init", help="write a network's initial parameters")
    p.add_argument("name", choices=nets.BUNDLED)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_init)
    p = sub.add_parser("params", help="list a network's parameters")
    p.add_argument("name", choices=nets.BUNDLED)
    p.set_defaults(fn=cmd_params)
    p = sub.add_parser("bench", help="time inference and a training step (ONNX Runtime CPU)")
    p.add_argument("name", choices=nets.BUNDLED)
    p.add_argument("--models", default=str(MODELS))
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.set_defaults(fn=cmd_bench)
    p = sub.add_parser("custom", help="generate a network from a JSON spec (own data)")
    p.add_argument("--spec", required=True, help="JSON object, see dpmgen/custom.py")
    p.add_argument("--out", help="output folder")
    p.add_argument("--count", action="store_true", help="print the parameter count only")
    p.set_defaults(fn=cmd_custom)
    args = ap.parse_args(argv)
    if args.cmd == "custom" and not args.count and not args.out:
        ap.error("custom: --out is required")
    args.fn(args)


if __name__ == "__main__":
    main()
