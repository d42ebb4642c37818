"""
===========================================
A masked LM with a DSL converter in front
===========================================

A masked LM reads only ``[MASK]`` or clean tokens, so on its own it runs endpoint paths only. Put the DSL converter
of the authors' DSL-LLaDA port in front of it (``DSLMaskedLM``: soft evidence ``z_i`` becomes ``q_i = softmax(beta
<z_i, K> + b)`` over the vocabulary and ``[MASK]``, and ``h_i = W q_i + c`` replaces the word embeddings), fine-tune
it with DSL's mixed-SNR objective, and every path runs on it: here the hybrid ``ramp(8) >> mdm(8)`` beside plain
``mdm(16)``. No checkpoint can be downloaded here, so the script builds a tiny BERT with random weights over the most
frequent words of the shipped Shakespeare plays, trains the converter and the backbone together for a short while
and saves the result in the authors' layout, which loads back by path as a finite-SNR denoiser. The first figure is
the training loss; the second shows how information entered each position of one sample of each path (the hybrid's
positions gather evidence together before any is revealed). Samples of both are printed; with so little training
they are word salad with Shakespeare's most common words.
"""

# %%
# Set-up: the output folder comes from the command line; ``--quick`` trains for a few steps (for the tests).
import argparse
import collections
import pathlib
import re
import tempfile

import attrs
import torch
from matplotlib.figure import Figure

from snrpaths import parse_path, sample
from snrpaths.backends import MaskedLM
from snrpaths.backends.hf import save_random
from snrpaths.backends.hf_dsl import AUTHORS, DSLMaskedLM, stream_ids
from snrpaths.data import load_corpus
from snrpaths.objectives import DSL
from snrpaths.plot import generation_order, save
from snrpaths.train import TrainConfig, train

parser = argparse.ArgumentParser(description="A masked LM with a DSL converter in front")
parser.add_argument("out", type=pathlib.Path, help="folder to write the PNGs into")
parser.add_argument("--quick", action="store_true", help="small settings, for the tests")
args = parser.parse_args()
SEED = 0
torch.manual_seed(SEED)
WORDS, CHARS, STEPS = (200, 200_000, 20) if args.quick else (1000, 2_000_000, 600)
L = 16

# %%
# A tiny random BERT over the plays' most frequent words (lower case; punctuation marks are words), and the plays
# as a stream of sampler ids (words outside the vocabulary are dropped).
corpus = load_corpus()
text = {part: corpus.text(part)[:CHARS].lower() for part in ("train", "valid")}
words = re.findall(r"\w+|[^\w\s]+", text["train"])  # what the tokenizer's pre-tokenizer splits off
vocab = [w for w, _ in collections.Counter(words).most_common(WORDS)]
folder = save_random(pathlib.Path(tempfile.mkdtemp()) / "bert", vocab, hidden=64, layers=2, heads=2, seed=SEED)
den = DSLMaskedLM.from_pretrained(folder, seq_len=L, train_backbone=True,
                                  config=attrs.evolve(AUTHORS, anchor_dim=32, head="evidence"))
print(den)
stream = {part: stream_ids(den, text[part])[0] for part in text}

# %%
# Fine-tune converter and backbone with DSL's mixed-SNR objective (a quarter of each batch on the endpoint branch,
# the rest at one log-normal SNR per row); the trainer saves the EMA model in the authors' layout in ``run/model``.
losses = []
config = TrainConfig(steps=STEPS, batch=32, lr=2e-3, warmup=STEPS // 10, eval_every=STEPS, eval_rows=32,
                     save_every=STEPS, seed=SEED)
run = pathlib.Path(tempfile.mkdtemp()) / "run"
result = train(den, DSL(), stream["train"], stream["valid"], config, run, progress=False,
               callback=lambda step, metrics: losses.append(metrics["loss"]))
print(f"{STEPS} steps: loss {losses[0]:.2f} -> {losses[-1]:.2f} nats per position, validation "
      f"{result.valid_bpc[0]:.2f} bits per word (ROAR)")
fig = Figure(figsize=(6, 3.2), layout="constrained")
ax = fig.add_subplot()
ax.plot(range(1, len(losses) + 1), losses)
ax.set(xlabel="step", ylabel="DSL loss (nats per position)", title="Fine-tuning a tiny BERT behind a DSL converter")
print("wrote", save(fig, args.out / "masked_lm_dsl_training.png", dpi=110))

# %%
# The saved folder loads back by path as a finite-SNR denoiser; sample a hybrid and plain masked diffusion with the
# same budget of 16 calls, print the samples and draw how information entered each position.
tuned = MaskedLM.from_pretrained(run / "model", seq_len=L)
print(tuned, "reads finite SNR:", tuned.reads_finite_snr)
traces = {}
for name in ("ramp(8) >> mdm(8)", "mdm(16)"):
    out = sample(parse_path(name), tuned, batch=4, seed=SEED, trace=True)
    print(f"--- {name}: {out.nfe} calls ---")
    print("\n".join(tuned.decode(out.tokens)))
    traces[name] = out.trace
fig = generation_order(traces, title="A masked LM behind a DSL converter: how information enters each position")
print("wrote", save(fig, args.out / "masked_lm_dsl.png", dpi=110))

# %%
#
# .. admonition:: References
#
#    The use of the following functions, methods, classes and modules is shown
#    in this example:
#
#    - `snrpaths.backends.hf_dsl.DSLMaskedLM`, `snrpaths.backends.hf_dsl.DSLMaskedLM.from_pretrained`,
#      `snrpaths.backends.hf_dsl.AUTHORS`, `snrpaths.backends.hf_dsl.stream_ids`,
#      `snrpaths.backends.MaskedLM.from_pretrained`, `snrpaths.backends.hf.save_random`
#    - `snrpaths.train.train`, `snrpaths.train.TrainConfig`, `snrpaths.objectives.DSL`, `snrpaths.data.load_corpus`
#    - `snrpaths.sample`, `snrpaths.parse_path`
#    - `snrpaths.plot.generation_order`
#    - `snrpaths.plot.save`
