"""The streaming table: a stack of LSTM layers stepped one time step at a time, as a streaming
model or a decoder runs it, by fastlstm's stream and by the step loops people write instead.

Contenders, each stepping the same layer (fastlstm.LSTM's weights) STEPS times from a zero state:
- ``fastlstm stream``: ``layer.stream(B).step(x_t)``, one C call per step for the whole stack;
- ``fastlstm cells``: ``fastlstm.lstm_cell_forward`` called per layer and step (the drop-in cell);
- ``reference``: ``fastlstm.reference.lstm_cell_forward`` likewise, the NumPy cell loop;
- ``torch``: ``torch.nn.LSTMCell`` per layer and step, under ``torch.no_grad()``.
Each returns every step's top h, checked against the reference's before any timing.
"""
import numpy as np

import fastlstm
from fastlstm import reference

from .contenders import check_close
from .timing import time_interleaved

# (num_layers, B, I, H): the streaming shapes, one and two layers at B = 1, and a wider one
STREAMS = [(1, 1, 64, 128), (2, 1, 64, 128), (1, 1, 256, 512), (1, 4, 64, 128)]
# steps per timed call
STEPS = 100


def make_stream_problem(spec, dtype="float32", seed=0):
    """A seeded fastlstm.LSTM of `spec` (num_layers, B, I, H) and STEPS inputs x (STEPS, B, I)."""
    L, B, I, H = spec
    layer = fastlstm.LSTM(I, H, num_layers=L, dtype=dtype, seed=seed)
    xs = np.random.default_rng(seed).standard_normal((STEPS, B, I)).astype(dtype)
    return layer, xs


def _weights(layer):
    return [tuple(layer.params[f"{p}_l{k}"] for p in "WUb") for k in range(layer.num_layers)]


def setup_stream(layer, xs, threads):
    """fastlstm's stream: a step(collect) running every step, returning the top h of each when
    `collect` (copies: the stream reuses its buffer)."""
    with fastlstm.num_threads(threads):
        stream = layer.stream(xs.shape[1])

    def run(collect):
        stream.reset()
        hs = [stream.step(x).copy() if collect else stream.step(x) for x in xs]
        return np.stack(hs) if collect else None

    return run


def _cell_loop(module, layer, xs):
    """A step loop of `module`'s lstm_cell_forward over the layers, as people write one."""
    weights, (B, H) = _weights(layer), (xs.shape[1], layer.hidden_size)

    def run(collect):
        h = [np.zeros((B, H), xs.dtype) for _ in weights]
        c = [np.zeros((B, H), xs.dtype) for _ in weights]
        hs = []
        for x in xs:
            for k, (W, U, b) in enumerate(weights):
                h[k], c[k], _ = module.lstm_cell_forward(x, h[k], c[k], W, U, b)
                x = h[k]
            hs.append(x)
        return np.stack(hs) if collect else None

    return run


def setup_fastlstm_cells(layer, xs, threads):
    loop = _cell_loop(fastlstm, layer, xs)

    def run(collect):
        with fastlstm.num_threads(threads):
            return loop(collect)

    return run


def setup_reference_cells(layer, xs, threads):
    return _cell_loop(reference, layer, xs)


def setup_torch_cells(layer, xs, threads):
    """torch.nn.LSTMCell per layer with the layer's weights, stepped under no_grad."""
    import torch

    torch.set_num_threads(threads)
    dtype = getattr(torch, xs.dtype.name)
    cells = []
    for W, U, b in _weights(layer):
        cell = torch.nn.LSTMCell(W.shape[0], U.shape[0], dtype=dtype)
        with torch.no_grad():
            for name, value in (("weight_ih", W.T), ("weight_hh", U.T), ("bias_ih", b),
                                ("bias_hh", np.zeros_like(b))):
                getattr(cell, name).copy_(torch.from_numpy(np.ascontiguousarray(value)))
        cells.append(cell)
    steps, (B, H) = torch.from_numpy(xs), (xs.shape[1], layer.hidden_size)

    def run(collect):
        with torch.no_grad():
            state = [(torch.zeros(B, H, dtype=dtype), torch.zeros(B, H, dtype=dtype))
                     for _ in cells]
            hs = []
            for x in steps:
                for k, cell in enumerate(cells):
                    state[k] = cell(x, state[k])
                    x = state[k][0]
                hs.append(x)
            return torch.stack(hs).numpy() if collect else None

    return run


STREAM_CONTENDERS = {"fastlstm stream": setup_stream, "fastlstm cells": setup_fastlstm_cells,
                     "reference": setup_reference_cells, "torch": setup_torch_cells}


def bench_stream(spec, names, threads, dtype, repeat):
    """Check, then time, the stream contenders among `names` ("fastlstm" stands for both of
    fastlstm's) on `spec`; return its record with each one's microseconds per step."""
    layer, xs = make_stream_problem(spec, dtype)
    wanted = [n for n in STREAM_CONTENDERS if n.split()[0] in names]
    runs = {name: STREAM_CONTENDERS[name](layer, xs, threads) for name in wanted}
    expected = runs["reference"](True)
    for name, run in runs.items():
        check_close({"hs": run(True)}, {"hs": expected}, dtype, f"stream {name}")
    ms = time_interleaved({name: (lambda run=run: run(False)) for name, run in runs.items()},
                          repeat)
    L, B, I, H = spec
    us = {name: 1e3 * t / STEPS for name, t in ms.items()}
    return {"num_layers": L, "B": B, "I": I, "H": H, "steps": STEPS, "us_per_step": us,
            "speedup": {name: us[name] / us["fastlstm stream"] for name in us
                        if name != "fastlstm stream"}}
