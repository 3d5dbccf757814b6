"""Drop-ins for the NumPy RNN/LSTM code people already have.

Each module has the names, signatures, shapes, gate order, dtypes and return values of one widely
used NumPy implementation, and computes with fastlstm's C kernels, so that changing one import
speeds up existing code:

- :mod:`fastlstm.compat.cs231n`: Stanford CS231n's ``rnn_layers.py`` (batch-major, gate blocks
  i, f, o, g, no initial cell state).
- :mod:`fastlstm.compat.deeplearning_ai`: the "Building a Recurrent Neural Network Step by Step"
  functions (features first, a parameters dict, per-gate weights on ``[a_prev; xt]``, gradients
  as dicts).
- :mod:`fastlstm.compat.karpathy`: the batched LSTM gist's ``LSTM.init/forward/backward`` (one
  ``WLSTM`` with a bias row, gate blocks i, f, o, g, time-major).

Caches are opaque and travel only between a module's own functions. Results equal those
conventions' own equations to float tolerance, in float32 and float64.
"""
