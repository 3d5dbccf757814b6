"""The classic "hello" example: an RNN and an LSTM learn to predict the next character of "hello".

The characters h, e, l, o are one-hot vectors (a vocabulary of 4). The input is "hell" and the
target "ello", each character followed by the next. A vanilla RNN with 3 hidden units (as in the
textbook figure) and an LSTM of the same size, each with a linear read-out to the 4 characters'
scores, are trained many-to-many with softmax cross-entropy until both predict every next
character. The two "l"s are the point: after the first comes "l", after the second "o", so the
models must remember what came before.

    python examples/hello.py [--quick] [--backend reference] [--dtype float64] [--plot FILE]

Prints each model's predicted distribution over h, e, l, o at every step, before and after
training, the losses as it trains, and fastlstm's speed-up over the NumPy reference.
"""
import time

import numpy as np

import _common
import fastlstm
from fastlstm.train import Adam, Linear, collect, softmax, softmax_cross_entropy


VOCAB = "helo"
INPUT, TARGET = "hell", "ello"
HIDDEN = 3


def encode(text):
    """Indices into VOCAB, one per character."""
    return np.array([VOCAB.index(ch) for ch in text])


class CharModel:
    """A recurrent layer (fastlstm.RNN or fastlstm.LSTM) and a linear read-out to the vocabulary."""

    def __init__(self, layer_class, backend, dtype, seed, lr=0.05):
        self.rnn = layer_class(len(VOCAB), HIDDEN, dtype=dtype, seed=seed, backend=backend)
        self.head = Linear(HIDDEN, len(VOCAB), dtype=dtype, seed=seed + 1, backend=backend)
        self.params, self.grads = collect(rnn=self.rnn, head=self.head)
        self.optimizer = Adam(self.params, lr=lr)

    def logits(self, xs):
        """(T, B, 4) scores from (T, B, 4) one-hot inputs: the whole sequence in one call."""
        out, _ = self.rnn(xs)
        return self.head(out)

    def train_step(self, xs, targets):
        """One forward, backward and Adam step; returns the loss and the logits before the step."""
        logits = self.logits(xs)
        loss, dlogits = softmax_cross_entropy(logits, targets)
        self.rnn.zero_grad()
        self.head.zero_grad()
        self.rnn.backward(self.head.backward(dlogits))
        self.optimizer.step(self.grads)
        return loss, logits


def show(title, probabilities):
    """A table of the predicted distribution at every step; returns how many are right."""
    print(f"{title}\n  step  input  target" + "".join(f"   p({ch})" for ch in VOCAB)
          + "  predicted")
    right = 0
    for t, (x, y, p) in enumerate(zip(INPUT, TARGET, probabilities), 1):
        guess = VOCAB[int(np.argmax(p))]
        right += guess == y
        print(f"  {t:4d}  {x:>5}  {y:>6}" + "".join(f"  {q:5.2f}" for q in p)
              + f"  {guess:>9}  {'right' if guess == y else 'wrong'}")
    return right


def train(name, layer_class, xs, targets, backend, args):
    """Train one model until it predicts every next character; print its tables and progress."""
    model = CharModel(layer_class, backend, args.dtype, args.seed)
    label = f"{name} (hidden size {HIDDEN})"
    show(f"{label}, before training:", softmax(model.logits(xs))[:, 0])
    losses, start = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        loss, logits = model.train_step(xs, targets)
        losses.append(loss)
        right = int(np.sum(np.argmax(logits, axis=-1) == targets))
        done = right == len(TARGET) and loss < 0.1  # every next character, and confidently
        if step % 50 == 0 or step == 1 or done:
            print(f"  step {step:4d}: loss {loss:.4f}, {right}/4 next characters right"
                  + (": done" if done else ""))
        if done:
            break
    seconds = time.perf_counter() - start
    right = show(f"{label}, after {len(losses)} steps ({seconds:.2f} s):",
                 softmax(model.logits(xs))[:, 0])
    print()
    return dict(losses=losses, accuracy=right / len(TARGET))


def main(argv=None):
    args = _common.parse(_common.parser(__doc__, steps=500, quick_steps=300, speedup_steps=200),
                         argv)
    backend = _common.BACKENDS[args.backend]
    xs = np.eye(len(VOCAB), dtype=args.dtype)[encode(INPUT)][:, np.newaxis, :]    # (T=4, B=1, 4)
    targets = encode(TARGET)[:, np.newaxis]                                      # (T=4, B=1)
    print(f'input "{INPUT}", targets "{TARGET}"; backend {args.backend}, {args.dtype}\n')

    results = {}
    with _common.threads(args.threads):
        for name, layer_class in (("RNN", fastlstm.RNN), ("LSTM", fastlstm.LSTM)):
            results[name] = train(name, layer_class, xs, targets, backend, args)

    if args.speedup_steps:
        def make_step(module):
            models = [CharModel(cls, module, args.dtype, args.seed)
                      for cls in (fastlstm.RNN, fastlstm.LSTM)]
            return lambda i: [m.train_step(xs, targets)[0] for m in models]

        _common.compare_backends(make_step, args.speedup_steps, args.threads)
    if args.plot:
        _common.plot_losses(args.plot, {name: (np.arange(1, len(r["losses"]) + 1), r["losses"])
                                        for name, r in results.items()},
                            'next character of "hello": softmax cross-entropy', "loss (nats)")
    return results


if __name__ == "__main__":
    main()
