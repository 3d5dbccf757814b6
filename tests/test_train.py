"""fastlstm.train: losses and Linear against finite differences, optimizers against hand-computed
steps (and torch.optim, when torch is installed), gradient clipping."""
import copy
import doctest
import pickle
import re

import numpy as np
import pytest

import fastlstm
from conftest import numeric_gradient, source_file
from fastlstm import train
from fastlstm.train import (SGD, Adam, Linear, clip_grad_norm, collect, mse, softmax,
                            softmax_cross_entropy)


def test_docstring_examples():
    failures, tried = doctest.testmod(train, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0


def test_exported_from_the_package():
    assert fastlstm.train is train and "train" in fastlstm.__all__
    for name in train.__all__:
        assert getattr(train, name).__doc__, name


# ---- losses --------------------------------------------------------------------------------------


def test_softmax_sums_to_one_and_does_not_overflow(rng):
    z = rng.standard_normal((3, 5, 7)) * 50
    p = softmax(z)
    np.testing.assert_allclose(p.sum(axis=-1), 1, rtol=1e-12)
    np.testing.assert_allclose(softmax(z[0, 0] + 1e4), softmax(z[0, 0]), rtol=1e-12)
    np.testing.assert_allclose(softmax(z, axis=0).sum(axis=0), 1, rtol=1e-12)


def test_softmax_cross_entropy_value(rng):
    logits = rng.standard_normal((4, 3, 6))
    targets = rng.integers(0, 6, (4, 3))
    loss, _ = softmax_cross_entropy(logits, targets)
    p = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    naive = -np.mean(np.log(np.take_along_axis(p, targets[..., None], axis=-1)))
    assert loss == pytest.approx(naive, rel=1e-12)
    assert isinstance(loss, float)


def test_softmax_cross_entropy_gradient(rng):
    logits = rng.standard_normal((3, 2, 5))
    targets = rng.integers(0, 5, (3, 2))
    _, dlogits = softmax_cross_entropy(logits, targets)
    numeric = numeric_gradient(lambda: softmax_cross_entropy(logits, targets)[0], logits)
    np.testing.assert_allclose(dlogits, numeric, rtol=1e-6, atol=1e-9)


def test_softmax_cross_entropy_is_stable_and_keeps_float32():
    logits = np.array([[1000.0, 0.0], [-1000.0, 0.0]], np.float32)
    loss, dlogits = softmax_cross_entropy(logits, np.array([0, 1]))
    assert loss == pytest.approx(0.0, abs=1e-6)
    assert dlogits.dtype == np.float32 and np.all(np.isfinite(dlogits))


@pytest.mark.parametrize("targets, error, match", [
    (np.zeros((2, 3), int), ValueError, r"targets: expected shape \(2,\)"),
    (np.array([0, 4]), ValueError, r"targets: expected classes in \[0, K\) = \[0, 4\)"),
    (np.array([0, -1]), ValueError, r"targets: expected classes"),
    (np.array([0.0, 1.0]), TypeError, r"targets: expected integer class indices"),
])
def test_softmax_cross_entropy_errors(targets, error, match):
    with pytest.raises(error, match=match):
        softmax_cross_entropy(np.zeros((2, 4)), targets)


def test_mse_value_and_gradient(rng):
    pred, target = rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 3, 2))
    loss, dpred = mse(pred, target)
    assert loss == pytest.approx(np.mean((pred - target) ** 2), rel=1e-12)
    numeric = numeric_gradient(lambda: mse(pred, target)[0], pred)
    np.testing.assert_allclose(dpred, numeric, rtol=1e-6, atol=1e-9)
    assert mse(pred.astype(np.float32), target)[1].dtype == np.float32


def test_mse_does_not_broadcast():
    with pytest.raises(ValueError, match=r"target: expected the shape of pred \(3, 1\)"):
        mse(np.zeros((3, 1)), np.zeros(3))


# ---- Linear and collect --------------------------------------------------------------------------


