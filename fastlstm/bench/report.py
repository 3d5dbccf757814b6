"""The report: the text tables of a run's records, and a plot of the speed-ups."""
import itertools
import textwrap

import numpy as np

from .loop import QUIET_SECONDS
from .problems import LAYER_CLASSES, PASS_LABELS, PASSES
from .timing import SETTLE_SECONDS

FORWARD = ("forward",)


def _shape_label(record):
    return f"{record['T']},{record['B']},{record['I']},{record['H']}"


def layer_label(spec_or_record):
    """"LSTM x2 bi T,B,I,H" from a layer spec or a layer record."""
    if isinstance(spec_or_record, dict):
        r = spec_or_record
        name, L, bi, shape = r["layer"], r["num_layers"], r["bidirectional"], _shape_label(r)
    else:
        kind, L, D, dims = spec_or_record
        name, bi, shape = LAYER_CLASSES[kind], D == 2, ",".join(map(str, dims))
    return f"{name} x{L} {'bi' if bi else 'uni'} {shape}"


def _format_table(columns, rows, gap=2):
    """A text table of `rows` of cells under two header lines.

    `columns` are (group, name) pairs: a group's title spans its run of columns. The first column is
    left-aligned, the others right-aligned.
    """
    widths = [max(len(name), *(len(row[j]) for row in rows)) for j, (_, name) in enumerate(columns)]
    spans = [(group, [j for j, _ in members])
             for group, members in itertools.groupby(enumerate(columns), lambda c: c[1][0])]
    for group, members in spans:
        room = sum(widths[j] for j in members) + gap * (len(members) - 1)
        for k, j in enumerate(members):  # share what the title lacks among the group's columns
            widths[j] += max(0, len(group) - room + k) // len(members)

    def line(cells):
        aligned = [cell.ljust(w) if j == 0 else cell.rjust(w)
                   for j, (cell, w) in enumerate(zip(cells, widths))]
        return (" " * gap).join(aligned).rstrip()

    group_line = (" " * gap).join(
        group.ljust(sum(widths[j] for j in members) + gap * (len(members) - 1))
        for group, members in spans)
    return "\n".join([group_line.rstrip(), line([name for _, name in columns])]
                     + [line(row) for row in rows])


def _ms(name):
    return lambda r, p: f"{r['ms'][name][p]:.3f}" if p in r["ms"].get(name, ()) else "-"


def _speedup(name):
    return lambda r, p: f"{r['speedup'][name][p]:.2f}x" if p in r["speedup"].get(name, ()) else "-"


def _gflops(r, p):
    return f"{r['gflops'][p]:.1f} ({r['percent_of_peak'][p]:.0f}%)"


# the table's column groups: title -> (format(record, pass) of a cell, the passes it has a column for)
TABLE_GROUPS = {
    "fastlstm ms": (_ms("fastlstm"), PASSES),
    "frozen ms": (_ms("fastlstm frozen"), FORWARD),
    "reference ms": (_ms("reference"), PASSES),
    "speed-up vs ref": (_speedup("reference"), PASSES),
    "torch ms": (_ms("torch"), PASSES),
    "speed-up vs torch": (_speedup("torch"), PASSES),
    "onnxruntime ms": (_ms("onnxruntime"), FORWARD),
    "speed-up vs onnxruntime": (_speedup("onnxruntime"), FORWARD + ("frozen",)),
    "fastlstm GFLOP/s (% of peak)": (_gflops, PASSES),
}


def _us(name):
    return lambda r, p: f"{r['us_per_step'][name][p]:.1f}" if name in r["ms"] else "-"


# the cell table's column groups
CELL_TABLE_GROUPS = {
    "fastlstm us/step": (_us("fastlstm"), PASSES),
    "reference us/step": (_us("reference"), PASSES),
    "speed-up vs ref": (_speedup("reference"), PASSES),
    "torch LSTMCell us/step": (_us("torch"), PASSES),
    "speed-up vs torch": (_speedup("torch"), PASSES),
}

# the whole-sequence table of each kind after the LSTM's: its title
KIND_TITLES = {
    "gru": "GRU: gru_forward / gru_backward (gates r, z, n; 3H columns), torch.nn.GRU, onnxruntime's GRU",
    "rnn": "RNN: rnn_forward / rnn_backward (tanh; H columns), torch.nn.RNN, onnxruntime's RNN",
}


