#!/bin/bash
# The faults of docs/RELIABILITY.md, tried on the real CLI: prints each command's exit code and stderr.
# usage: R=/tmp/faults bash benchmarks/reliability_faults.sh   (CPU, a few minutes; needs only the installed package)
set -u
R=${R:-/tmp/elfctl-faults}
rm -rf $R; mkdir -p $R
# a tiny recipe: a 2-layer, 16-wide BERT and a word-level tokenizer built in code, 200 lines of their vocabulary
python - "$R" <<'PY'
import json, random, sys
from pathlib import Path
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast
R = Path(sys.argv[1])
words = ("the a cat dog sat ran on mat park big small red blue house tree bird sings fast slow and is was "
         "of to in it he she they we you").split()
tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["[PAD]", "[UNK]", "[SEP]", *words])}, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", sep_token="[SEP]",
                               eos_token="[SEP]")
fast.save_pretrained(str(R / "tiny_bert"))
torch.manual_seed(0)
BertModel(BertConfig(vocab_size=len(fast), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)).save_pretrained(str(R / "tiny_bert"))
rng = random.Random(0)
(R / "corpus.jsonl").write_text("".join(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(3, 9)))})
                                        + "\n" for _ in range(200)))
(R / "tiny.yaml").write_text(f"""name: tiny
encoder: {{source: {R / 'tiny_bert'}, latent_std: 1.0}}
data: {{dataset: {R / 'corpus.jsonl'}, max_length: 12}}
model: {{preset: elf-tiny, depth: 2, hidden_size: 32, num_heads: 2}}
optim: {{optimizer: adamw, lr: 0.003, warmup_steps: 2}}
train: {{steps: 20, batch_size: 8, save_every: 5, log_every: 1}}
sample: {{steps: 4, num_samples: 4, batch_size: 4}}
""")
PY
T="elfctl train $R/tiny.yaml"
losses() { python -c "import json,sys; print([round(json.loads(l)['loss'],6) for l in open(sys.argv[1])])" $1/metrics.jsonl; }
same() { python - "$1" "$2" <<'PY'
import json,sys
a=[json.loads(l)['loss'] for l in open(sys.argv[1]+'/metrics.jsonl')]
b=[json.loads(l)['loss'] for l in open(sys.argv[2]+'/metrics.jsonl')]
print("losses identical to the uninterrupted run:", a==b, len(a), len(b))
PY
}
wait_step() { until [ -f $1/metrics.jsonl ] && [ $(wc -l < $1/metrics.jsonl) -ge $2 ]; do sleep 0.1; done; }
step() { echo; echo "=== $*"; }

step "reference"; $T train.run_dir=$R/ref > $R/ref.log 2>&1; echo "rc=$?"; losses $R/ref

step "SIGKILL at step >= 8, then the same command"
$T train.run_dir=$R/kill > $R/kill.log 2>&1 & P=$!; wait_step $R/kill 8; kill -KILL $P; wait $P; echo "rc=$?"
ls $R/kill/checkpoints; $T train.run_dir=$R/kill > $R/kill2.log 2>&1; echo "resume rc=$?"; grep resumed $R/kill2.log; same $R/ref $R/kill

for S in TERM INT; do
step "SIG$S at step >= 8, then the same command"
$T train.run_dir=$R/$S > $R/$S.log 2> $R/$S.err & P=$!; wait_step $R/$S 8; kill -$S $P; wait $P; echo "rc=$?"; cat $R/$S.err
ls $R/$S/checkpoints; $T train.run_dir=$R/$S > $R/$S-2.log 2>&1; echo "resume rc=$?"; grep resumed $R/$S-2.log; same $R/ref $R/$S
done

step "Ctrl-C twice"
$T train.run_dir=$R/INT2 > $R/INT2.log 2> $R/INT2.err & P=$!; wait_step $R/INT2 8; kill -INT $P; sleep 0.3; kill -INT $P; wait $P; echo "rc=$?"; cat $R/INT2.err; ls $R/INT2/checkpoints

step "corrupt latest checkpoint (truncated ema.safetensors of step 20)"
cp -r $R/ref $R/corrupt; rm -f $R/corrupt/metrics.jsonl; cp $R/ref/metrics.jsonl $R/corrupt/
head -c 100 $R/ref/checkpoints/step_00000020/ema.safetensors > $R/corrupt/checkpoints/step_00000020/ema.safetensors
elfctl sample --run $R/corrupt --out $R/s.jsonl; echo "sample rc=$?"
elfctl eval --metric diversity --checkpoint $R/corrupt 2>/dev/null; true
$T train.run_dir=$R/corrupt > $R/corrupt.log 2>&1; echo "train rc=$?"; grep -E "warning|resumed" $R/corrupt.log; ls $R/corrupt/checkpoints; same $R/ref $R/corrupt

step "failed checkpoint write (ulimit -f: EFBIG) after step 15, then the same command without the limit"
$T train.run_dir=$R/full > $R/full.log 2>&1 & P=$!; wait_step $R/full 16; kill -KILL $P; wait $P
ls $R/full/checkpoints
(ulimit -f 200; $T train.run_dir=$R/full > $R/full2.log 2> $R/full2.err); echo "rc=$?"; cat $R/full2.err; ls -a $R/full/checkpoints
$T train.run_dir=$R/full > $R/full3.log 2>&1; echo "resume rc=$?"; grep resumed $R/full3.log; same $R/ref $R/full

step "a second process on the same run directory, then a dead holder"
$T train.run_dir=$R/two > $R/two.log 2>&1 & P=$!; wait_step $R/two 3
$T train.run_dir=$R/two; echo "second rc=$? (first pid $P)"
kill -KILL $P; wait $P; cat $R/two/.lock; echo
$T train.run_dir=$R/two > $R/two2.log 2>&1; echo "after kill rc=$?"; grep -E "taking over|resumed" $R/two2.log

step "a changed config on a finished run, then --new"
md5sum $R/ref/config.yaml
$T train.run_dir=$R/ref optim.schedule=cosine; echo "rc=$?"
md5sum $R/ref/config.yaml
$T train.run_dir=$R/ref optim.schedule=cosine --new > $R/new.log 2>&1; echo "--new rc=$?"; ls -d $R/ref*; grep schedule $R/ref-2/config.yaml

step "non-finite numbers"
elfctl train quickstart optim.lr=nan; echo "rc=$?"
elfctl sample --run $R/ref --cfg nan; echo "rc=$?"
elfctl sample --run $R/ref --gamma inf; echo "rc=$?"
printf 'objective:\n  noise_scale: .nan\n' > $R/nan.yaml; elfctl recipes show $R/nan.yaml; echo "rc=$?"
