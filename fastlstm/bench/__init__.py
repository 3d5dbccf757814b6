"""Benchmark fastlstm against its NumPy reference, torch and onnxruntime: ``python -m fastlstm bench``.

For every shape (T, B, I, H) of a grid, on the same seeded data and in the same process, this times
the forward pass (``lstm_forward``) and the forward and backward pass (``lstm_forward``, then
``lstm_backward`` of a given ``dhs``) of each contender: fastlstm, ``fastlstm.reference`` and, if
they are importable, ``torch.nn.LSTM`` loaded with the same weights and onnxruntime's LSTM node
(forward only, float32; the model from ``to_onnx``; on the same thread count, one inter-op thread,
sequential execution, its intra-op spinning turned off). ``--kinds lstm,gru,rnn`` adds a table of
the same shapes for the GRU (``gru_forward``, ``torch.nn.GRU``, onnxruntime's GRU) and one for the
RNN. The contenders take turns for `repeat` rounds, and the minimum time of each is kept. Each timed
call follows 0.2 s of untimed calls of the same contender: they warm the caches and outlast the
threads that the previous contender leaves spinning (OpenBLAS's spin for about 0.15 s after a call,
and on a small machine they would take a core from the timed call). Before a shape is timed, every
contender's outputs are checked against the reference's, since a benchmark of wrong results is
worthless.

fastlstm's forward packs its weights for its kernels at every call (U always, W unless the rows
are few enough to read it in place), since training changes them between calls; onnxruntime packs
its constant weights once, when the session is made. So the forward is also timed frozen
(``layer.freeze()``: the weights packed once, beforehand), and onnxruntime is set against both.

FLOPs count the matrix products: forward = 2*T*B*(I+H)*G*H with G gates per unit (4 for the LSTM, 3
for the GRU, 1 for the RNN), forward and backward = 3x that. They are set against the machine's GEMM
peak, measured in the same run (before and after the shapes) as NumPy's matmul of two 2048 x 2048
matrices.

A third table times whole layers (``fastlstm.LSTM`` stacked and bidirectional, ``fastlstm.GRU``)
against the same layer on the reference's functions, the equivalent torch module and onnxruntime.

A fourth table times a NumPy training loop around fastlstm and around the reference: the step a
user writes (forward, a NumPy read-out, the loss gradient, backward, an SGD update) with NumPy's BLAS
at its defaults. Each contender's timed steps follow 0.2 s of its own steps (not of the others'), so
they meet what a script looping over them meets: the BLAS's workers, which spin after each product
of the read-out. There the median and the spread of the step times are reported, and the ratios of
the contenders' median step times round by round.

A second table times a user's own step loop (the drop-in cell): T calls of ``lstm_cell_forward``,
then for the backward T calls of ``lstm_cell_backward`` that carry dh and dc back and sum dW, dU, db,
against the same loop over the reference's cell and over ``torch.nn.LSTMCell`` (its backward by
autograd through the T steps). There the cost is per call, so it is reported in microseconds per
step.

A streaming table times a stack of LSTM layers stepped one time step at a time (``layer.stream``),
against the step loops people write instead: fastlstm's cell and the reference's called per layer
and step, and ``torch.nn.LSTMCell`` likewise; in microseconds per step.

Shapes: T time steps, B batch rows, I input features, H hidden units.

The modules: ``problems`` (grids, seeded problems, FLOPs), ``contenders`` (their setups and the
check of their outputs), ``timing``, ``loop`` (the training-loop table), ``run``, ``report`` (tables
and plot), ``streaming`` (the streaming table) and ``cli`` (the options).
"""
from .cli import (add_arguments, cli, parse_kinds, parse_layers, parse_loops, parse_shapes,
                  parse_streams)
from .contenders import (CELL_CONTENDERS, CONTENDERS, FROZEN, LAYER_CONTENDERS, TOLERANCES,
                         check_close, onnxruntime_version, setup_fastlstm, setup_fastlstm_cell,
                         setup_fastlstm_frozen, setup_fastlstm_frozen_layer, setup_fastlstm_layer,
                         setup_onnxruntime, setup_onnxruntime_layer,
                         setup_reference, setup_reference_cell, setup_reference_layer, setup_torch,
                         setup_torch_cell, setup_torch_layer, torch_version, verify)
from .loop import LOOPS, bench_training_loop, make_training_step
from .problems import (CELLS, FULL, KINDS, LAYER_CLASSES, LAYER_GATES, LAYERS, PASS_LABELS, PASSES,
                       QUICK, Problem, flops_forward, layer_flops_forward, make_layer_problem,
                       make_problem)
from .report import format_loop_table, format_report, format_stream_table, layer_label, plot
from .run import bench_layer, bench_shape, machine_info, run
from .streaming import STREAM_CONTENDERS, STREAMS, bench_stream, make_stream_problem
from .timing import (DEFAULT_REPEAT, GEMM_REPEAT, GEMM_SIZE, SETTLE_SECONDS, blas_threads,
                     gemm_peak, time_call, time_interleaved, time_rounds)
