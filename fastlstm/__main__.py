"""The command line: ``python -m fastlstm bench [options]``, ``python -m fastlstm config`` and
``python -m fastlstm --version``."""
import argparse
import sys

from . import __version__, bench, show_config


def main(argv=None):
    """Parse `argv` (default: sys.argv[1:]) and run its subcommand; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m fastlstm", description="fastlstm: LSTM forward and backward in C.")
    parser.add_argument("--version", action="version", version=f"fastlstm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bench_parser = commands.add_parser(
        "bench", help="time fastlstm against the NumPy reference and torch.nn.LSTM",
        description=bench.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_arguments(bench_parser)
    bench_parser.set_defaults(run=bench.cli)
    config_parser = commands.add_parser(
        "config", help="print OpenMP, SIMD level, compiler and flags of the C kernels")
    config_parser.set_defaults(run=lambda args: show_config())
    args = parser.parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
