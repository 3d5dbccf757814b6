"""``python -m fastlstm bench --distributed``, launched under mpiexec: the time of a data-parallel
training step on 1, 2, ... N ranks (N: the launch's), the share of it spent in the allreduce, and
the allreduce's time against the message size, with its latency and bandwidth fitted.

    OMP_NUM_THREADS=1 mpiexec -n 2 python -m fastlstm bench --distributed [--shapes T,B,I,H;...]
        [--steps 20] [--dtype float32] [--reproducible] [--json FILE]

The global batch is fixed (strong scaling): on n ranks each takes its share of the B sequences.
A step is the examples' step: zero_grad, the forward of an LSTM(I, H) and a Linear(H, I) read-out,
the mean squared error, the backward ("compute"); allreduce_gradients weighted by the rank's share
("allreduce"); clipping and Adam ("update"). A step's time and its parts are those of its slowest
rank, and the allreduce includes the wait for slower ranks, as in training (medians over the
steps). While n ranks run, the others sleep (polling a
non-blocking barrier every millisecond) and leave the cores alone. Before the timed steps, the
ranks' combined gradient is checked against one process's on the whole batch, and after them the
ranks' parameters are checked to be bitwise equal: a benchmark of wrong results is worthless.

The allreduce table times allreduce_gradients of one float32 array, from 4 bytes to 16 MiB, on all
N ranks. Its latency is the time of the smallest message, its bandwidth the largest message's size
over its time less that latency: t = latency + bytes / bandwidth, for the README's estimate of a
step across N machines.
"""
import hashlib
import json
import time

import numpy as np

import fastlstm
from fastlstm.train import Adam, Linear, clip_grad_norm, collect, mse

DEFAULT_SHAPES = [(64, 32, 84, 256), (32, 16, 16, 32)]  # char_lm's step; a tiny model
DEFAULT_STEPS = 20
WARMUP_STEPS = 3
MESSAGE_ELEMENTS = [1, 256, 4096, 65536, 1 << 20, 1 << 22]  # float32: 4 B .. 16 MiB
MAX_NORM = 1.0
TOLERANCES = {"float32": dict(rtol=1e-3, atol=1e-6), "float64": dict(rtol=1e-9, atol=1e-12)}


def add_arguments(parser):
    """The options of the distributed benchmark, beside ``python -m fastlstm bench``'s."""
    parser.add_argument("--distributed", action="store_true",
                        help="under mpiexec: time a data-parallel training step on 1..N ranks "
                             "and the allreduce (needs fastlstm[mpi]); uses --shapes (default "
                             "%s), --dtype, --threads and --json"
                             % ";".join(",".join(map(str, s)) for s in DEFAULT_SHAPES))
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, metavar="N",
                        help="--distributed: timed steps per rank count (default: %(default)s)")
    parser.add_argument("--reproducible", action="store_true",
                        help="--distributed: sum the gradients in rank order (reproducible mode)")


def _wait_sleeping(request):
    """Wait for a non-blocking MPI request without spinning on a core another rank needs."""
    while not request.Test():
        time.sleep(0.001)


def _model(shape, dtype):
    T, B, I, H = shape
    lstm = fastlstm.LSTM(I, H, dtype=dtype, seed=0)
    head = Linear(H, I, dtype=dtype, seed=1)
    return lstm, head, *collect(lstm=lstm, head=head)


def _gradient(lstm, head, xs, targets):
    _, dpred = mse(head(lstm(xs)[0]), targets)
    lstm.zero_grad()
    head.zero_grad()
    lstm.backward(head.backward(dpred))


def _fingerprint(params):
    return hashlib.sha256(b"".join(params[k].tobytes() for k in sorted(params))).hexdigest()


def _time_steps(distributed, shape, steps, dtype, reproducible, comm):
    """Time `steps` training steps on the ranks of `comm`; return the root's summary (else None).

    Raises AssertionError if the combined gradient differs from one process's on the whole batch
    or if the ranks' parameters differ afterwards."""
    T, B, I, H = shape
    rng = np.random.default_rng(0)
    xs, targets = (rng.standard_normal((T, B, I)).astype(dtype) for _ in range(2))
    lstm, head, params, grads = _model(shape, dtype)
    optimizer = Adam(params, lr=1e-3)
    distributed.broadcast_parameters(params, comm=comm)
    mine = distributed.shard(B, comm)
    weight = mine.stop - mine.start

    _gradient(lstm, head, xs[:, mine], targets[:, mine])
    distributed.allreduce_gradients(grads, weight=weight, comm=comm, reproducible=reproducible)
    if comm.rank == 0:
        combined = {k: g.copy() for k, g in grads.items()}
        _gradient(lstm, head, xs, targets)
        for k, g in grads.items():
            np.testing.assert_allclose(combined[k], g, **TOLERANCES[dtype],
                                       err_msg=f"the combined gradient of {k}")

    times = []  # (compute, allreduce, update) seconds per timed step
    for step in range(WARMUP_STEPS + steps):
        comm.Barrier()
        start = time.perf_counter()
        _gradient(lstm, head, xs[:, mine], targets[:, mine])
        computed = time.perf_counter()
        distributed.allreduce_gradients(grads, weight=weight, comm=comm,
                                        reproducible=reproducible)
        reduced = time.perf_counter()
        clip_grad_norm(grads, MAX_NORM)
        optimizer.step(grads)
        if step >= WARMUP_STEPS:
            times.append((computed - start, reduced - computed, time.perf_counter() - reduced))
    fingerprints = comm.allgather(_fingerprint(params))
    assert len(set(fingerprints)) == 1, f"the ranks' parameters differ: {fingerprints}"

    every_rank = comm.gather(np.array(times))  # (ranks, steps, 3)
    if comm.rank != 0:
        return None
    per_step = np.array(every_rank)
    slowest = per_step.sum(axis=2).argmax(axis=0)  # the rank that set each step's time
    parts = per_step[slowest, np.arange(per_step.shape[1])]  # (steps, 3): that rank's parts
    step_ms = 1e3 * np.median(parts.sum(axis=1))
    compute_ms, allreduce_ms, update_ms = 1e3 * np.median(parts, axis=0)
    return dict(ranks=comm.size, rows_per_rank=[len(range(B)[distributed.chunk(B, comm.size, r)])
                                                for r in range(comm.size)],
                step_ms=step_ms, compute_ms=compute_ms, allreduce_ms=allreduce_ms,
                update_ms=update_ms, allreduce_share=allreduce_ms / step_ms,
                parameters=sum(p.size for p in params.values()))


