"""Every CUDA check and benchmark of the project in one run (driver of ``benchmarks/gpu_check.sh``).

    bash benchmarks/gpu_check.sh --install [OUT_DIR]   # a bare lent machine: install offline first (see there)
    python3 benchmarks/gpu_check.py --out OUT_DIR      # elfctl already installed

Writes ``OUT_DIR/gpu_check.json`` (every step: status, seconds, command, results, what was expected) and
``OUT_DIR/gpu_check.md`` (rows for docs/BENCHMARKS.md) after EVERY step, so a run cut short still reports what it
did; prints the Markdown at the end. Each step runs in a process group of its own with its own time limit (a step
that overruns is killed with all its children), inside an overall budget (``--budget``, default 390 s). Cheap and
telling steps first:

1. ``preflight``     versions, where elfctl was imported from, which optional packages are absent (datasets,
   rouge-score, gguf are not needed by anything run here).
2. ``kernel_tests``  the CUDA-only tests, compiled (TRITON_INTERPRET unset): kernels vs references at 1e-5,
   offsets past 2**32, the 64-bit index path, cuda:1 on a side stream (two GPUs), the judge on the GPU; and the
   GPU-path tests (FLOP counts, compiled blocks, the judge's device).
3. ``elfctl_train_eager`` / ``elfctl_train_compile``  the real ``elfctl train`` command (``python3 -m elfctl``) on
   offline inputs made in code (``gpu_check_assets.py``: the ``owt`` recipe, ELF-B, length 1024, bf16, a random
   T5-small-shaped encoder), 3 optimizer steps, ``train.compile`` off and on.
4. ``elfctl_sample`` the real ``elfctl sample`` command on that run (32 SDE steps, length 1024).
5. ``kernel_bench``  eager vs torch.compile vs Triton, GB/s against a device copy (bench_kernels.py).
6. ``train_bench``   ELF-B (owt recipe: Muon, bf16) at length 1024, batch 32: eager, then torch.compile per block;
   tokens/s and MFU counted from the passes that run (bench_train.py).
7. ``judge``         Gen PPL judge throughput at GPT-2 Large size (random weights), bf16 and fp32 (bench_judge.py).
8. ``sampling``      ELF-B 32-step SDE at length 1024, batch 64 and 256, with the kernels and with
   ELFCTL_KERNELS=torch (bench_sampling.py's bench()).
9. ``ddp`` / ``fsdp`` with >= 2 GPUs: the trainer under torchrun over NCCL (train.device=cuda: one GPU per rank,
   bf16, torch.compile), against one process on the same global batch.

Without CUDA it runs what a CPU can (the interpreted kernel check, the CUDA tests collected and skipped, the real
``elfctl train`` / ``elfctl sample`` at a tiny size, a tiny training step, a tiny judge) and lists every step it
skipped, with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

# What a working H100/H200 should show; printed beside each result (targets from the issues, not measurements).
EXPECT = {
    "preflight": "elfctl imported from the installed package; nothing it runs here needs datasets, rouge-score, gguf",
    "elfctl_train": "3 steps, finite losses; compiled no slower per step than eager after its first step",
    "elfctl_sample": "writes every sample; the header names the precision (bf16-autocast+tf32 on CUDA)",
    "kernel_tests": "all pass; with one GPU only the two-GPU test is skipped",
    "kernel_bench": "Triton >= 80% of copy GB/s and >= 2x eager at L = 1024; torch.compile between the two",
    "train_bench": "ELF-B bf16: compiled faster than eager; MFU (counted from the passes that run) >= 40% compiled",
    "ddp": "completes over NCCL; step-1 loss equal to one process within 2% (bf16); finite losses",
    "fsdp": "completes over NCCL with bf16 gathers/reduces; step-1 loss equal to one process within 2% (bf16)",
    "sampling": "kernels (triton) at least as fast as ELFCTL_KERNELS=torch; sampler overhead < 5% over the bare "
                "network loop",
    "judge": "GPT-2 Large bf16 >= 2x the fp32 tokens/s",
}


class Run:
    def __init__(self, out: Path, budget: float, env: dict):
        self.out = out
        self.budget = budget
        self.t0 = time.monotonic()
        self.t_end = self.t0 + budget
        self.steps: list[dict] = []
        self.env = env
        self.cuda = torch.cuda.is_available()
        self.gpus = torch.cuda.device_count() if self.cuda else 0

    def left(self) -> float:
        return self.t_end - time.monotonic()

    def add(self, rec: dict) -> dict:
        """Record a step and rewrite the report at once: a run cut short still says what it did."""
        self.steps.append(rec)
        self.save()
        return rec

    def skip(self, name: str, why: str) -> None:
        self.add({"step": name, "status": "skipped", "reason": why, "expected": EXPECT.get(name)})
        print(f"[gpu_check] {name}: skipped ({why})", flush=True)

    def sh(self, name: str, cmd: list[str], *, limit: float, env: dict | None = None, need: float = 20.0
           ) -> dict | None:
        """Run one command with a time limit inside the budget; record it; return the step record (None: skipped).

        The command runs in a new session (its own process group): at its limit the whole group is killed, so no
        compile worker or torchrun child outlives its step and eats the next one's time."""
        if self.left() < need:
            self.skip(name, f"time budget: {self.left():.0f} s left, needs ~{need:.0f} s")
            return None
        limit = max(5.0, min(limit, self.left() - 5))
        full_env = {**os.environ, **(env or {})}
        for k in [k for k, v in (env or {}).items() if v is None]:
            full_env.pop(k, None)
        shown = " ".join(c if "\n" not in c else "'<code>'" for c in cmd)  # inline -c code: recorded, not printed
        print(f"[gpu_check] {name}: {shown}  (limit {limit:.0f} s)", flush=True)
        t0 = time.monotonic()
        rc, out, err = run_group(cmd, env=full_env, limit=limit)
        rec = {"step": name, "status": "ok" if rc == 0 else "failed", "rc": rc, "seconds": round(time.monotonic() - t0, 1),
               "command": " ".join(cmd), "expected": EXPECT.get(name), "stdout_tail": out[-3000:],
               "stderr_tail": err[-3000:]}
        self.add(rec)
        print(f"[gpu_check] {name}: {rec['status']} in {rec['seconds']} s", flush=True)
        if rc != 0:
            print(err[-1500:], file=sys.stderr, flush=True)
        return rec

    def payload(self) -> dict:
        return {"environment": self.env, "budget_s": self.budget, "wall_s": round(time.monotonic() - self.t0, 1),
                "steps": self.steps,
                "skipped": [f"{s['step']}: {s['reason']}" for s in self.steps if s["status"] == "skipped"],
                "failed": [s["step"] for s in self.steps if s["status"] == "failed"]}

    def save(self) -> None:
        _write(self.out / "gpu_check.json", json.dumps(self.payload(), indent=1) + "\n")
        _write(self.out / "gpu_check.md", markdown(self.env, self.steps))


