"""Section 8.4: what attention, occlusion, integrated gradients and layer probes say about a frozen MiniLM classifier.

The classifier is chapter 5's linear probe: all-MiniLM-L6-v2 frozen (``load_minilm``), its last layer mean-pooled
and scaled to length 1 (the sentence embedding), and a logistic regression on top (``linear_probe``, which first
standardises the features; its inverse regularisation strength ``C`` chosen from ``c_grid`` on validation tweets).
For each seed ``s`` in ``seeds`` the tweets are the ``s``-th slice of ``n_train`` tweets of
``split_tweets(load_tweets(), (0.8, 0.1, 0.1), seed=0)``'s training part, of ``n_val`` of its validation part and
of ``n_test`` of its test part, so the seeds see disjoint tweets. Per seed:

* ``probes``: a logistic regression on the mean-pooled output of the embeddings and of each of the 6 layers,
  for two properties, the tweet's sentiment (3 classes) and whether it has more tokens than the training slice's
  median (a property of the input, not of the label), on the pretrained encoder and on a randomly initialised
  encoder of the same shape (``init_bert_weights`` after ``torch.manual_seed(s)``): the control. Every probe
  chooses its ``C`` on the validation tweets (a first run with ``C = 1`` fixed overfitted: 384 standardised
  features and 800 tweets; a second, with the grid starting at 0.001, chose 0.001 for most random-control
  probes, so the grid was widened).
* ``tweets``: for the first ``n_explain`` test tweets, the score ``log p(predicted class)`` and, per token, the
  attention it receives (the mean over heads and query positions, per layer), attention rollout (the mean of the
  rollout's rows), the occlusion effect (the score minus the score with the token deleted) and integrated
  gradients (``ig_steps`` steps, baseline the ``[PAD]`` vector at every position, summed over each token's
  384 numbers). Stored: Spearman's rank correlation of |effect| with the layer-averaged attention, with the
  rollout and with |IG|, and the shares of attention and of |effect| that fall on ``[CLS]``, ``[SEP]`` and
  punctuation.

Slow and not a test (about 3 minutes on one thread of a shared 2-core CPU); section 8.4 loads
``bigmodel_lib/results/interpretability_cpu.json``, written by

    python benchmarks/interpretability.py --threads 1 --out bigmodel_lib/results/interpretability_cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from bigmodel_lib.attribution import (
    attention_rollout,
    integrated_gradients,
    linear_probe,
    occlusion_effects,
    record_outputs,
)
from bigmodel_lib.models.bert import BertEncoder, init_bert_weights, load_minilm, mean_pooling
from bigmodel_lib.probes import record_attention
from bigmodel_lib.sentiment import load_tweets, split_tweets


@dataclass
class InterpretabilityConfig:
    n_train: int = 800   # tweets per seed for the probes (and the classifier's head)
    n_test: int = 400
    n_val: int = 200     # validation tweets per seed, to choose each probe's C
    c_grid: tuple = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 1.0)
    n_explain: int = 40  # test tweets whose tokens are explained, per seed
    ig_steps: int = 16
    seeds: tuple = (0, 1, 2)


CONFIG = InterpretabilityConfig()


def is_special_or_punctuation(token: str) -> bool:
    """``[CLS]``, ``[SEP]`` or a token without a letter or digit (``!``, ``@``, ``#``, ``.``, ``/``)."""
    return token in ("[CLS]", "[SEP]") or not any(ch.isalnum() for ch in token)


@torch.no_grad()
def pooled_layers(encoder, tokenizer, texts, batch_size: int = 64) -> torch.Tensor:
    """(L + 1, N, C): the mean over real tokens of the embeddings' and of each layer's output."""
    encodings = tokenizer.encode_batch(texts)
    order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))  # similar lengths: little padding
    out = torch.empty(len(encoder.layers) + 1, len(texts), encoder.config.d_model)
    for start in range(0, len(texts), batch_size):
        chosen = order[start : start + batch_size]
        T = max(len(encodings[i].ids) for i in chosen)
        ids = torch.tensor([encodings[i].ids + [0] * (T - len(encodings[i].ids)) for i in chosen])  # 0 = [PAD]
        mask = (ids != 0).long()
        with record_outputs(encoder.embedding_norm, *encoder.layers) as states:
            encoder(ids, mask)
        out[:, chosen] = torch.stack([mean_pooling(s, mask) for s in states])
    return out


def classifier_from_probe(encoder, probe: dict):
    """The probe on the normalised last layer as a torch function: word vectors (N, T, C), mask (N, T) -> logits."""
    clf = probe["classifier"]
    w, b = torch.tensor(clf.coef_, dtype=torch.float32), torch.tensor(clf.intercept_, dtype=torch.float32)
    mu, sigma = (torch.tensor(v, dtype=torch.float32) for v in (probe["mean"], probe["std"]))

    def classify(words, mask):
        T = words.size(1)
        x = words + encoder.token_type_embeddings.weight[0] + encoder.position_embeddings.weight[:T]
        x = encoder.embedding_norm(x)
        for layer in encoder.layers:
            x = layer(x, key_padding_mask=mask == 0)
        pooled = F.normalize(mean_pooling(x, mask), dim=1)  # (N, C)
        return ((pooled - mu) / sigma) @ w.T + b  # (N, 3)

    return classify


