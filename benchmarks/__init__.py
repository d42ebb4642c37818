"""The studies behind the README's Results section, installed as ``snrpaths.benchmarks``.

Each study is a module with ``main(argv)``: it prints a Markdown table and writes JSON, the table and a plot into
``benchmarks/results/`` (or ``--out``); ``--quick`` runs it small enough for a test. ``snrpaths bench NAME ...`` and
``python benchmarks/NAME.py ...`` run the same code.
"""

#: Study name on the command line -> (module, what it measures).
STUDIES = {
    "toy-quality": ("toy_quality", "total variation to the truth vs NFE of every sampler on exact toy joints"),
    "text-quality": ("text_quality", "MAUVE, reference-LM bits/char and perplexity, unigram entropy of the shipped pair"),
    "speed": ("speed", "samples/s, tokens/s, NFE spent, peak memory and scaling in L and batch per sampler"),
    "nll-estimators": ("nll_estimators", "standard error and bias vs denoiser calls of every likelihood estimator"),
    "runner-overhead": ("runner_overhead", "the runner against a hand-written MDLM loop making the same calls"),
    "dit-throughput": ("dit_throughput", "forward tokens/s of the DiT with and without the DSL converter"),
    "shipped-checkpoints": ("shipped_checkpoints", "validation bits/char and samples of the shipped checkpoints"),
    "hybrid-sweep": ("hybrid_sweep", "the hybrid's hand-over SNR, switch mode, ramp schedule and split at 48 calls"),
    "hmm": ("hmm_study", "gen. NLL gap and invalid rate vs NFE of every sampler, judged by an exact HMM"),
    "path-tuning": ("path_tuning", "tuned vs default hybrid vs ReMDM at equal calls, tuned on validation, scored held out"),
    "continuous": ("continuous", "continuous paths on learned denoisers: per-call KL, crossover, path-matched training, "
                   "drift guards, judged by an exact HMM"),
    "adaptive-calls": ("adaptive_calls", "calls saved and TV cost of threshold / entropy-bounded reveals and stop tokens"),
    "block-cache": ("block_cache", "tokens/s and quality cost of Fast-dLLM's prefix and dual key/value caches"),
    "robustness": ("robustness", "wrong inputs, damaged files, failing disks and kills: refused, detected or survived"),
    "gpu": ("gpu", "tokens/s and calls/s of plain, threshold, compiled, bf16 and cached rows against the weight-read "
            "bound"),
}