def test_linear_forward_and_gradients(rng):
    head = Linear(4, 3, dtype="float64", seed=1)
    x = rng.standard_normal((5, 2, 4))
    dy = rng.standard_normal((5, 2, 3))
    y = head(x)
    np.testing.assert_allclose(y, x @ head.params["W"] + head.params["b"], rtol=1e-12)

    def loss():
        return float(np.sum(head.forward(x) * dy))

    dx = head.backward(dy)
    np.testing.assert_allclose(dx, numeric_gradient(loss, x), rtol=1e-6, atol=1e-9)
    for name in ("W", "b"):
        numeric = numeric_gradient(loss, head.params[name])
        np.testing.assert_allclose(head.grads[name], numeric, rtol=1e-6, atol=1e-9)


def test_linear_gradients_accumulate_until_zero_grad(rng):
    head = Linear(3, 2, dtype="float64", seed=0)
    x, dy = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    head(x)
    head.backward(dy)
    once = {k: g.copy() for k, g in head.grads.items()}
    head.backward(dy)
    for k in once:
        np.testing.assert_allclose(head.grads[k], 2 * once[k])
    W_grad = head.grads["W"]
    head.zero_grad()
    assert head.grads["W"] is W_grad and not W_grad.any()


@pytest.mark.parametrize("backend", [None, fastlstm.reference], ids=["fastlstm", "reference"])
def test_linear_copies_and_pickles(rng, backend):
    head = Linear(3, 2, seed=0, backend=backend)
    x = rng.standard_normal((4, 3))
    head(x)  # a forward whose backward is still to come
    for twin in (copy.deepcopy(head), pickle.loads(pickle.dumps(head))):
        assert twin.backend is head.backend
        dy = rng.standard_normal((4, 2))
        np.testing.assert_array_equal(twin.backward(dy), head.backward(dy))
        head.zero_grad()
        assert twin.grads["W"].any() and not np.shares_memory(twin.params["W"], head.params["W"])


def test_linear_errors():
    head = Linear(3, 2)
    with pytest.raises(RuntimeError, match="call forward first"):
        head.backward(np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"x: expected shape \(\.\.\., I\) = \(\.\.\., 3\)"):
        head(np.zeros((4, 5)))
    head(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"dy: expected shape \(4, 2\)"):
        head.backward(np.zeros((5, 2)))
    with pytest.raises(TypeError, match="dtype"):
        Linear(3, 2, dtype="int32")


def test_collect_shares_the_modules_arrays():
    lstm, head = fastlstm.LSTM(2, 4, seed=0, dtype="float64"), Linear(4, 1, dtype="float64", seed=0)
    params, grads = collect(lstm=lstm, head=head)
    out, _ = lstm(np.ones((3, 2, 2)))
    head(out)
    lstm.backward(head.backward(np.ones((3, 2, 1))))
    assert grads["lstm.W_l0"] is lstm.grads["W_l0"] and grads["lstm.W_l0"].any()
    before = lstm.params["U_l0"].copy()
    SGD(params, lr=0.1).step(grads)
    np.testing.assert_allclose(lstm.params["U_l0"], before - 0.1 * lstm.grads["U_l0"])


# ---- clipping ------------------------------------------------------------------------------------


def test_clip_grad_norm_rescales_above_max_norm(rng):
    grads = {"a": rng.standard_normal((3, 4)), "b": rng.standard_normal(5).astype(np.float32)}
    norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads.values()))
    copies = {k: g.copy() for k, g in grads.items()}
    returned = clip_grad_norm(grads, norm / 4)
    assert returned == pytest.approx(norm, rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], copies[k] / 4, rtol=1e-6)
    assert grads["b"].dtype == np.float32
    assert clip_grad_norm(grads, norm) == pytest.approx(norm / 4, rel=1e-6)


def test_clip_grad_norm_leaves_small_and_nan_gradients(rng):
    small = [rng.standard_normal(3)]
    copy = small[0].copy()
    clip_grad_norm(small, 100.0)
    np.testing.assert_array_equal(small[0], copy)
    bad = {"w": np.array([np.nan, 1.0])}
    assert np.isnan(clip_grad_norm(bad, 1.0))
    assert bad["w"][1] == 1.0
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm(small, 0.0)


# ---- optimizers ----------------------------------------------------------------------------------


def test_sgd_steps_by_hand():
    params = {"w": np.array([1.0, -2.0]), "b": np.array([0.5])}
    w = params["w"]
    SGD(params, lr=0.5).step({"w": np.array([2.0, 4.0]), "b": np.array([-1.0])})
    assert params["w"] is w
    np.testing.assert_allclose(params["w"], [0.0, -4.0])
    np.testing.assert_allclose(params["b"], [1.0])