# the speed-ups' column labels: the passes, and onnxruntime against the frozen forward
SPEEDUP_LABELS = {**PASS_LABELS, "frozen": "frozen"}


def _table(first_column, groups, records, label):
    """The text table of `records` under the column `groups`, each row starting with label(r),
    then the note on its speed-ups within the noise (:func:`_within_noise`)."""
    columns = [("", first_column)] + [(title, SPEEDUP_LABELS[p]) for title, (_, passes)
                                      in groups.items() for p in passes]
    rows = [[label(r)] + [cell(r, p) for cell, passes in groups.values() for p in passes]
            for r in records]
    return _format_table(columns, rows) + _within_noise(records, label)


def _within_noise(records, label):
    """A note on the speed-ups of `records` whose rounds fall on both sides of 1.00x: in this run
    neither side was faster in every round, so their table entries are within its noise."""
    if not any("speedup_per_round" in r for r in records):
        return ""  # a report written before the rounds were kept
    found = [f"{label(r)} {name} {SPEEDUP_LABELS[p]} {min(ratios):.2f}-{max(ratios):.2f}x"
             for r in records for name, passes in r.get("speedup_per_round", {}).items()
             for p, ratios in passes.items() if min(ratios) < 1 < max(ratios)]
    text = ("speed-ups whose rounds fall on both sides of 1.00x (the round's contender time / "
            "fastlstm's, lowest-highest): " + ("; ".join(found) if found else "none"))
    return "\n" + "\n".join(textwrap.wrap(text, 100, subsequent_indent="  ",
                                           break_on_hyphens=False))


def format_report(report):
    """The header lines (machine, peers, GEMM peak), one table row per shape (a table per kind),
    then the cell, layer and training-loop tables."""
    m, s = report["machine"], report["settings"]
    openmp = f"on (version {m['openmp_version']})" if m["openmp"] else "off (serial build)"
    header = [
        f"machine: {m['cpu']}, {m['cores']} cores; python {m['python']}, numpy {m['numpy']}, "
        f"torch {m['torch']}",
        f"onnxruntime {m['onnxruntime']}",
        f"fastlstm {m['fastlstm']}: SIMD {m['simd']}, OpenMP {openmp}; {m['threads']} threads; "
        f"dtype {m['dtype']}",
        f"GEMM peak: {report['gemm_peak_gflops']:.1f} GFLOP/s (NumPy matmul {s['gemm_size']}x"
        f"{s['gemm_size']} {m['dtype']}, best of {s['gemm_repeat']} before and "
        f"{s['gemm_repeat']} after the shapes)",
        f"NumPy's BLAS (GEMM peak and reference) runs on {s['blas_threads']}",
        f"times in ms: minimum of {s['repeat']} interleaved rounds, each timed call after "
        f"{s['settle_seconds']} s of untimed ones; "
        f"speed-up = contender's time / fastlstm's time, of the minima; frozen = "
        f"layer.freeze()'s forward, "
        f"its weights packed beforehand as onnxruntime's session packs its own",
        "",
    ]
    by_kind = {kind: [r for r in report["results"] if r.get("kind", "lstm") == kind]
               for kind in dict.fromkeys(r.get("kind", "lstm") for r in report["results"])}
    lstm = by_kind.pop("lstm", [])
    text = "\n".join(header) + (_table("shape (T,B,I,H)", TABLE_GROUPS, lstm, _shape_label)
                                if lstm else "(no LSTM shapes)")
    for kind, records in by_kind.items():
        text += (f"\n\n{KIND_TITLES[kind]}\n"
                 + _table("shape (T,B,I,H)", TABLE_GROUPS, records, _shape_label))
    if report["cell_results"]:
        text += ("\n\nThe drop-in cell: a Python loop of T cell calls (backward: T calls carrying "
                 "dh, dc and summing dW, dU, db; torch: LSTMCell and autograd)\n"
                 + _table("step loop (T,B,I,H)", CELL_TABLE_GROUPS, report["cell_results"],
                          _shape_label))
    if report["layer_results"]:
        text += ("\n\nLayers: fastlstm.LSTM / GRU (x layers, uni- or bidirectional), the same layer "
                 "on the reference's functions, the torch module from layer.to_torch() and "
                 "onnxruntime on layer.to_onnx()\n"
                 + _table("layer (T,B,I,H)", TABLE_GROUPS, report["layer_results"], layer_label))
    if report.get("stream_results"):
        text += "\n\n" + format_stream_table(report["stream_results"])
    if report["loop_results"]:
        text += "\n\n" + format_loop_table(report["loop_results"], report["settings"]["repeat"])
    return text


