"""The run: check, then time, every table's contenders, and gather the records with the machine's
description."""
import importlib.metadata
import os
import platform
import sys

import numpy as np

import fastlstm
from fastlstm import _config

from .contenders import (CELL_CONTENDERS, CONTENDERS, FROZEN, LAYER_CONTENDERS,
                         ONNXRUNTIME_SETTINGS, onnxruntime_version, torch_version, verify)
from .loop import LOOPS, bench_training_loop
from .problems import (CELLS, LAYER_CLASSES, LAYERS, PASSES, flops_forward, layer_flops_forward,
                       make_layer_problem, make_problem)
from .report import layer_label
from .streaming import STREAMS, bench_stream
from .timing import (DEFAULT_REPEAT, GEMM_REPEAT, GEMM_SIZE, SETTLE_SECONDS, blas_threads,
                     gemm_peak, time_rounds)


def log(message):
    """Progress on stderr, so that stdout holds the report alone."""
    print(message, file=sys.stderr, flush=True)


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _package_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(threads, dtype, torch_note, onnxruntime_note):
    """The CPU, the library versions and fastlstm's build, as a dict."""
    config = _config.config()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "dtype": dtype,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch_note,
        "onnxruntime": onnxruntime_note,
        "threadpoolctl": _package_version("threadpoolctl") or "not installed",
        "fastlstm": fastlstm.__version__,
        "simd": config["simd"],
        "openmp": config["openmp"],
        "openmp_version": config["openmp_version"],
    }


def bench_shape(shape, names, threads, dtype, repeat, contenders=CONTENDERS, kind="lstm"):
    """Check, then time, the contenders `names` on one shape of `kind`; return the shape's record.

    `contenders` maps each name to its setup: :data:`CONTENDERS` (whole sequences) or
    :data:`CELL_CONTENDERS` (step loops, LSTM only); names it lacks are left out.
    """
    record = _bench(make_problem(shape, dtype, kind=kind), shape, flops_forward(shape, kind),
                    names, threads, dtype, repeat, contenders)
    return {"kind": kind, **record}


def bench_layer(spec, names, threads, dtype, repeat):
    """Check, then time, the layer `spec` (see :data:`LAYERS`) on the contenders `names`."""
    kind, L, D, shape = spec
    record = _bench(make_layer_problem(spec, dtype), shape, layer_flops_forward(spec), names,
                    threads, dtype, repeat, LAYER_CONTENDERS)
    return {"layer": LAYER_CLASSES[kind], "num_layers": L, "bidirectional": D == 2, **record}


def _bench(problem, shape, forward_flops, names, threads, dtype, repeat, contenders):
    calls = {}
    for name in filter(contenders.__contains__, names):
        for p, call in zip(PASSES, contenders[name](problem, threads)):
            if call is not None:  # onnxruntime has no backward
                calls[name, p] = call
    verify(calls, dtype)
    rounds = time_rounds(calls, repeat)
    ms = {key: min(values) for key, values in rounds.items()}
    timed = list(dict.fromkeys(name for name, _ in calls))
    T, B, I, H = shape
    flops = {"forward": forward_flops, "forward_backward": 3 * forward_flops}
    gflops = {p: flops[p] / ms["fastlstm", p] / 1e6 for p in PASSES}
    # each speed-up as the minima's ratio, and as the ratio within each round
    compared = {name: {p: ((name, p), ("fastlstm", p)) for p in PASSES if (name, p) in ms}
                for name in timed if name not in ("fastlstm", FROZEN)}
    if (FROZEN, "forward") in ms and "onnxruntime" in compared:
        # onnxruntime against the frozen forward too: both with weights packed beforehand
        compared["onnxruntime"]["frozen"] = ("onnxruntime", "forward"), (FROZEN, "forward")
    speedup = {name: {p: ms[a] / ms[b] for p, (a, b) in pairs.items()}
               for name, pairs in compared.items()}
    speedup_per_round = {name: {p: [x / y for x, y in zip(rounds[a], rounds[b])]
                                for p, (a, b) in pairs.items()}
                         for name, pairs in compared.items()}
    return {
        "T": T, "B": B, "I": I, "H": H,
        "flops": flops,
        "ms": {name: {p: ms[name, p] for p in PASSES if (name, p) in ms} for name in timed},
        "speedup": speedup,
        "speedup_per_round": speedup_per_round,
        "gflops": gflops,
    }


def _optional_contender(name, version, wanted, flag, unusable=None):
    """([name] if it is to run, else []) and the note on it for the report's header."""
    if not wanted:
        return [], f"not used ({flag})"
    if version is None:
        return [], "not installed"
    if unusable:
        return [], f"{version}, not used ({unusable})"
    return [name], version