def test_sgd_momentum_steps_by_hand():
    params = {"w": np.array([0.0])}
    opt = SGD(params, lr=1.0, momentum=0.5)
    for g in (1.0, 1.0, -2.0):
        opt.step({"w": np.array([g])})
    # velocities 1, 0.5*1 + 1 = 1.5, 0.5*1.5 - 2 = -1.25; w = -(1 + 1.5 - 1.25)
    np.testing.assert_allclose(params["w"], [-1.25])


def test_adam_steps_by_hand():
    params = {"w": np.array([1.0, -1.0])}
    lr, (b1, b2), eps = 0.01, (0.9, 0.999), 1e-8
    opt = Adam(params, lr=lr, betas=(b1, b2), eps=eps)
    w, m, v = params["w"].copy(), np.zeros(2), np.zeros(2)
    for t, g in enumerate([np.array([0.1, 3.0]), np.array([-0.2, 1.0]), np.array([0.3, 0.0])], 1):
        opt.step({"w": g})
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        np.testing.assert_allclose(params["w"], w, rtol=1e-13)
    # The first step moves every parameter by about lr, whatever the gradient's scale.
    first = Adam({"w": np.zeros(2)}, lr=lr)
    first.step({"w": np.array([1e-3, 1e3])})
    np.testing.assert_allclose(first.params["w"], [-lr, -lr], rtol=1e-4)


def test_adam_matches_torch(rng):
    torch = pytest.importorskip("torch")
    start = rng.standard_normal((3, 2))
    params = {"w": start.copy()}
    opt = Adam(params, lr=0.05, betas=(0.8, 0.99), eps=1e-6)
    tw = torch.tensor(start.copy(), requires_grad=True)
    topt = torch.optim.Adam([tw], lr=0.05, betas=(0.8, 0.99), eps=1e-6)
    for _ in range(5):
        g = rng.standard_normal((3, 2))
        opt.step({"w": g})
        tw.grad = torch.tensor(g)
        topt.step()
    np.testing.assert_allclose(params["w"], tw.detach().numpy(), rtol=1e-10)


def test_optimizers_keep_float32_in_place():
    for opt_class in (SGD, Adam):
        p = np.ones(3, np.float32)
        opt_class({"p": p}, lr=0.1).step({"p": np.ones(3)})      # a float64 gradient
        assert p.dtype == np.float32 and np.all(p < 1)


def test_optimizer_errors():
    params = {"w": np.zeros(2)}
    with pytest.raises(ValueError, match=r"grads: expected the keys of params \['w'\]"):
        SGD(params, lr=0.1).step({"v": np.zeros(2)})
    with pytest.raises(ValueError, match=r"grads\['w'\]: expected shape \(2,\)"):
        Adam(params).step({"w": np.zeros(3)})
    with pytest.raises(TypeError, match="params: expected a dict"):
        SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(TypeError, match=r"params\['w'\]: expected a float32 or float64 ndarray"):
        SGD({"w": np.zeros(2, int)}, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        Adam(params, lr=0)
    with pytest.raises(ValueError, match="momentum"):
        SGD(params, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="betas"):
        Adam(params, betas=(0.9, 1.0))


# ---- optimizer state and checkpoints -------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.1, momentum=0.9), lambda p: Adam(p, lr=0.1)],
                         ids=["sgd", "adam"])
def test_a_resumed_optimizer_continues_bitwise(rng, make):
    """Steps 1-2, a checkpoint, then steps 3-4 on a fresh optimizer and fresh params: the same bits
    as steps 1-4 uninterrupted."""
    gradients = [{"w": rng.standard_normal(4), "b": rng.standard_normal(1)} for _ in range(4)]
    start = {"w": rng.standard_normal(4), "b": rng.standard_normal(1)}
    whole = {k: v.copy() for k, v in start.items()}
    opt = make(whole)
    for g in gradients:
        opt.step(g)
    first = {k: v.copy() for k, v in start.items()}
    opt = make(first)
    for g in gradients[:2]:
        opt.step(g)
    state = opt.state_dict()
    resumed = {k: v.copy() for k, v in first.items()}
    again = make(resumed)
    again.load_state_dict(state)
    for g in gradients[2:]:
        again.step(g)
    assert again.steps == 4
    for k in whole:
        np.testing.assert_array_equal(resumed[k], whole[k])


