"""The MPI side of tests/test_distributed.py: training runs and error cases that the tests launch
with mpiexec, and the single-process training they are compared with.

    mpiexec -n N python -m mpi4py mpi_worker.py train OUT [--optimizer sgd|adam] [--reproducible]
                                                          [--split]
    mpiexec -n N python -m mpi4py mpi_worker.py chunks OUT [--save-at K FILE] [--resume FILE]
    mpiexec -n N python -m mpi4py mpi_worker.py errors OUT

Every rank writes what it holds to OUT/rank{r}.npz (the parameters after the start and after each
step, "{snapshot}/{key}") or OUT/rank{r}.json (the errors it saw); the tests compare the ranks'
files with each other and with `train_alone`. This module imports mpi4py only in `main`, so the
tests import the model and the reference training from it without starting MPI.
"""
import argparse
import json
import pathlib

import numpy as np

import fastlstm
from fastlstm.train import SGD, Adam, Linear, clip_grad_norm, collect, mse

T, B, I, H, O = 4, 7, 3, 5, 2  # B = 7: unequal shares on 2 ranks (4, 3) and on 3 (3, 2, 2)
STEPS, N_CHUNKS, MAX_NORM, SEED = 4, 6, 0.5, 10
OPTIMIZERS = {"adam": lambda params: Adam(params, lr=0.05),
              "sgd": lambda params: SGD(params, lr=0.2, momentum=0.9)}


def make_model(seed):
    """LSTM(I, H) + Linear(H, O) in float64: (lstm, head, params, grads)."""
    lstm = fastlstm.LSTM(I, H, dtype="float64", seed=seed)
    head = Linear(H, O, dtype="float64", seed=seed + 1)
    return (lstm, head, *collect(lstm=lstm, head=head))


def global_batch(step):
    """The whole batch of training step `step`: xs (T, B, I), targets (T, B, O)."""
    rng = np.random.default_rng(1000 + step)
    return rng.standard_normal((T, B, I)), rng.standard_normal((T, B, O))


def gradient(lstm, head, xs, targets):
    """Fill the grads with those of the mean squared error on (xs, targets); return the loss."""
    loss, dpred = mse(head(lstm(xs)[0]), targets)
    lstm.zero_grad()
    head.zero_grad()
    lstm.backward(head.backward(dpred))
    return loss


def train_alone(optimizer, steps=STEPS):
    """One process on the whole batch: the parameters at the start and after every step."""
    lstm, head, params, grads = make_model(SEED)
    opt = OPTIMIZERS[optimizer](params)
    snapshots = [{k: v.copy() for k, v in params.items()}]
    for step in range(steps):
        gradient(lstm, head, *global_batch(step))
        clip_grad_norm(grads, MAX_NORM)
        opt.step(grads)
        snapshots.append({k: v.copy() for k, v in params.items()})
    return snapshots


def read_snapshots(folder, rank):
    """What rank `rank` wrote to folder: a list of {key: array}, one per snapshot."""
    with np.load(pathlib.Path(folder, f"rank{rank}.npz")) as data:
        snapshots = {}
        for name in data.files:
            index, key = name.split("/", 1)
            snapshots.setdefault(int(index), {})[key] = data[name]
    return [snapshots[i] for i in sorted(snapshots)]


# ---- the runs under mpiexec ----------------------------------------------------------------------


def run_train(args, comm, distributed):
    """DistributedOptimizer on this rank's shard of each batch, weighted by the shard's size.

    Each rank starts from its own seed: the optimizer's construction must broadcast rank 0's."""
    lstm, head, params, grads = make_model(SEED + 100 * comm.rank)
    opt = distributed.DistributedOptimizer(OPTIMIZERS[args.optimizer](params), comm,
                                           reproducible=args.reproducible, max_norm=MAX_NORM)
    snapshots = [{k: v.copy() for k, v in params.items()}]
    mine = distributed.shard(B, comm)
    for step in range(STEPS):
        xs, targets = global_batch(step)
        gradient(lstm, head, xs[:, mine], targets[:, mine])
        opt.step(grads, weight=mine.stop - mine.start)
        snapshots.append({k: v.copy() for k, v in params.items()})
    return snapshots


