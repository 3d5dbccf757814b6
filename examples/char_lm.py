"""A character-level language model: an LSTM learns to write like The Devil's Dictionary.

The text is Ambrose Bierce's The Devil's Dictionary (1911, public domain; examples/data/). Each
character is a one-hot vector; an LSTM with a linear read-out predicts the next character at every
step (many-to-many, softmax cross-entropy), trained with truncated backpropagation through time:
the training text is cut into B parallel streams read T characters at a time, each chunk starting
from the state the previous one ended in, while gradients stop at the chunk's start. The last 10%
of the text is held out; the model must get its loss there well below the text's unigram entropy
(what knowing only each character's frequency gives). Then it writes, one character at a time,
sampled at a few temperatures (lower: safer, higher: wilder).

    python examples/char_lm.py [--steps N] [--quick] [--hidden 256] [--prime "LOVE, n.  "]
                               [--temperatures 0.5 1.0] [--backend reference] [--plot FILE]
    mpiexec -n 2 python examples/char_lm.py ...      the same training, the streams split among
                                                     the processes (pip install "fastlstm[mpi]")

Prints the training loss as it falls, the held-out loss against the unigram entropy, samples, and
fastlstm's speed-up over the NumPy reference (on one process).
"""
import pathlib
import time

import numpy as np

import _common
import fastlstm
from fastlstm.train import Adam, Linear, collect, softmax, softmax_cross_entropy


TEXT = pathlib.Path(__file__).resolve().parent / "data" / "devils_dictionary.txt"
SIZES = dict(hidden=256, T=64, B=32, lr=3e-3, eval_chars=None, sample_chars=400)
QUICK_SIZES = dict(hidden=64, T=32, B=16, lr=1e-2, eval_chars=6000, sample_chars=120)


def load(path):
    """The text, its sorted characters and the text as indices into them."""
    text = path.read_text(encoding="ascii")
    vocab = sorted(set(text))
    lookup = {ch: i for i, ch in enumerate(vocab)}
    return text, vocab, np.array([lookup[ch] for ch in text], dtype=np.intp)


def unigram_entropy(ids, V):
    """-sum p log p over the characters' frequencies, in nats."""
    p = np.bincount(ids, minlength=V) / len(ids)
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)))


def streams(ids, B):
    """The text cut into B equal streams side by side: (L, B), time-major."""
    L = len(ids) // B
    return ids[: B * L].reshape(B, L).T


class CharLM:
    """One-hot characters -> fastlstm.LSTM -> Linear -> scores of the next character."""

    def __init__(self, V, hidden, backend, dtype, seed, lr, parallel, clip=5.0):
        self.onehot = np.eye(V, dtype=dtype)
        self.lstm = fastlstm.LSTM(V, hidden, dtype=dtype, seed=seed, unit_forget_bias=True,
                                  backend=backend)
        self.head = Linear(hidden, V, dtype=dtype, seed=seed + 1, backend=backend)
        self.params, self.grads = collect(lstm=self.lstm, head=self.head)
        # Adam on the gradient clipped to `clip`: of this process's streams, or under mpiexec of
        # all the ranks' streams (their mean, weighted by each rank's number of streams).
        self.optimizer = parallel.optimizer(Adam(self.params, lr=lr), max_norm=clip)

    def logits(self, chars, state=None, lstm=None):
        """Scores (T, B, V) after each of chars (T, B), and the final state, from `state`; by
        `lstm`, the model's LSTM (None) or a frozen copy of it for inference (no cache kept, the
        weights packed once)."""
        out, state = (lstm or self.lstm)(self.onehot[chars], state)
        return self.head(out), state

    def train_step(self, chunk, state):
        """Truncated BPTT on chunk (T+1, B): forward from `state`, backward to the chunk's start.

        Returns the loss and the final state, for the next chunk to start from.
        """
        logits, state = self.logits(chunk[:-1], state)
        loss, dlogits = softmax_cross_entropy(logits, chunk[1:])
        self.lstm.zero_grad()
        self.head.zero_grad()
        self.lstm.backward(self.head.backward(dlogits))  # no dstate: the truncation
        self.optimizer.step(self.grads, weight=chunk.shape[1])
        return loss, state

    def evaluate(self, ids, rows=slice(None), B=32, T=200):
        """Mean cross-entropy (nats per character) of predicting each next character of `ids`,
        cut into B streams, of which this evaluates `rows`."""
        data = streams(ids, B)[:, rows]
        total, count, state, frozen = 0.0, 0, None, self.lstm.freeze()
        for start in range(0, len(data) - 1, T):
            chunk = data[start : start + T + 1]
            logits, state = self.logits(chunk[:-1], state, frozen)
            loss, _ = softmax_cross_entropy(logits, chunk[1:])
            total, count = total + loss * chunk[1:].size, count + chunk[1:].size
        return total / count

    def sample(self, prime, n, temperature, rng):
        """`n` characters (indices) after `prime`: the prime read by one forward, then a stream
        (``lstm.stream``) that steps the LSTM one character at a time from the prime's state."""
        logits, state = self.logits(np.asarray(prime)[:, np.newaxis], None, self.lstm.freeze())
        stream = self.lstm.stream(batch_size=1)
        stream.reset(state)
        scores = logits[-1, 0]  # (V,)
        out = []
        for _ in range(n):
            p = softmax(scores.astype(np.float64) / temperature)
            out.append(int(rng.choice(len(p), p=p)))
            h = stream.step(self.onehot[out[-1]][np.newaxis])  # (1, H)
            scores = self.head(h)[0]
        return out