def test_sgd_state_before_its_first_step_has_no_velocity():
    opt = SGD({"w": np.zeros(2)}, lr=0.1, momentum=0.5)
    assert sorted(opt.state_dict()) == ["steps"]
    opt.load_state_dict(opt.state_dict())
    assert opt.velocity == {}


def test_load_state_dict_errors_change_nothing():
    opt = Adam({"w": np.zeros(2), "b": np.zeros(1)})
    with pytest.raises(ValueError, match="unexpected key 'x/w' for Adam; expected 'steps', "
                                         "'m/<parameter>', 'v/<parameter>'"):
        opt.load_state_dict({"steps": np.array(1), "x/w": np.zeros(2)})
    with pytest.raises(ValueError, match=r"state\['m/w'\]: expected shape \(2,\), got \(3,\)"):
        opt.load_state_dict({**opt.state_dict(), "m/w": np.zeros(3)})
    with pytest.raises(ValueError, match=r"'v' misses parameters \['b'\]"):
        opt.load_state_dict({k: v for k, v in opt.state_dict().items() if k != "v/b"})
    with pytest.raises(ValueError, match="steps"):
        opt.load_state_dict({**opt.state_dict(), "steps": np.array(-1)})
    assert opt.steps == 0 and not opt.m["w"].any()


def test_checkpoint_round_trip_and_errors(tmp_path, rng):
    params = {"w": rng.standard_normal(3)}
    opt = Adam(params, lr=0.1)
    opt.step({"w": rng.standard_normal(3)})
    path = tmp_path / "run.ckpt"
    train.save_checkpoint(path, params, opt, step=7)
    assert path.exists() and not (tmp_path / "run.ckpt.partial").exists()
    fresh = {"w": np.zeros(3)}
    fresh_opt = Adam(fresh, lr=0.1)
    assert train.load_checkpoint(path, fresh, fresh_opt) == 7
    np.testing.assert_array_equal(fresh["w"], params["w"])
    np.testing.assert_array_equal(fresh_opt.m["w"], opt.m["w"])
    assert fresh_opt.steps == 1
    untouched = {"w": np.zeros(3)}
    with pytest.raises(ValueError, match="holds the state of Adam, not of SGD"):
        train.load_checkpoint(path, untouched, SGD(untouched, lr=0.1))
    with pytest.raises(ValueError, match=r"params\['w'\]: expected the saved shape \(3,\)"):
        train.load_checkpoint(path, {"w": np.zeros(4)})
    with pytest.raises(ValueError, match=r"params: expected the saved keys \['w'\]"):
        train.load_checkpoint(path, {"v": np.zeros(3)})
    assert not untouched["w"].any()
    with pytest.raises(ValueError, match="step: expected an integer >= 0"):
        train.save_checkpoint(path, params, step=-1)
    np.savez(tmp_path / "other.npz", w=np.zeros(3))
    with pytest.raises(ValueError, match="not written by fastlstm.train.save_checkpoint"):
        train.load_checkpoint(tmp_path / "other.npz", fresh)


def test_a_training_step_lowers_the_loss(rng):
    """LSTM + Linear + softmax cross-entropy + clipping + Adam, the examples' loop, on one batch."""
    lstm = fastlstm.LSTM(3, 8, dtype="float64", seed=0)
    head = Linear(8, 3, dtype="float64", seed=1)
    params, grads = collect(lstm=lstm, head=head)
    opt = Adam(params, lr=0.05)
    xs = rng.standard_normal((6, 4, 3))
    targets = rng.integers(0, 3, (6, 4))
    losses = []
    for _ in range(30):
        out, _ = lstm(xs)
        loss, dlogits = softmax_cross_entropy(head(out), targets)
        lstm.backward(head.backward(dlogits))
        clip_grad_norm(grads, 1.0)
        opt.step(grads)
        lstm.zero_grad()
        head.zero_grad()
        losses.append(loss)
    assert losses[-1] < 0.5 * losses[0]


def test_readme_training_example():
    readme = source_file("README.md").read_text()
    section = readme.split("## Training: `fastlstm.train`\n", 1)[1]
    source = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(source.replace("print(", "result = ("), namespace)
    assert namespace["loss"] < 0.01