def run(shapes, threads, dtype="float32", repeat=DEFAULT_REPEAT, use_torch=True, cells=CELLS,
        layers=LAYERS, loops=LOOPS, kinds=("lstm",), use_onnxruntime=True, streams=STREAMS):
    """Benchmark every shape of `shapes` for each of `kinds` ("lstm", "gru", "rnn"), then the step
    loops of `cells`, the `layers`, the `streams` and the training `loops`, logging progress to
    stderr.

    Returns
    -------
    dict
        ``machine`` (:func:`machine_info`), ``settings``, ``contenders``, ``gemm_peak_gflops``,
        ``results``: one record per kind and shape with the times in ms of every contender and
        pass (onnxruntime: the forward only), and
        ``cell_results``: the same for the step loops, with ``us_per_step``, ``layer_results``
        for the layers, ``stream_results`` for the streams (:func:`bench_stream`) and
        ``loop_results`` for the training loops (:func:`bench_training_loop`).
    """
    torch_name, torch_note = _optional_contender("torch", torch_version() if use_torch else None,
                                                 use_torch, "--no-torch")
    onnxruntime_name, onnxruntime_note = _optional_contender(
        "onnxruntime", onnxruntime_version() if use_onnxruntime else None, use_onnxruntime,
        "--no-onnxruntime", None if dtype == "float32" else "its recurrent kernels are float32 only")
    if onnxruntime_name:
        onnxruntime_note += f": {ONNXRUNTIME_SETTINGS}"
    names = ["fastlstm", FROZEN, "reference"] + torch_name + onnxruntime_name
    with blas_threads(threads) as blas_note:
        log(f"measuring the GEMM peak ({GEMM_SIZE}x{GEMM_SIZE} {dtype}) ...")
        peak = gemm_peak(dtype)
        records = []
        for kind in kinds:
            for k, shape in enumerate(shapes, 1):
                label = "" if kind == "lstm" else f"{LAYER_CLASSES[kind]} "
                log(f"[{label}{k}/{len(shapes)}] T={shape[0]} B={shape[1]} I={shape[2]} "
                     f"H={shape[3]} ...")
                records.append(bench_shape(shape, names, threads, dtype, repeat, kind=kind))
        cell_records = []
        for k, shape in enumerate(cells, 1):
            log(f"[cell {k}/{len(cells)}] T={shape[0]} B={shape[1]} I={shape[2]} H={shape[3]}, "
                 "a step loop ...")
            record = bench_shape(shape, names, threads, dtype, repeat, CELL_CONTENDERS)
            record["us_per_step"] = {name: {p: 1e3 * ms / shape[0] for p, ms in passes.items()}
                                     for name, passes in record["ms"].items()}
            cell_records.append(record)
        layer_records = []
        for k, spec in enumerate(layers, 1):
            log(f"[layer {k}/{len(layers)}] {layer_label(spec)} ...")
            layer_records.append(bench_layer(spec, names, threads, dtype, repeat))
        stream_records = []
        for k, spec in enumerate(streams, 1):
            log(f"[stream {k}/{len(streams)}] L={spec[0]} B={spec[1]} I={spec[2]} H={spec[3]}, "
                "one step at a time ...")
            stream_records.append(bench_stream(spec, names, threads, dtype, repeat))
        log("measuring the GEMM peak again ...")
        peak = max(peak, gemm_peak(dtype))  # the better of two, against a passing load
    loop_records = []  # outside the BLAS limit: the loops run as a user's script does
    for k, spec in enumerate(loops, 1):
        log(f"[loop {k}/{len(loops)}] T={spec[0]} B={spec[1]} I={spec[2]} H={spec[3]} "
             f"O={spec[4]}, a NumPy training loop ...")
        loop_records.append(bench_training_loop(spec, threads, dtype, repeat))
    for record in records + layer_records:
        record["percent_of_peak"] = {p: 100 * record["gflops"][p] / peak for p in PASSES}
    return {
        "machine": machine_info(threads, dtype, torch_note, onnxruntime_note),
        "settings": {"repeat": repeat, "statistic": "min", "blas_threads": blas_note,
                     "settle_seconds": SETTLE_SECONDS, "gemm_size": GEMM_SIZE,
                     "gemm_repeat": GEMM_REPEAT},
        "contenders": names,
        "gemm_peak_gflops": peak,
        "results": records,
        "cell_results": cell_records,
        "layer_results": layer_records,
        "stream_results": stream_records,
        "loop_results": loop_records,
    }