def explain_tweet(encoder, classify, ids: list[int], tokens: list[str], ig_steps: int) -> dict:
    """Attention, rollout, occlusion and IG of one tweet's tokens, summarised as in the module docstring."""
    def log_p(id_lists, cls):
        T = max(map(len, id_lists))
        batch = torch.tensor([list(s) + [0] * (T - len(s)) for s in id_lists])
        return classify(encoder.word_embeddings(batch), (batch != 0).long()).log_softmax(1)[:, cls]

    with torch.no_grad():
        label = int(classify(encoder.word_embeddings(torch.tensor([ids])), torch.ones(1, len(ids))).argmax(1))
        with record_attention(*[layer.self_attn for layer in encoder.layers]) as maps:
            encoder(torch.tensor([ids]))
        received = torch.stack([a[0].mean(0).mean(0) for a in maps])  # (L, T): per layer, over heads and queries
        rolled = attention_rollout(maps)[0].mean(0)  # (T,)
        effect = occlusion_effects(lambda seqs: log_p(seqs, label), [ids])[0]  # (T,)
    words = encoder.word_embeddings(torch.tensor([ids]))
    mask = torch.ones(1, len(ids), dtype=torch.long)
    ig = integrated_gradients(lambda v: classify(v, mask.expand(len(v), -1)).log_softmax(1)[:, label], words,
                              encoder.word_embeddings.weight[0], steps=ig_steps).sum(-1)[0]  # (T,)
    special = torch.tensor([is_special_or_punctuation(t) for t in tokens])
    attention, size = received.mean(0), effect.abs()
    return dict(tokens=len(ids), label=label,
                rho_attention=float(spearmanr(attention, size).statistic),
                rho_rollout=float(spearmanr(rolled, size).statistic),
                rho_ig=float(spearmanr(ig.abs(), size).statistic),
                attention_share_special=float(attention[special].sum() / attention.sum()),
                effect_share_special=float(size[special].sum() / size.sum()),
                cls_attention_by_layer=received[:, 0].tolist(), special_tokens=int(special.sum()))


def run_seed(seed: int, model, tokenizer, train, val, test, c: InterpretabilityConfig) -> dict:
    parts = {name: (list(split.texts[seed * n : (seed + 1) * n]), torch.tensor(split.labels[seed * n : (seed + 1) * n]))
             for name, split, n in (("train", train, c.n_train), ("val", val, c.n_val), ("test", test, c.n_test))}
    lengths = {k: [len(e.ids) for e in tokenizer.encode_batch(texts)] for k, (texts, _) in parts.items()}
    median = sorted(lengths["train"])[c.n_train // 2]
    longer = {k: torch.tensor([n > median for n in ls]).long() for k, ls in lengths.items()}
    torch.manual_seed(seed)
    control = init_bert_weights(BertEncoder(model.config)).eval()
    probes = []
    for name, encoder in (("pretrained", model), ("random", control)):
        s = {k: pooled_layers(encoder, tokenizer, texts) for k, (texts, _) in parts.items()}  # (7, n, C) each
        for layer in range(len(s["train"])):
            sentiment = {k: labels for k, (_, labels) in parts.items()}
            for prop, y in (("sentiment", sentiment), ("longer than median", longer)):
                p = linear_probe(s["train"][layer], y["train"], s["test"][layer], y["test"], C=c.c_grid,
                                 validation=(s["val"][layer], y["val"]))
                probes.append(dict(encoder=name, layer=layer, property=prop, accuracy=p["accuracy"], ci95=p["ci95"],
                                   C=p["C"]))
        if name == "pretrained":
            unit = {k: F.normalize(v[-1], dim=1) for k, v in s.items()}  # the sentence embeddings
            head = linear_probe(unit["train"], parts["train"][1], unit["test"], parts["test"][1], C=c.c_grid,
                                validation=(unit["val"], parts["val"][1]))
    texts_te, y_te = parts["test"]
    classify = classifier_from_probe(model, head)
    tweets = []
    for i in range(c.n_explain):
        encoding = tokenizer.encode(texts_te[i])
        tweets.append(dict(index=i) | explain_tweet(model, classify, encoding.ids, encoding.tokens, c.ig_steps))
    majority = max((y_te == k).float().mean().item() for k in range(3))
    return dict(seed=seed, classifier_accuracy=head["accuracy"], classifier_C=head["C"], majority_accuracy=majority,
                median_tokens=median, probes=probes, tweets=tweets)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="interpretability_cpu.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, tokenizer = load_minilm("cpu")
    model.requires_grad_(False)
    train, val, test = split_tweets(load_tweets(), (0.8, 0.1, 0.1), seed=0)
    rows, started = [], time.perf_counter()
    for seed in CONFIG.seeds:
        t = time.perf_counter()
        row = run_seed(seed, model, tokenizer, train, val, test, CONFIG)
        rows.append(row | dict(seconds=round(time.perf_counter() - t, 1)))
        r = rows[-1]
        rho = torch.tensor([x["rho_attention"] for x in r["tweets"]])
        print(f"seed {seed}: classifier {r['classifier_accuracy']:.3f} (C={r['classifier_C']}), "
              f"median rho(attention, |effect|) {rho.median():.2f}, {r['seconds']:.0f} s", flush=True)
    result = dict(
        settings=asdict(CONFIG), rows=rows, complete=True, seconds=round(time.perf_counter() - started, 1),
        machine=dict(python=sys.version.split()[0], torch=torch.__version__, platform=platform.platform(),
                     processor=platform.processor() or platform.machine(), torch_threads=torch.get_num_threads(),
                     cpu_count=os.cpu_count()),
        date=datetime.date.today().isoformat(),
    )
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