def run_chunks(args, comm, distributed):
    """ChunkedGradients: each chunk's gradient on its own, summed in chunk order; optionally a
    checkpoint after step K, or a start from a checkpoint."""
    lstm, head, params, grads = make_model(SEED + 100 * comm.rank)
    opt = distributed.DistributedOptimizer(Adam(params, lr=0.05), comm)
    chunks = distributed.ChunkedGradients(grads, N_CHUNKS, comm)
    first = 0
    if args.resume:
        first = distributed.load_checkpoint(args.resume, params, opt, comm)
    snapshots = [{k: v.copy() for k, v in params.items()}]
    for step in range(first, STEPS):
        xs, targets = global_batch(step)
        for index in chunks.indices:
            rows = distributed.chunk(B, N_CHUNKS, index)
            gradient(lstm, head, xs[:, rows], targets[:, rows])
            chunks.add(index, weight=rows.stop - rows.start)
        chunks.reduce()
        clip_grad_norm(grads, MAX_NORM)
        opt.optimizer.step(grads)
        snapshots.append({k: v.copy() for k, v in params.items()})
        if args.save_at and step + 1 == int(args.save_at[0]):
            distributed.save_checkpoint(args.save_at[1], params, opt, step + 1, comm)
    return snapshots


def run_errors(args, comm, distributed):
    """Each case's exception on this rank, as "TypeName: message"."""
    rank, seen = comm.rank, {}

    def expect(case, action):
        try:
            action()
        except Exception as error:
            seen[case] = f"{type(error).__name__}: {error}"
        else:
            seen[case] = "no error"

    grads = {"W": np.ones((2, 3)), "b": np.ones(3, np.float32)}
    read_only = np.ones(2)
    read_only.flags.writeable = False
    expect("layouts differ", lambda: distributed.broadcast_parameters(
        {"W": np.ones((2, 3 + rank))}, comm=comm))
    expect("root", lambda: distributed.broadcast_parameters(grads, root=comm.size, comm=comm))
    expect("op", lambda: distributed.allreduce_gradients(grads, op="max", comm=comm))
    expect("negative weight", lambda: distributed.allreduce_gradients(grads, weight=-1, comm=comm))
    expect("weight type", lambda: distributed.allreduce_gradients(grads, weight="4", comm=comm))
    expect("zero total weight", lambda: distributed.allreduce_gradients(grads, weight=0,
                                                                        comm=comm))
    expect("comm", lambda: distributed.allreduce_gradients(grads, comm="world"))
    expect("int array", lambda: distributed.allreduce_gradients({"W": np.ones(2, int)}, comm=comm))
    expect("read-only", lambda: distributed.allreduce_gradients({"W": read_only}, comm=comm))
    expect("not a dict", lambda: distributed.allreduce_gradients([np.ones(2)], comm=comm))
    expect("optimizer", lambda: distributed.DistributedOptimizer(object(), comm))
    expect("max_norm", lambda: distributed.DistributedOptimizer(SGD(grads, lr=0.1), comm,
                                                                max_norm=0))
    expect("shard n", lambda: distributed.shard(-1, comm))
    expect("chunk index", lambda: distributed.chunk(5, 2, 2))
    chunks = distributed.ChunkedGradients(grads, 4, comm)
    expect("add a chunk of another rank", lambda: chunks.add((chunks.indices.stop) % 4))
    expect("reduce before adding", lambda: chunks.reduce())
    expect("load a missing file", lambda: distributed.load_checkpoint(
        pathlib.Path(args.out, "missing.npz"), grads, comm=comm))
    return seen


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenario", choices=["train", "chunks", "errors"])
    p.add_argument("out", help="the folder every rank writes its results to")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), default="adam")
    p.add_argument("--reproducible", action="store_true")
    p.add_argument("--split", action="store_true",
                   help="train on sub-communicators: the even ranks together, the odd ones apart")
    p.add_argument("--save-at", nargs=2, metavar=("K", "FILE"))
    p.add_argument("--resume", metavar="FILE")
    args = p.parse_args(argv)

    from mpi4py import MPI

    from fastlstm import distributed

    world = MPI.COMM_WORLD
    comm = world.Split(world.rank % 2, world.rank) if args.split else world
    run = {"train": run_train, "chunks": run_chunks, "errors": run_errors}[args.scenario]
    result = run(args, comm, distributed)
    out = pathlib.Path(args.out)
    if args.scenario == "errors":
        out.joinpath(f"rank{world.rank}.json").write_text(json.dumps(result, indent=1))
    else:
        np.savez(out / f"rank{world.rank}.npz",
                 **{f"{i}/{k}": v for i, snapshot in enumerate(result) for k, v in snapshot.items()})


if __name__ == "__main__":
    main()
