"""What the examples share: their command line, the backend switch, the threads, the speed-up
measurement, the loss plot and the data-parallel runs under mpiexec. Each example reads on its own;
this is its appendix, not part of the package. It sets nothing in the environment and leaves
NumPy's BLAS at its defaults: the examples run as a user's script does.
"""
import argparse
import contextlib
import os
import time

import numpy as np

import fastlstm
from fastlstm.train import clip_grad_norm

BACKENDS = {"fastlstm": fastlstm, "reference": fastlstm.reference}


def parser(doc, steps, quick_steps, speedup_steps=3):
    """The options every example takes; `steps`, `quick_steps` and `speedup_steps` its defaults."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"a small model and a short run ({quick_steps} steps), as the tests use")
    p.add_argument("--steps", type=int,
                   help=f"training steps (default {steps}, or {quick_steps} with --quick)")
    p.add_argument("--backend", choices=list(BACKENDS), default="fastlstm",
                   help="the recurrent layers' functions: fastlstm's C kernels (default) or the "
                        "NumPy reference; the same seed gives the same losses")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, metavar="N",
                   help="fastlstm's threads (default: OMP_NUM_THREADS, else every core); on a "
                        "machine that other work keeps busy, fewer threads than cores are faster")
    p.add_argument("--plot", metavar="FILE", help="save the loss curve as an image (matplotlib)")
    p.add_argument("--speedup-steps", type=int, default=speedup_steps, metavar="N",
                   help="time N training steps with each backend from the same start and print "
                        "the speed-up (0: skip)")
    p.set_defaults(default_steps=steps, default_quick_steps=quick_steps)
    return p


def parse(p, argv):
    """Parse `argv` (None: the command line); fill in the default step count."""
    args = p.parse_args(argv)
    if args.steps is None:
        args.steps = args.default_quick_steps if args.quick else args.default_steps
    if args.steps < 1:
        p.error(f"--steps: expected a positive number, got {args.steps}")
    return args


def threads(n=None):
    """fastlstm on `n` threads inside a ``with`` block (None: its default, OMP_NUM_THREADS or every
    core)."""
    return fastlstm.num_threads(n or fastlstm.get_num_threads())


def compare_backends(make_step, steps, n_threads=None, warmup=1):
    """Time `steps` training steps with each backend, from the same start, and print the speed-up.

    ``make_step(backend)`` builds the example's model afresh (same seed, same data) on `backend`
    and returns ``step(i) -> loss``, one training step. Each backend first runs `warmup` untimed
    steps. Prints both times, the speed-up and the largest relative difference of the losses
    (the drop-in claim on this workload); returns (seconds per backend, losses per backend).
    """
    seconds, losses = {}, {}
    for name in ("fastlstm", "reference"):
        with threads(n_threads):
            step = make_step(BACKENDS[name])
            for i in range(warmup):
                step(i)
            start = time.perf_counter()
            losses[name] = [step(warmup + i) for i in range(steps)]
            seconds[name] = time.perf_counter() - start
    fast, ref = np.array(losses["fastlstm"]), np.array(losses["reference"])
    gap = float(np.max(np.abs(fast - ref) / np.maximum(np.abs(ref), 1e-30)))
    print(f"speed-up of fastlstm over fastlstm.reference: "
          f"{seconds['reference'] / seconds['fastlstm']:.1f}x ({steps} training steps of each from "
          f"the same start: {seconds['fastlstm']:.3f} s against {seconds['reference']:.3f} s); "
          f"their losses agree to {gap:.1e} (relative)")
    return seconds, losses


def plot_losses(path, curves, title, ylabel="loss", lines=()):
    """Save line plots of `curves` ({label: (x, y)}) and horizontal `lines` ((label, y), ...)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"--plot {path}: matplotlib is not installed (pip install matplotlib); no plot saved")
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (x, y) in curves.items():
        ax.plot(x, y, label=label)
    for label, y in lines:
        ax.axhline(y, linestyle="--", color="gray", linewidth=1)
        ax.annotate(label, (ax.get_xlim()[1], y), ha="right", va="bottom", fontsize=8)
    ax.set(title=title, xlabel="training step", ylabel=ylabel)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"saved the loss curve to {path}")


# ---- one process, or one rank of several ---------------------------------------------------------

# An MPI launcher sets one of these in every process it starts: Open MPI's mpiexec, MPICH's and
# Intel MPI's (Hydra), Slurm's srun (PMI-2 or PMIx). Without one, the examples do not import mpi4py
# at all, so they run where it is not installed and pay no MPI start-up.
MPI_LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")


class Parallel:
    """This process's part of the training: under mpiexec (or srun) one rank among several, each
    on its share of every batch, with fastlstm.distributed combining the gradients; otherwise the
    only process, on the whole batch. An example's code is the same either way."""

    def __init__(self):
        self.comm, self.rank, self.size = None, 0, 1
        if not any(name in os.environ for name in MPI_LAUNCHER_VARIABLES):
            return
        try:
            from fastlstm import distributed
        except ImportError as error:  # N copies would each train alone: stop instead
            raise SystemExit(f"started by an MPI launcher, but: {error}") from error
        from mpi4py import MPI

        self.distributed, self.MPI = distributed, MPI
        self.comm, self.rank, self.size = MPI.COMM_WORLD, MPI.COMM_WORLD.rank, MPI.COMM_WORLD.size

    @property
    def is_root(self):
        """Rank 0, which prints, samples and plots."""
        return self.rank == 0

    def print(self, *args, **kwargs):
        if self.is_root:
            print(*args, **kwargs)

    def rows(self, n):
        """This rank's contiguous share of n batch rows: all of them on one process."""
        return slice(0, n) if self.comm is None else self.distributed.shard(n, self.comm)

    def optimizer(self, optimizer, max_norm):
        """An optimizer whose step(grads, weight) averages the gradients over the ranks (weighted
        by each rank's `weight`, its number of rows), clips the mean to `max_norm` and steps."""
        if self.comm is None:
            return ClippedOptimizer(optimizer, max_norm)
        return self.distributed.DistributedOptimizer(optimizer, self.comm, max_norm=max_norm)

    def mean(self, value, weight):
        """The mean of a number over the ranks, weighted (for the loss of the whole batch)."""
        if self.comm is None:
            return value
        sums = np.array([value * weight, weight])
        self.comm.Allreduce(self.MPI.IN_PLACE, sums)
        return float(sums[0] / sums[1])


class ClippedOptimizer:
    """One process's counterpart of DistributedOptimizer(max_norm=...): clip, then step."""

    def __init__(self, optimizer, max_norm):
        self.optimizer, self.max_norm = optimizer, max_norm

    def step(self, grads, weight=None):
        norm = clip_grad_norm(grads, self.max_norm)
        self.optimizer.step(grads)
        return norm