def _write(path: Path, text: str) -> None:
    """Whole or not at all (this script must report even where elfctl failed to install, so no elfctl.atomic)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_group(cmd: list[str], *, env: dict, limit: float, cwd: Path = ROOT) -> tuple[int, str, str]:
    """(returncode, stdout, stderr) of ``cmd`` run in its own process group; 124 after killing the group at
    ``limit`` seconds (SIGTERM, then SIGKILL 5 s later)."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=limit)
        return p.returncode, out, err
    except subprocess.TimeoutExpired:
        out, err = "", ""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                break
            try:
                out, err = p.communicate(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # children that left the group's leader behind
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return 124, _text(out), _text(err) + f"\ntimed out after {limit:.0f} s (process group killed)"


def _text(b) -> str:
    if b is None:
        return ""
    return b.decode(errors="replace") if isinstance(b, bytes) else b


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


NO_INTERPRET = {"TRITON_INTERPRET": None}  # compiled kernels: never the interpreter on a GPU


# ------------------------------------------------------------------ steps
def kernel_tests(run: Run) -> None:
    tests = ["tests/test_kernels_cuda.py", "tests/test_gpu_path.py"]
    xml = run.out / "kernel_tests.xml"
    env = NO_INTERPRET if run.cuda else {}
    # -P: the installed elfctl is tested, not the checkout's folder (the working directory stays off sys.path)
    rec = run.sh("kernel_tests", [PY, "-P", "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                                  f"--junitxml={xml}", *tests], limit=150, env={**env, "PYTHONPATH": None})
    if rec is not None:
        rec["results"] = _junit_counts(xml)
        if not run.cuda:
            rec["note"] = "no CUDA: the CUDA tests are collected and skipped; the CPU ones in tests/test_gpu_path.py run"
    if not run.cuda:  # what the CPU can: the Triton kernels interpreted, against the references
        rec = run.sh("kernel_tests_interpreted", [PY, "benchmarks/bench_kernels.py", "--json",
                                                  str(run.out / "kernels_cpu.json")],
                     limit=120, env={"TRITON_INTERPRET": "1"})
        if rec is not None:
            rec["results"] = (_json(run.out / "kernels_cpu.json") or {}).get("results")


def _junit_counts(xml: Path) -> dict | None:
    try:
        head = xml.read_text()[:2000]
    except OSError:
        return None
    m = re.search(r'<testsuite [^>]*', head)
    if not m:
        return None
    return {k: int(v) for k, v in re.findall(r'(tests|failures|errors|skipped)="(\d+)"', m.group(0))}


PREFLIGHT_CODE = """
import importlib.util, json, sys
import elfctl, elfctl.kernels, elfctl.shipped_recipes
from elfctl.config import load_config
from elfctl.cli import build_app
build_app()  # every command's entry point loads (a failing one prints a warning line)
load_config("owt")  # the shipped recipes resolve from the installed package
absent = [m for m in ("datasets", "rouge_score", "gguf", "sacrebleu", "pyarrow") if importlib.util.find_spec(m) is None]
print(json.dumps({"elfctl": elfctl.__version__, "from": elfctl.__file__, "kernels": list(elfctl.kernels.__path__)[0],
                  "absent_optional": absent}))
"""


def preflight(run: Run) -> None:
    """elfctl imports from the install (not the checkout: ``-P`` keeps the working directory off sys.path)."""
    rec = run.sh("preflight", [PY, "-P", "-c", PREFLIGHT_CODE], limit=60, env={"PYTHONPATH": None})
    if rec is not None:
        rec["results"] = _last_json_line(rec["stdout_tail"])
        run.save()


def _last_json_line(text: str):
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def elfctl_commands(run: Run) -> None:
    """The real ``elfctl train`` (compile off, then on) and ``elfctl sample`` on offline inputs made in code."""
    size = "gpu" if run.cuda else "cpu"
    assets = run.out / "assets"
    rec = run.sh("elfctl_assets", [PY, "benchmarks/gpu_check_assets.py", str(assets), "--size", size], limit=90)
    if rec is None or rec["status"] != "ok":
        for name in ("elfctl_train_eager", "elfctl_train_compile", "elfctl_sample"):
            run.skip(name, "the offline inputs were not made (step elfctl_assets)")
        return
    recipe = rec["stdout_tail"].strip().splitlines()[-1]
    rec["results"] = {"recipe": recipe}
    elfctl = [PY, "-P", "-m", "elfctl"]
    first = None
    for label, compile_, limit in (("eager", "false", 150), ("compile", "true", 240)):
        if compile_ == "true" and not run.cuda:
            run.skip("elfctl_train_compile", "no CUDA: torch.compile on 2 CPU cores spends minutes in C++ builds "
                                             "(the compiled blocks are checked on the CPU by tests/test_gpu_path.py)")
            continue
        run_dir = run.out / f"run_{label}"
        rec = run.sh(f"elfctl_train_{label}", [*elfctl, "train", recipe, f"train.run_dir={run_dir}",
                                               f"train.compile={compile_}"],
                     limit=limit, env={**NO_INTERPRET, "PYTHONPATH": None}, need=45)
        if rec is not None:
            rec["expected"] = EXPECT["elfctl_train"]
            rec["results"] = {"losses": _losses(run_dir), "metrics": _last_metrics(run_dir)}
            run.save()
            if rec["status"] == "ok" and first is None:
                first = run_dir
    if first is None:
        return run.skip("elfctl_sample", "no training run finished to sample from")
    samples = run.out / "samples.jsonl"
    rec = run.sh("elfctl_sample", [*elfctl, "sample", "--run", str(first), "--out", str(samples)],
                 limit=120, env={**NO_INTERPRET, "PYTHONPATH": None}, need=30)
    if rec is not None:
        header = _first_json_line(samples)
        rec["results"] = header and {k: header.get(k) for k in ("num_samples", "nfe", "wall_time_s", "precision",
                                                                 "device", "sampler")}
        run.save()


def _first_json_line(path: Path):
    try:
        with open(path) as f:
            return json.loads(f.readline())
    except (OSError, ValueError):
        return None


def _last_metrics(run_dir: Path) -> dict | None:
    path = run_dir / "metrics.jsonl"
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def kernel_bench(run: Run) -> None:
    if not run.cuda:
        return run.skip("kernel_bench", "no CUDA: timing needs a GPU (the interpreted correctness check ran instead)")
    out = run.out / "kernels.json"
    rec = run.sh("kernel_bench", [PY, "benchmarks/bench_kernels.py", "--batches", "64", "256", "--lengths", "1024",
                                  "--dtypes", "float32", "bfloat16", "--iters", "30", "--warmup", "5",
                                  "--json", str(out)], limit=200, env=NO_INTERPRET, need=60)
    if rec is not None:
        rec["results"] = (_json(out) or {}).get("results")


ELF_B = ["--recipe", "owt", "--length", "1024", "--batch", "32", "--latent-dim", "512", "--vocab", "32100"]


def train_bench(run: Run) -> None:
    if not run.cuda:
        run.skip("train_bench", "no CUDA: ELF-B at length 1024 needs a GPU; a tiny CPU step runs instead")
        out = run.out / "train_cpu.json"
        rec = run.sh("train_bench_cpu_smoke", [PY, "benchmarks/bench_train.py", "--device", "cpu", "--batch", "4",
                                               "--length", "16", "--steps", "2", "--warmup", "1",
                                               "--set", "optim.optimizer=adamw", "--json", str(out)], limit=150)
        if rec is not None:
            rec["results"] = _json(out)
        return
    for label, extra, limit in (("eager", [], 90), ("compile", ["--compile"], 200)):
        out = run.out / f"train_{label}.json"
        rec = run.sh(f"train_bench_{label}", [PY, "benchmarks/bench_train.py", *ELF_B, "--device", "cuda",
                                              "--steps", "10", "--warmup", "5" if extra else "3", *extra,
                                              "--json", str(out)], limit=limit, env=NO_INTERPRET, need=40)
        if rec is not None:
            rec["expected"] = EXPECT["train_bench"]
            rec["results"] = _json(out)


DIST_COMMON = ["train.steps=6", "train.batch_size=16", "data.max_length=64", "model.depth=4", "model.hidden_size=256",
               "model.num_heads=4", "train.bf16=true", "train.compile=true", "train.device=cuda", "train.save_every=6",
               "train.log_every=1"]


def distributed(run: Run) -> None:
    if run.gpus < 2:
        why = "no CUDA" if not run.cuda else f"{run.gpus} GPU: needs >= 2"
        run.skip("ddp", why + " (the gloo DDP/FSDP tests of the CPU suite cover the logic)")
        run.skip("fsdp", why)
        return
    worker = "tests/train_worker.py"
    one_dir = run.out / "dist_one"
    # one process with grad_accum 2 draws the same two shards as two ranks (tests/test_train_fsdp.py does the same)
    rec = run.sh("ddp_reference_one_process", [PY, worker, str(one_dir), *DIST_COMMON, "train.grad_accum=2"],
                 limit=120, env=NO_INTERPRET, need=60)
    one = _losses(one_dir)
    if rec is not None:
        rec["results"] = {"losses": one}
    for name, extra in (("ddp", []), ("fsdp", ["train.fsdp=true", "optim.optimizer=adamw"])):
        ref_dir = one_dir
        if extra:  # FSDP refuses Muon: its own one-process reference with AdamW
            ref_dir = run.out / "dist_one_adamw"
            ref_rec = run.sh("fsdp_reference_one_process", [PY, worker, str(ref_dir), *DIST_COMMON,
                                                            "optim.optimizer=adamw", "train.grad_accum=2"],
                             limit=120, env=NO_INTERPRET, need=60)
            if ref_rec is not None:
                ref_rec["results"] = {"losses": _losses(ref_dir)}
        d = run.out / f"dist_{name}"
        rec = run.sh(name, [PY, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                            "--master_port", str(29500 + len(run.steps)), worker, str(d), *DIST_COMMON, *extra],
                     limit=180, env=NO_INTERPRET, need=60)
        if rec is not None:
            ref, got = (one if not extra else _losses(ref_dir)), _losses(d)
            rec["results"] = {"one_process_losses": ref, "losses": got}
            if ref and got:
                rec["results"]["step1_rel_diff"] = abs(got[0] - ref[0]) / max(abs(ref[0]), 1e-12)


def _losses(run_dir: Path) -> list[float] | None:
    path = run_dir / "metrics.jsonl"
    try:
        return [json.loads(line)["loss"] for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError, KeyError):
        return None


SAMPLING_CODE = """
import json, sys, torch
sys.path.insert(0, "benchmarks")
from bench_sampling import bench
rows = [bench("elf-b", B, 1024, 512, 32100, 32, "sde", 1, torch.device("cuda")) for B in (64, 256)]
print(json.dumps(rows))
"""


def sampling(run: Run) -> None:
    if not run.cuda:
        return run.skip("sampling", "no CUDA: ELF-B at length 1024 needs a GPU (CPU rows: bench_sampling.py)")
    for backend in ("auto", "torch"):
        rec = run.sh(f"sampling_kernels_{backend}", [PY, "-c", SAMPLING_CODE], limit=150,
                     env={**NO_INTERPRET, "ELFCTL_KERNELS": backend}, need=60)
        if rec is not None:
            rec["expected"] = EXPECT["sampling"]
            try:
                rec["results"] = json.loads(rec["stdout_tail"].strip().splitlines()[-1])
            except (ValueError, IndexError):
                rec["results"] = None


def judge(run: Run) -> None:
    if not run.cuda:
        run.skip("judge", "no CUDA: GPT-2 Large scoring on 2 CPU cores would take minutes; a tiny random GPT-2 "
                          "runs the same code instead")
        out = run.out / "judge_cpu.json"
        rec = run.sh("judge_cpu_smoke", [PY, "benchmarks/bench_judge.py", "--random", "gpt2-tiny", "--rows", "8",
                                         "--length", "64", "--batch-size", "4", "--json", str(out)], limit=120)
        if rec is not None:
            rec["results"] = _json(out)
        return
    for dtype in ("bfloat16", "float32"):
        out = run.out / f"judge_{dtype}.json"
        rec = run.sh(f"judge_{dtype}", [PY, "benchmarks/bench_judge.py", "--random", "gpt2-large", "--dtype", dtype,
                                        "--rows", "64", "--length", "1024", "--batch-size", "16", "--json", str(out)],
                     limit=120, env=NO_INTERPRET, need=30)
        if rec is not None:
            rec["expected"] = EXPECT["judge"]
            rec["results"] = _json(out)


# ------------------------------------------------------------------ report
def environment() -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
           if torch.cuda.is_available() else []}
    try:
        import triton

        env["triton"] = triton.__version__
    except Exception as e:  # noqa: BLE001
        env["triton"] = f"not importable ({type(e).__name__})"
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        env["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        env["nvidia_smi"] = None
    return env


def markdown(env: dict, steps: list[dict]) -> str:
    device = env["gpus"][0] if env["gpus"] else "cpu (no CUDA)"
    lines = [f"gpu_check on {device} ×{max(len(env['gpus']), 1)}; torch {env['torch']}, triton {env['triton']}, "
             f"CUDA {env['cuda']}", "",
             "| device | step | status | result | expected | seconds |", "|---|---|---|---|---|---:|"]
    for s in steps:
        lines.append(f"| {device} | {s['step']} | {s['status']} | {_summary(s)} | {s.get('expected') or ''} | "
                     f"{s.get('seconds', '')} |")
    return "\n".join(lines) + "\n"


def _summary(s: dict) -> str:
    if s["status"] == "skipped":
        return s["reason"]
    r = s.get("results")
    name = s["step"]
    if s["status"] != "ok":
        tail = (s.get("stderr_tail") or "").strip().splitlines()
        return f"rc {s.get('rc')}: {tail[-1][:160] if tail else ''}"
    if r is None:
        return "(no results file)"
    if name == "preflight":
        absent = ", ".join(r.get("absent_optional") or []) or "none"
        return f"elfctl {r.get('elfctl')} from {r.get('from')}; absent: {absent}"
    if name.startswith("elfctl_train"):
        m = r.get("metrics") or {}
        return (f"losses {[round(x, 4) for x in r.get('losses') or []]}; last window {m.get('tokens_per_s', 0):.0f} "
                f"tok/s")
    if name == "elfctl_sample":
        return (f"{r.get('num_samples')} samples, {r.get('nfe')} forward passes per batch, "
                f"{float(r.get('wall_time_s') or 0):.1f} s, {r.get('precision')}")
    if name == "elfctl_assets":
        return "written"
    if name == "kernel_tests":
        return ", ".join(f"{k} {v}" for k, v in r.items())
    if name == "kernel_bench":
        best = [x for x in r if x["impl"] == "triton"]
        return "; ".join(f"{x['kernel']} {x['dtype']} B{x['B']}: {x['gbps']:.0f} GB/s "
                         f"({100 * x['gbps'] / x['copy_gbps']:.0f}% of copy)" for x in best)
    if name.startswith("train_bench"):
        return (f"{r.get('tokens_per_s')} tok/s, step {r.get('step_s')} s, MFU {r.get('mfu_pct', 'n/a')}% "
                f"(naive 6N: {r.get('mfu_naive_pct', 'n/a')}%), {r.get('precision')}, peak {r.get('peak_mem_GiB')} GiB")
    if name.endswith("_reference_one_process"):
        return f"losses {[round(x, 4) for x in r.get('losses') or []]}"
    if name in ("ddp", "fsdp"):
        return f"step-1 loss rel. diff {r.get('step1_rel_diff')}; last loss {(r.get('losses') or [None])[-1]}"
    if name.startswith("sampling"):
        return "; ".join(f"B{x['batch']}: {x['tokens_per_s']} tok/s, overhead {x['overhead_pct']}%, "
                         f"kernels {x['kernels']}" for x in r)
    if name.startswith("judge"):
        return f"{r['judge']} {r['dtype']}: {r['tokens_per_s']} tok/s, load {r['load_s']} s"
    if name == "kernel_tests_interpreted":
        return "; ".join(f"{x['check']} {x['dtype'].replace('torch.', '')}: max err {x['max_abs_err']:.1e}" for x in r)
    return json.dumps(r)[:200]


STEPS = ("preflight", "kernel_tests", "elfctl_commands", "kernel_bench", "train_bench", "judge", "sampling",
         "distributed")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_results", help="output directory")
    ap.add_argument("--budget", type=float, default=390.0, help="seconds for every step together (default 6.5 "
                    "minutes: with the install, well inside 8)")
    ap.add_argument("--only", nargs="+", default=None, choices=STEPS)
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    run = Run(out, args.budget, env)
    print(f"[gpu_check] {json.dumps(env)}", flush=True)
    # cheapest and most telling first: a step that would not fit the budget is skipped, not cut short
    for step in (preflight, kernel_tests, elfctl_commands, kernel_bench, train_bench, judge, sampling, distributed):
        if args.only is None or step.__name__ in args.only:
            step(run)
            run.save()  # with the results the step added to its records
    payload = run.payload()
    print("\n" + markdown(env, run.steps))
    print(f"[gpu_check] {len(run.steps)} steps in {payload['wall_s']} s; failed: {payload['failed'] or 'none'}; "
          f"skipped: {len(payload['skipped'])}")
    for line in payload["skipped"]:
        print(f"  skipped {line}")
    print(f"[gpu_check] wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return 1 if payload["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