def main(argv=None):
    p = _common.parser(__doc__, steps=900, quick_steps=150)
    p.add_argument("--hidden", type=int, help=f"LSTM hidden units (default {SIZES['hidden']}, "
                                               f"{QUICK_SIZES['hidden']} with --quick)")
    p.add_argument("--prime", default="PROGRAMMER, n.  ", help="the text samples start from")
    p.add_argument("--temperatures", type=float, nargs="*", default=[0.5, 1.0])
    args = _common.parse(p, argv)
    sizes = dict(QUICK_SIZES if args.quick else SIZES)
    if args.hidden:
        sizes["hidden"] = args.hidden
    T, B = sizes["T"], sizes["B"]
    backend = _common.BACKENDS[args.backend]
    parallel = _common.Parallel()
    say = parallel.print

    text, vocab, ids = load(TEXT)
    split = int(0.9 * len(ids))
    train_ids, held_out_ids = ids[:split], ids[split:][: sizes["eval_chars"]]
    V, unigram = len(vocab), unigram_entropy(ids, len(vocab))
    say(f"{TEXT.name}: {len(text):,} characters, {V} distinct; {len(train_ids):,} to train on, "
        f"{len(held_out_ids):,} held out")
    say(f"unigram entropy of the text: {unigram:.3f} nats = {unigram / np.log(2):.3f} bits per "
        f"character")
    say(f"LSTM({V}, {sizes['hidden']}) + Linear({sizes['hidden']}, {V}), {args.dtype}, backend "
        f"{args.backend}; truncated BPTT over {B} streams, {T} characters per step")
    mine, held_out_rows = parallel.rows(B), parallel.rows(32)
    if parallel.size > 1:
        say(f"data-parallel on {parallel.size} MPI processes: {mine.stop - mine.start} streams "
            f"on rank 0")
    say()

    data = streams(train_ids, B)[:, mine]  # this process's streams (all of them on one process)
    rng = np.random.default_rng(args.seed)
    losses, held_out_losses = [], []
    with _common.threads(args.threads):
        model = CharLM(V, sizes["hidden"], backend, args.dtype, args.seed, sizes["lr"], parallel)
        start, position, state = time.perf_counter(), 0, None
        report = max(1, args.steps // 10)
        for step in range(1, args.steps + 1):
            if position + T + 1 > len(data):  # the streams' end: start over from a zero state
                position, state = 0, None
            loss, state = model.train_step(data[position : position + T + 1], state)
            position += T
            losses.append(parallel.mean(loss, weight=mine.stop - mine.start))  # the whole batch's
            if step % report == 0 or step == 1:
                seconds = time.perf_counter() - start
                say(f"step {step:5d}: training loss {np.mean(losses[-report:]):.3f} nats  "
                    f"({seconds:5.1f} s, {step * T * B / seconds:,.0f} characters/s)")
            if step % (args.steps // 3 or 1) == 0 or step == args.steps:
                held_out = parallel.mean(model.evaluate(held_out_ids, held_out_rows),
                                         weight=held_out_rows.stop - held_out_rows.start)
                held_out_losses.append((step, held_out))
                say(f"            held-out loss {held_out_losses[-1][1]:.3f} nats "
                    f"(unigram entropy {unigram:.3f})")
        final = held_out_losses[-1][1]
        say(f"\nheld-out loss {final:.3f} nats = {final / np.log(2):.2f} bits per character, "
            f"{unigram - final:.2f} nats below the unigram entropy, after {args.steps} steps "
            f"({time.perf_counter() - start:.1f} s)")

        prime = [vocab.index(ch) for ch in args.prime]
        for temperature in args.temperatures if parallel.is_root else []:
            chars = model.sample(prime, sizes["sample_chars"], temperature, rng)
            print(f"\n--- sample at temperature {temperature} ---\n"
                  f"{args.prime}{''.join(vocab[i] for i in chars)}")
    say()

    if args.speedup_steps and parallel.size > 1:
        say("(the speed-up over the reference is measured on one process only)")
    elif args.speedup_steps:
        def make_step(module):
            m = CharLM(V, sizes["hidden"], module, args.dtype, args.seed, sizes["lr"], parallel)
            carry = [None]

            def step(i):
                loss, carry[0] = m.train_step(data[i * T : i * T + T + 1], carry[0])
                return loss

            return step

        _common.compare_backends(make_step, args.speedup_steps, args.threads)
    if args.plot and parallel.is_root:
        steps, held = zip(*held_out_losses)
        _common.plot_losses(args.plot, {"training loss": (np.arange(1, len(losses) + 1), losses),
                                        "held-out loss": (steps, held)},
                            "character model of The Devil's Dictionary", "nats per character",
                            lines=[("unigram entropy", unigram)])
    return dict(losses=losses, held_out=held_out_losses, held_out_loss=final,
                unigram_entropy=unigram)


if __name__ == "__main__":
    main()