def _time_allreduce(distributed, comm, repeats=20):
    """allreduce_gradients of one float32 array per size on every rank of `comm`: the list of
    {bytes, us} (median over repeats of the slowest rank), the latency (us) and the bandwidth
    (GB/s) of t = latency + bytes / bandwidth."""
    rows = []
    for elements in MESSAGE_ELEMENTS:
        grads = {"g": np.ones(elements, np.float32)}
        seconds = []
        for attempt in range(3 + repeats):
            comm.Barrier()
            start = time.perf_counter()
            distributed.allreduce_gradients(grads, comm=comm)
            seconds.append(time.perf_counter() - start)
        slowest = np.max(comm.allgather(np.array(seconds[3:])), axis=0)
        rows.append(dict(bytes=4 * elements, us=1e6 * float(np.median(slowest))))
    latency_us, largest = rows[0]["us"], rows[-1]
    return dict(messages=rows, latency_us=latency_us,
                bandwidth_gb_s=largest["bytes"] / max(largest["us"] - latency_us, 1e-9) / 1e3)


def run(distributed, MPI, shapes, steps, dtype, threads, reproducible):
    """The whole benchmark on MPI.COMM_WORLD; the report on rank 0, None elsewhere."""
    world = MPI.COMM_WORLD
    results = []
    with fastlstm.num_threads(threads):
        for shape in shapes:
            for n in range(1, world.size + 1):
                sub = world.Split(0 if world.rank < n else MPI.UNDEFINED, world.rank)
                if sub != MPI.COMM_NULL:
                    summary = _time_steps(distributed, shape, steps, dtype, reproducible, sub)
                    if summary is not None:
                        results.append(dict(shape=list(shape), **summary))
                    sub.Free()
                _wait_sleeping(world.Ibarrier())
        allreduce = _time_allreduce(distributed, world) if world.size > 1 else None
    if world.rank != 0:
        return None
    return dict(dtype=dtype, threads_per_rank=threads, steps=steps, reproducible=reproducible,
                mpi=MPI.Get_library_version().split(",")[0].strip(), results=results,
                allreduce=allreduce)


def format_report(report):
    lines = [f"data-parallel training step ({report['dtype']}, {report['threads_per_rank']} "
             f"thread(s) per rank, medians of {report['steps']} steps, "
             f"{'reproducible' if report['reproducible'] else 'default'} reduction; "
             f"{report['mpi']})",
             f"{'shape (T,B,I,H)':16} {'params':>8} {'ranks':>5} {'rows/rank':>10} "
             f"{'step ms':>8} {'compute':>8} {'allreduce':>9} {'update':>7} {'share':>6} "
             f"{'speed-up':>8}"]
    one_rank = {}
    for r in report["results"]:
        shape = ",".join(map(str, r["shape"]))
        one_rank.setdefault(shape, r["step_ms"])
        rows = "/".join(map(str, sorted(set(r["rows_per_rank"]), reverse=True)))
        lines.append(f"{shape:16} {r['parameters']:8d} {r['ranks']:5d} {rows:>10} "
                     f"{r['step_ms']:8.2f} {r['compute_ms']:8.2f} {r['allreduce_ms']:9.3f} "
                     f"{r['update_ms']:7.2f} {r['allreduce_share']:6.1%} "
                     f"{one_rank[shape] / r['step_ms']:7.2f}x")
    allreduce = report["allreduce"]
    if allreduce:
        lines += ["", "allreduce_gradients of one float32 array on all ranks (slowest rank, "
                      "median):", f"{'bytes':>10} {'us':>10} {'GB/s':>7}"]
        lines += [f"{m['bytes']:10d} {m['us']:10.1f} {m['bytes'] / m['us'] / 1e3:7.3f}"
                  for m in allreduce["messages"]]
        lines.append(f"t = latency + bytes / bandwidth: latency {allreduce['latency_us']:.1f} "
                     f"us, bandwidth {allreduce['bandwidth_gb_s']:.2f} GB/s")
    return "\n".join(lines)


def cli(args):
    """Run the distributed benchmark that the parsed `args` describe (under mpiexec)."""
    try:
        from mpi4py import MPI

        from fastlstm import distributed
    except ImportError as error:
        raise SystemExit(f"bench --distributed: {error}") from error
    if args.steps < 1:
        raise SystemExit(f"--steps: expected a positive number, got {args.steps}")
    shapes = args.shapes if args.shapes is not None else DEFAULT_SHAPES
    report = run(distributed, MPI, shapes, args.steps, args.dtype, args.threads,
                 args.reproducible)
    if report is not None:
        print(format_report(report))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2)
