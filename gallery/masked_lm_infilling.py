"""
=====================================
Infilling a sentence with a masked LM
=====================================

Any masked language model is a denoiser of endpoint states, so every endpoint path samples it: here a sentence
with six blanks is infilled under three paths, left to right (``ar()``), masked diffusion with ReMDM's cap remasking,
and LLaDA's low-confidence decoding (one position per step, the most confident first). The prompt is given as text:
each ``[MASK]`` in it is one position to fill, the other words are fixed and never change (the dark rows from the
first column on). The figure shows the generation order of one run of each; the filled sentences are printed. No
checkpoint can be downloaded here, so the script builds a small BERT masked LM with random weights over a tiny word
list, saves it with its tokenizer and loads it back by path, as one loads a real one: its words are arbitrary. Give
``--model FOLDER`` (a folder written by ``save_pretrained``) to infill with a real masked LM instead. A ramp or a
hybrid would be refused before any call: a masked LM never reads finite-SNR evidence.
"""

# %%
# Set-up: the output folder comes from the command line; ``--quick`` is accepted for the tests (the model is tiny).
import argparse
import pathlib
import tempfile

from snrpaths import parse_path, sample
from snrpaths.backends import MaskedLM
from snrpaths.backends.hf import save_random
from snrpaths.plot import generation_order, save

parser = argparse.ArgumentParser(description="Infilling a sentence with a masked LM")
parser.add_argument("out", type=pathlib.Path, help="folder to write the PNG into")
parser.add_argument("--quick", action="store_true", help="small settings, for the tests")
parser.add_argument("--model", type=pathlib.Path, default=None, help="a saved masked LM folder (default: a random BERT)")
args = parser.parse_args()
SEED = 0
SENTENCE = "the [MASK] [MASK] sat on the [MASK] mat and the [MASK] [MASK] ran [MASK] ."
WORDS = "the a cat dog bird sat ran slept on under red big small old mat rug and home away fast .".split()

# %%
# The model, loaded from a folder by path (a random BERT written there first when no ``--model`` is given); the
# sampled length is the sentence's, so every free position is a blank of the sentence.
folder = args.model or save_random(tempfile.mkdtemp(), WORDS, hidden=32, layers=2, seed=SEED)
tokenizer = MaskedLM.from_pretrained(folder).tokenizer  # [MASK] is one of its tokens: one id per blank
den = MaskedLM.from_pretrained(folder, seq_len=len(tokenizer(SENTENCE, add_special_tokens=False)["input_ids"]))
print(den)

# %%
# Three endpoint paths, the same prompt, one traced run each.
paths = {"left to right": "ar()",
         "masked diffusion, cap remasking": "mdm(6, remask='cap', eta=0.1)",
         "LLaDA low-confidence": "reveal(count=1, order='confidence')"}
runs = {f"{name}\n{text}": sample(parse_path(text), den, seed=SEED, prompt=SENTENCE, trace=True)
        for name, text in paths.items()}
for label, result in runs.items():
    print(f"{label.splitlines()[0]:<32} ({result.nfe} calls): {result.text[0]}")

# %%
# The generation order of each run: white is [MASK], near-black a clean token (the prompt's words from the start).
fig = generation_order(runs, title=f"Infilling {SENTENCE!r}")
print("wrote", save(fig, args.out / "masked_lm_infilling.png", dpi=110))

# %%
#
# .. admonition:: References
#
#    The use of the following functions, methods, classes and modules is shown
#    in this example:
#
#    - `snrpaths.backends.MaskedLM`, `snrpaths.backends.MaskedLM.from_pretrained`,
#      `snrpaths.backends.hf.save_random`
#    - `snrpaths.sample` (a text prompt, ``Result.text``), `snrpaths.parse_path`
#    - `snrpaths.plot.generation_order`
#    - `snrpaths.plot.save`