def format_stream_table(records):
    """The streaming table: each contender's microseconds per step, and the stream's speed-ups."""
    names = list(records[0]["us_per_step"])
    others = [name for name in names if name != "fastlstm stream"]
    columns = ([("", "stream (L,B,I,H)")] + [("us per step", name) for name in names]
               + [("speed-up of the stream vs", name) for name in others])
    rows = [[f"{r['num_layers']},{r['B']},{r['I']},{r['H']}"]
            + [f"{r['us_per_step'][name]:.2f}" for name in names]
            + [f"{r['speedup'][name]:.2f}x" for name in others] for r in records]
    return ("Streaming: L stacked LSTM layers stepped one time step at a time from Python "
            f"({records[0]['steps']} steps per timed call): layer.stream(B).step(x_t); the cells "
            "of fastlstm and of the reference, and torch.nn.LSTMCell (no_grad), called per layer "
            "and step\n" + _format_table(columns, rows))


def _spread(values, digits=1, unit=""):
    """"median [min-max]" of `values`."""
    low, middle, high = np.min(values), np.median(values), np.max(values)
    return f"{middle:.{digits}f}{unit} [{low:.{digits}f}-{high:.{digits}f}]"


def format_loop_table(records, repeat):
    """The training-loop table: each contender's ms per step and the ratios, with their spread."""
    names = list(records[0]["step_ms"])
    ratios = list(records[0]["ratio_per_round"])
    columns = ([("", "loop (T,B,I,H,O)")] + [("ms per step", name) for name in names]
               + [("ratio per round", name) for name in ratios])
    rows = [[f"{r['T']},{r['B']},{r['I']},{r['H']},{r['O']}"]
            + [_spread(r["step_ms"][name]) for name in names]
            + [_spread(r["ratio_per_round"][name], 2, "x") for name in ratios] for r in records]
    steps = records[0]["steps_per_round"]
    note = ("" if "fastlstm, 1 BLAS thread" in names else
            "; install threadpoolctl for the column with NumPy's BLAS on one thread")
    return ("A NumPy training loop: lstm_forward, a read-out hs @ V, the mean squared error's "
            "gradient, lstm_backward, SGD (NumPy's BLAS on fastlstm's threads, as after import "
            "fastlstm, but for the reference and \"BLAS's own threads\": on OpenBLAS's own, as "
            "without fastlstm; fixed threads: fastlstm's thread count kept as set, as with "
            "FASTLSTM_DYNAMIC_THREADS=0; fastlstm + matmul: the read-out's products by "
            "fastlstm.matmul).\n"
            f"NumPy's BLAS at its default thread count; {repeat} rounds of {steps} steps of each "
            f"contender in turn, each after {QUIET_SECONDS} s of sleep and {SETTLE_SECONDS} s of its own "
            f"untimed steps; median [min-max]{note}\n"
            + _format_table(columns, rows))


def plot(report, path):
    """Write a PNG of fastlstm's speed-up over each other contender per shape.

    Returns
    -------
    bool
        False, and nothing written, if matplotlib is not importable.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return False
    records = report["results"]
    series = [(name, p) for name in report["contenders"] if name != "fastlstm" for p in PASSES
              if any(p in r["speedup"].get(name, ()) for r in records)]
    x, width = np.arange(len(records)), 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(records) + 2), 4.5))
    for k, (name, p) in enumerate(series):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, [r["speedup"][name].get(p, np.nan) for r in records],
               width, label=f"vs {name}, {PASS_LABELS[p]}")
    ax.axhline(1, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_xticks(x)
    ax.set_xticklabels([("" if r.get("kind", "lstm") == "lstm" else LAYER_CLASSES[r["kind"]] + " ")
                        + _shape_label(r) for r in records], rotation=45, ha="right")
    ax.set_xlabel("shape T,B,I,H")
    ax.set_ylabel("speed-up of fastlstm")
    m = report["machine"]
    ax.set_title(f"fastlstm speed-up, {m['dtype']}, {m['threads']} threads ({m['cpu']})",
                 fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
