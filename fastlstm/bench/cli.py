"""The command line: the options of ``python -m fastlstm bench`` and the run they ask for."""
import argparse
import json

import fastlstm

from . import distributed
from .loop import LOOPS
from .problems import CELLS, FULL, KINDS, LAYER_CLASSES, LAYERS, QUICK
from .report import format_report, plot
from .run import log, run
from .streaming import STREAMS
from .timing import DEFAULT_REPEAT


def parse_shapes(text, dims="T,B,I,H"):
    """Parse "T,B,I,H;T,B,I,H" (or "none") into a list of distinct tuples of positive ints, one
    per shape, with the dimensions `dims`."""
    if text.strip() == "none":
        return []
    size = len(dims.split(","))
    try:
        shapes = [tuple(map(int, item.split(","))) for item in text.split(";") if item.strip()]
    except ValueError:
        shapes = []
    if not shapes or any(len(shape) != size or min(shape) < 1 for shape in shapes):
        raise argparse.ArgumentTypeError(
            f"expected '{dims};{dims};...' with {size} positive integers per shape, or 'none', "
            f"got {text!r}")
    return list(dict.fromkeys(shapes))


def parse_loops(text):
    """Parse "T,B,I,H,O;..." (or "none") into a list of training-loop specs (see :data:`LOOPS`)."""
    return parse_shapes(text, "T,B,I,H,O")


def parse_streams(text):
    """Parse "L,B,I,H;..." (or "none") into a list of stream specs (see :data:`STREAMS`)."""
    return parse_shapes(text, "L,B,I,H")


def parse_layers(text):
    """Parse "KIND:L:D:T,B,I,H;..." (or "none") into a list of layer specs (see :data:`LAYERS`)."""
    if text.strip() == "none":
        return []
    specs = []
    try:
        for item in filter(str.strip, text.split(";")):
            kind, L, D, dims = item.strip().split(":")
            specs.append((kind, int(L), int(D), tuple(parse_shapes(dims)[0])))
    except (ValueError, argparse.ArgumentTypeError):
        specs = []
    if not specs or any(k not in LAYER_CLASSES or L < 1 or D not in (1, 2) for k, L, D, _ in specs):
        raise argparse.ArgumentTypeError(
            f"expected 'KIND:L:D:T,B,I,H;...' (KIND lstm, gru or rnn; D 1 or 2) or 'none', "
            f"got {text!r}")
    return specs


def parse_kinds(text):
    """Parse "lstm,gru,rnn" into a tuple of distinct cell kinds, in that order."""
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    if not kinds or any(k not in KINDS for k in kinds):
        raise argparse.ArgumentTypeError(f"expected kinds among {','.join(KINDS)}, separated by "
                                         f"commas, got {text!r}")
    return kinds


def _positive_int(text):
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def add_arguments(parser):
    """Add the options of ``python -m fastlstm bench`` to an argparse parser."""
    parser.add_argument("--quick", action="store_true", help="the small grid of shapes")
    parser.add_argument("--shapes", type=parse_shapes, metavar="T,B,I,H;...",
                        help="a custom grid of shapes (overrides --quick)")
    parser.add_argument("--threads", type=_positive_int, default=fastlstm.get_num_threads(),
                        metavar="N", help="threads of fastlstm and torch (default: %(default)s)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--cells", type=parse_shapes, default=CELLS, metavar="T,B,I,H;...",
                        help="the step loops of the cell table (default: %s)"
                        % ";".join(",".join(map(str, c)) for c in CELLS))
    parser.add_argument("--layers", type=parse_layers, default=LAYERS, metavar="KIND:L:D:T,B,I,H;...",
                        help="the layer table, e.g. lstm:2:2:50,16,256,256 (kind lstm, gru or rnn; "
                        "L layers; D = 1 or 2 directions); 'none' for no layers (default: %s)"
                        % ";".join(f"{k}:{L}:{D}:{','.join(map(str, d))}" for k, L, D, d in LAYERS))
    parser.add_argument("--loops", type=parse_loops, default=LOOPS, metavar="T,B,I,H,O;...",
                        help="the training-loop table: an LSTM under a read-out of O outputs; "
                        "'none' for no loops (default: %s)"
                        % ";".join(",".join(map(str, spec)) for spec in LOOPS))
    parser.add_argument("--streams", type=parse_streams, default=STREAMS, metavar="L,B,I,H;...",
                        help="the streaming table: L stacked LSTM layers stepped one time step at "
                        "a time; 'none' for no streams (default: %s)"
                        % ";".join(",".join(map(str, spec)) for spec in STREAMS))
    parser.add_argument("--repeat", type=_positive_int, default=DEFAULT_REPEAT, metavar="N",
                        help="timed rounds; the minimum is kept (default: %(default)s)")
    parser.add_argument("--kinds", type=parse_kinds, default=("lstm",), metavar="KIND,...",
                        help="the cell kinds of the shape grid, a table each: lstm, gru, rnn "
                        "(default: lstm)")
    parser.add_argument("--no-torch", action="store_true", help="leave torch.nn.LSTM out")
    parser.add_argument("--no-onnxruntime", action="store_true",
                        help="leave onnxruntime out (otherwise its forward, if installed, float32)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--plot", metavar="FILE",
                        help="also write a PNG of the speed-ups (needs matplotlib)")
    distributed.add_arguments(parser)


def cli(args):
    """Run the benchmark that the parsed `args` describe, print the table and write the files."""
    if args.distributed:
        return distributed.cli(args)
    shapes = args.shapes if args.shapes is not None else (QUICK if args.quick else FULL)
    report = run(shapes, args.threads, args.dtype, args.repeat, use_torch=not args.no_torch,
                 cells=args.cells, layers=args.layers, loops=args.loops, kinds=args.kinds,
                 streams=args.streams,
                 use_onnxruntime=not args.no_onnxruntime)
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        log(f"wrote {args.json}")
    if args.plot:
        if plot(report, args.plot):
            log(f"wrote {args.plot}")
        else:
            log(f"note: --plot needs matplotlib (pip install matplotlib); {args.plot} not written")
