r"""MBAT JSON embeddings against lexical baselines and torchhd-built encoders, in one run.

For each corpus task (records with their label fields masked as the data README says;
``pypi_json`` is the many-schema collection of :mod:`benchmarks.mbat_pypi_corpus`):

* **key-path TF-IDF**: scikit-learn TF-IDF (sublinear tf) over ``key.path`` and
  ``key.path=value`` tokens, cosine (:mod:`tasks.mbat.baselines`);
* **MinHash**: Jaccard of the same token sets, estimated with 128 min-wise hashes;
* **lexical (path=word)**: TF-IDF over ``key.path`` and ``key.path=word`` tokens (array
  positions dropped): the baseline of ``shared/datasets/json/README.md``;
* **ours**: :class:`tasks.mbat.encoder.JsonEncoder` with its defaults (signed-permutation
  roles, sparse hashed token codes, soft numbers, the structure term balanced by ``fit``) at
  ``--dim`` and at each of ``--extra-dims``, and without the structure term at ``--dim``;
* **torchhd-MAP/HRR/FHRR/VTB**: the same encoder (same traversal, tokens, IDF weights,
  container weights and number scales) built from torchhd primitives: dense random item
  vectors (``torchhd.random``), ``torchhd.bind`` for keys, ``torchhd.permute`` for array
  positions, ``FractionalPower`` (HRR, FHRR) or ``Level`` (MAP, VTB) for numbers.

It prints, per task, leave-one-out P@1/P@5 over records whose label occurs twice or more.
The records are split at random (seed 0) into two halves of *queries*, validation and test;
each query searches the whole corpus. Settings are chosen on validation queries only
(``benchmarks/mbat_structure.py``); the tables report test queries (``P@1``, ``P@5``), the
validation half (``P@1 val``) and all records (``P@1 all``, the protocol of earlier tables).
On ``pypi_json`` it also reports structure-similarity ranking, ``struct rho``: the mean
Spearman correlation, over 200 test queries, between an encoder's similarities to every
other document and the Jaccard similarity of their key-path sets. Then
encoding throughput (documents/s; *cold* = a fresh encoder, *warm* = a second pass with
item caches filled; medians over ``--runs``), and the nested-key test
:math:`\cos(\operatorname{enc}\{a:\{b:x\}\}, \operatorname{enc}\{b:\{a:x\}\})` (about 1 for a
commutative binding). Writes ``results/mbat_eval.json`` and ``docs/figures/mbat_eval.png``.

    python -m benchmarks.mbat_eval                    # every corpus, D=4096 (+ ours at 8192)
    python -m benchmarks.mbat_eval --limit 500 --runs 1   # quick look
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torchhd
from scipy.stats import rankdata
from sklearn.feature_extraction.text import TfidfVectorizer
from torchhd import embeddings

from graphcore.datasets.json_corpora import MASKS, SHARED_DIR, corpus_path, iter_records
from graphcore.tasks.mbat.baselines import keypath_tfidf_gram, keypath_tokens, minhash_gram
from graphcore.tasks.mbat.codes import soft_string_weights, string_tokens
from graphcore.tasks.mbat.encoder import Atom, JsonEncoder, Leaf, walk
from graphcore.tasks.mbat.index import precision_at_k
from graphcore.tasks.mbat.orthogonal import FAMILIES
from graphcore.tasks.mbat.paths import Path as JsonPath
from graphcore.tasks.mbat.seeding import generator

REPO_ROOT = Path(__file__).resolve().parents[1]
TASKS = {
    "countries/subregion": ("countries", "subregion", MASKS["countries"]),
    "osv/primary_module": ("go_vulndb_osv", "primary_module", ()),
    "osv/primary_module -affected": ("go_vulndb_osv", "primary_module", ("affected",)),
    "pypi_json/kind": ("pypi_json", "kind", ()),
}
STRUCTURE_TASKS = ("pypi_json/kind",)
_WORD = re.compile(r"\w+")


# ----------------------------------------------------------------------------- evaluation
def _repeated(labels: list[str]) -> np.ndarray:
    counts = Counter(labels)
    return np.array([counts[l] >= 2 for l in labels])


def query_split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks ``[N]`` of the validation and test query halves (seeded permutation)."""
    perm = np.random.default_rng(seed).permutation(n)
    val = np.zeros(n, dtype=bool)
    val[perm[: n // 2]] = True
    return val, ~val


def retrieval_metrics(gram: torch.Tensor, labels: list[str]) -> dict:
    """Leave-one-out P@1/P@5 on test queries, P@1 on validation queries and on all, from a similarity matrix."""
    g = gram.clone()
    g.fill_diagonal_(-float("inf"))
    nb = g.topk(5, dim=1).indices
    rows = _repeated(labels)
    val, test = query_split(len(labels))
    return {"P@1": precision_at_k(nb, labels, 1, rows & test), "P@5": precision_at_k(nb, labels, 5, rows & test),
            "P@1 val": precision_at_k(nb, labels, 1, rows & val), "P@1 all": precision_at_k(nb, labels, 1, rows)}


def keypath_jaccard(docs: list[Any]) -> torch.Tensor:
    """Jaccard similarity ``[N, N]`` of the documents' key-path sets (the structure ground truth)."""
    sets = [{t for t in keypath_tokens(d) if "=" not in t} for d in docs]
    vocab = {t: i for i, t in enumerate(sorted(set().union(*sets)))}
    a = torch.zeros(len(docs), len(vocab))
    for i, s in enumerate(sets):
        a[i, [vocab[t] for t in s]] = 1.0
    inter = a @ a.T
    size = a.sum(1)
    return inter / (size[:, None] + size[None, :] - inter).clamp_min(1)


def structure_rho(gram: torch.Tensor, truth: torch.Tensor, n_queries: int = 200) -> float:
    """Mean Spearman correlation between ``gram`` and ``truth`` rows over test queries (self excluded)."""
    _, test = query_split(len(gram))
    queries = np.flatnonzero(test)[:n_queries]
    rhos = []
    for q in queries:
        keep = np.arange(len(gram)) != q
        a, b = rankdata(gram[q].numpy()[keep]), rankdata(truth[q].numpy()[keep])
        if a.std() > 0 and b.std() > 0:  # a constant row (all ties) has no rank correlation
            rhos.append(float(np.corrcoef(a, b)[0, 1]))
    return float(np.mean(rhos)) if rhos else float("nan")


def lexical_gram(docs: list[Any]) -> torch.Tensor:
    """Cosine matrix of TF-IDF vectors (smooth idf, l2) over ``path`` and ``path=word`` tokens."""

    def tokens(doc: Any) -> list[str]:
        out = []
        for leaf in walk(doc):
            key = ".".join(s for s in leaf.path if isinstance(s, str))
            out.append(key)
            text = str(leaf.value) if not isinstance(leaf.value, float) else f"{leaf.value:g}"
            out.extend(f"{key}={w}" for w in _WORD.findall(text.lower()))
        return out

    tfidf = TfidfVectorizer(analyzer=tokens, dtype=np.float32).fit_transform(docs)
    return torch.from_numpy((tfidf @ tfidf.T).toarray())  # cosines of the l2-normalised sparse rows


# ----------------------------------------------------------------------------- torchhd encoder
class TorchhdJsonEncoder:
    """The JSON encoder of :mod:`tasks.mbat.encoder` with torchhd item vectors and binding.

    Shares the traversal (:func:`walk`), soft-string tokens and weights, IDF and number scales
    with ``base``; only vectors and binding differ.
    """

    def __init__(self, vsa: str, base: JsonEncoder, seed: int = 0):
        self.vsa, self.base, self.dim, self.seed = vsa, base, base.dim, seed
        self.cls = type(torchhd.random(1, 4, vsa))
        self._tokens: dict[str, int] = {}
        self._table = torch.empty(0)
        self._keys: dict[str, torch.Tensor] = {}
        self._paths: dict[JsonPath, tuple[torch.Tensor, int]] = {}
        self._strings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if vsa in ("HRR", "FHRR"):
            g = generator(seed, "torchhd-number")
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
            self.numbers = embeddings.FractionalPower(1, self.dim, "gaussian", 1 / base.config.number_bandwidth, vsa=vsa)
        else:
            torch.manual_seed(seed)
            self.numbers = embeddings.Level(64, self.dim, vsa=vsa, low=-3.0, high=3.0)

    def _vectors(self, tokens: list[str]) -> torch.Tensor:
        new = [t for t in dict.fromkeys(tokens) if t not in self._tokens]
        if new:
            g = generator(self.seed, "torchhd-tokens", str(len(self._tokens)))
            fresh = torchhd.random(len(new), self.dim, self.vsa, generator=g).as_subclass(torch.Tensor)
            self._table = fresh if not len(self._table) else torch.cat([self._table, fresh])
            self._tokens.update(zip(new, range(len(self._tokens), len(self._tokens) + len(new))))
        return torch.tensor([self._tokens[t] for t in tokens])

    def _key(self, key: str) -> torch.Tensor:
        v = self._keys.get(key)
        if v is None:
            v = self._keys[key] = torchhd.random(1, self.dim, self.vsa, generator=generator(self.seed, "torchhd-key", key))[0]
        return v

    def _string(self, s: str) -> tuple[list[str], np.ndarray]:
        hit = self._strings.get(s)
        if hit is None:
            tokens, counts, bag = string_tokens(s, self.base.config.ngram)
            idf = self.base.token_idf
            hit = self._strings[s] = (tokens, soft_string_weights(counts, bag, idf.weights(tokens), idf.max))
        return hit

    def _path_role(self, path: JsonPath) -> tuple[torch.Tensor, int]:
        """For commutative VSAs a path is one role and one shift: :math:`T(x) = r \\otimes \\rho^s(x)`.

        Walking inwards, a key :math:`k` updates :math:`r \\leftarrow r \\otimes \\rho^s(k)` and a position
        :math:`i` updates :math:`s \\leftarrow s + i + 1` (``permute`` distributes over ``bind``).
        """
        hit = self._paths.get(path)
        if hit is None:
            role, shift = torchhd.identity(1, self.dim, self.vsa)[0], 0
            for seg in path:
                if isinstance(seg, int):
                    shift += seg + 1
                else:
                    role = torchhd.bind(role, torchhd.permute(self._key(seg), shifts=shift))
            hit = self._paths[path] = (role, shift)
        return hit

    def _bind_path(self, path: JsonPath, rows: torch.Tensor) -> torch.Tensor:
        v = rows.as_subclass(self.cls)
        if self.vsa == "VTB":  # non-commutative: bind segment by segment, innermost first
            for seg in reversed(path):
                v = torchhd.permute(v, shifts=seg + 1) if isinstance(seg, int) else torchhd.bind(self._key(seg).expand(len(v), -1), v)
        else:
            role, shift = self._path_role(path)
            v = torchhd.bind(role.expand(len(v), -1), torchhd.permute(v, shifts=shift) if shift else v)
        return v.as_subclass(torch.Tensor)

    def encode_batch(self, docs: list[Any]) -> torch.Tensor:
        leaves: list[Leaf] = []
        doc_of: list[int] = []
        for b, doc in enumerate(docs):
            ls = walk(doc)
            leaves.extend(ls)
            doc_of.extend([b] * len(ls))
        dtype = self._table.dtype if len(self._table) else (torch.complex64 if self.vsa == "FHRR" else torch.float32)
        rows = torch.zeros(len(leaves), self.dim, dtype=dtype)
        tok, tok_leaf, tok_w, num_leaf, num_z = [], [], [], [], []
        idf = self.base.token_idf
        for i, leaf in enumerate(leaves):
            v = leaf.value
            if isinstance(v, float):
                num_leaf.append(i)
                num_z.append(self.base._scaled(leaf.path, v))
                continue
            if isinstance(v, Atom):
                ts, w = ["!" + v], idf.weights(["!" + v]) / idf.max
            else:
                ts, w = self._string(v)
            tok.extend(ts)
            tok_leaf.extend([i] * len(ts))
            tok_w.append(w)
        if tok:
            ids = self._vectors(tok)
            table = self._table
            rows = rows.to(table.dtype)
            w = torch.from_numpy(np.concatenate(tok_w)).to(table.real.dtype if table.is_complex() else table.dtype)
            uniq, col = torch.unique(ids, return_inverse=True)
            bag = torch.sparse_coo_tensor(torch.stack([torch.tensor(tok_leaf), col]), w, (len(leaves), len(uniq)),
                                          check_invariants=False)
            vecs = table[uniq]
            if vecs.is_complex():
                rows = torch.complex(torch.sparse.mm(bag, vecs.real), torch.sparse.mm(bag, vecs.imag))
            else:
                rows = torch.sparse.mm(bag, vecs)
        if num_leaf:
            z = torch.tensor(num_z, dtype=torch.float32).unsqueeze(-1)
            if self.vsa in ("MAP", "VTB"):
                z = z.squeeze(-1).clamp(-3, 3)
            rows[torch.tensor(num_leaf)] = self.numbers(z).as_subclass(torch.Tensor).to(rows.dtype) * self.base.config.number_weight
        weights = torch.tensor([l.weight for l in leaves]).unsqueeze(-1).to(rows.real.dtype if rows.is_complex() else rows.dtype)
        out = torch.zeros(len(docs), self.dim, dtype=rows.dtype)
        groups: dict[JsonPath, list[int]] = {}
        for i, leaf in enumerate(leaves):
            groups.setdefault(leaf.path, []).append(i)
        doc_t = torch.tensor(doc_of)
        for path, idx in groups.items():
            ix = torch.tensor(idx)
            out.index_add_(0, doc_t[ix], self._bind_path(path, rows[ix] * weights[ix]))
        if out.is_complex():  # cos on C^D = Re<a, b> / |a||b| = cos on R^{2D}
            out = torch.cat([out.real, out.imag], dim=-1)
        return out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)


# ----------------------------------------------------------------------------- runs
def encode_all(encode_batch: Callable[[list], torch.Tensor], docs: list[Any], batch: int = 256) -> torch.Tensor:
    return torch.cat([encode_batch(docs[i : i + batch]) for i in range(0, len(docs), batch)])


def measure(make: Callable[[], Any], docs: list[Any], labels: list[str], runs: int, n_throughput: int,
            truth: torch.Tensor | None = None) -> dict:
    """Retrieval metrics from one full pass (and ``struct rho`` against ``truth``), and median
    cold/warm throughput (documents/s) over ``runs`` fresh encoders on the first ``n_throughput`` documents."""
    enc = make()
    x = encode_all(enc.encode_batch, docs)
    metrics = retrieval_metrics(x @ x.T, labels)
    if truth is not None:
        metrics["struct rho"] = structure_rho(x @ x.T, truth)
    nested = nested_key_cosine(enc.encode_batch)
    del enc, x
    sample = docs[:n_throughput]
    cold, warm = [], []
    for _ in range(runs):
        enc = make()
        t = time.perf_counter()
        encode_all(enc.encode_batch, sample)
        cold.append(len(sample) / (time.perf_counter() - t))
        t = time.perf_counter()
        encode_all(enc.encode_batch, sample)
        warm.append(len(sample) / (time.perf_counter() - t))
        del enc
    return {**metrics, "cold doc/s": statistics.median(cold), "warm doc/s": statistics.median(warm),
            "nested cos": nested}


def nested_key_cosine(encode_batch: Callable[[list], torch.Tensor]) -> float:
    """cos(enc({"a":{"b":x}}), enc({"b":{"a":x}})) with a string leaf x."""
    x = encode_batch([{"a": {"b": "some value"}}, {"b": {"a": "some value"}}])
    return float(x[0] @ x[1])


def run_task(name: str, data_dir: Path | None, dim: int, extra_dims: list[int], vsas: list[str], runs: int,
             limit: int | None, n_throughput: int) -> list[dict]:
    corpus, label, mask = TASKS[name]
    try:
        path = corpus_path(corpus, data_dir)
    except FileNotFoundError:  # pypi_json is only bundled
        path = corpus_path(corpus)
    recs = list(iter_records(path, mask, limit))
    docs = [r.record for r in recs]
    labels = [str(r.labels[label]) for r in recs]
    truth = keypath_jaccard(docs) if name in STRUCTURE_TASKS else None
    rows = []
    for baseline, gram_of in (("key-path TF-IDF", keypath_tfidf_gram), ("MinHash (128)", minhash_gram),
                              ("lexical (path=word)", lexical_gram)):
        t = time.perf_counter()
        gram = gram_of(docs)
        rows.append({"encoder": baseline, "dim": None, **retrieval_metrics(gram, labels),
                     **({"struct rho": structure_rho(gram, truth)} if truth is not None else {}),
                     "cold doc/s": len(docs) / (time.perf_counter() - t), "warm doc/s": None, "nested cos": None})
        print(f"  {baseline}: P@1 {rows[-1]['P@1']:.3f}", flush=True)
    for d, structure in [(dim, True), (dim, False), *((e, True) for e in extra_dims)]:
        base = JsonEncoder(dim=d, structure=structure).fit(docs)
        rows.append({"encoder": "ours" if structure else "ours, no structure", "dim": d,
                     **measure(lambda: JsonEncoder.from_state(base.state()), docs, labels, runs, n_throughput, truth)})
        print(f"  {rows[-1]['encoder']} D={d} (beta {base.structure_beta:.2f}): P@1 {rows[-1]['P@1']:.3f}", flush=True)
    base = JsonEncoder(dim=dim).fit(docs)
    for vsa in vsas:
        if vsa == "VTB" and math.isqrt(dim) ** 2 != dim:
            print(f"  skip VTB: D={dim} is not a square")
            continue
        rows.append({"encoder": f"torchhd-{vsa}", "dim": dim,
                     **measure(lambda: TorchhdJsonEncoder(vsa, base), docs, labels, runs, n_throughput, truth)})
        print(f"  torchhd-{vsa}: P@1 {rows[-1]['P@1']:.3f}", flush=True)
    counts = Counter(labels)
    for r in rows:
        r.update(task=name, records=len(docs), evaluated=sum(1 for l in labels if counts[l] >= 2))
    return rows


def print_table(rows: list[dict]) -> None:
    cols = ["encoder", "dim", "P@1", "P@5", "P@1 val", "P@1 all", *(["struct rho"] if "struct rho" in rows[0] else []),
            "cold doc/s", "warm doc/s", "nested cos"]
    fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) and abs(v) < 10 else
                                           f"{v:.0f}" if isinstance(v, float) else str(v))
    table = [[fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for t in table:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(t, widths)) + " |")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rs = [r for r in rows if r["task"] == task]
        names = [r["encoder"] + (f"\nD={r['dim']}" if r["dim"] else "") for r in rs]
        ax.barh(names, [r["P@1"] for r in rs], color=["#2a7" if "ours" in n else "#57c" if "torchhd" in n else "#888"
                                                      for n in names])
        ax.set(xlim=(0, 1), xlabel="leave-one-out P@1 (test queries)", title=task)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.mbat_eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED_DIR if SHARED_DIR.exists() else None,
                    help="folder with the JSONL corpora (default ../shared/datasets/json, else the bundled copies)")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--extra-dims", type=int, nargs="*", default=[8192], help="further D for ours only")
    ap.add_argument("--vsa", nargs="*", default=["MAP", "HRR", "FHRR"], help="torchhd VSAs (VTB also works, slowly)")
    ap.add_argument("--runs", type=int, default=3, help="throughput runs (median)")
    ap.add_argument("--throughput-docs", type=int, default=128, help="documents per throughput run")
    ap.add_argument("--vsa-tasks", nargs="*", default=["countries/subregion", "osv/primary_module", "pypi_json/kind"],
                    help="tasks on which the torchhd encoders run (they are slow)")
    ap.add_argument("--limit", type=int, default=None, help="first N records per corpus")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "results/mbat_eval.json")
    ap.add_argument("--png", type=Path, default=REPO_ROOT / "docs/figures/mbat_eval.png")
    args = ap.parse_args(argv)
    env = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "versions": {p: metadata.version(p) for p in ("torch", "torch-hd", "numpy", "scikit-learn", "faiss-cpu")}}
    print(f"machine: {env['platform']}, {env['cpus']} CPUs, torch threads {env['torch_threads']}; {env['versions']}")
    families = {f: nested_key_cosine(JsonEncoder(dim=args.dim, family=f).encode_batch) for f in FAMILIES if f != "dense"}
    rows = []
    for task in args.tasks:
        print(f"== {task}", flush=True)
        vsas = args.vsa if task in args.vsa_tasks else []
        rows.extend(run_task(task, args.data, args.dim, args.extra_dims, vsas, args.runs, args.limit, args.throughput_docs))
    for task in args.tasks:
        rs = [r for r in rows if r["task"] == task]
        print(f"\n{task}: {rs[0]['records']} records, {rs[0]['evaluated']} evaluated (label occurs >= 2 times)")
        print_table(rs)
    print("\nnested-key cosine of our other orthogonal families:", {k: round(v, 3) for k, v in families.items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"environment": env, "args": {k: str(v) for k, v in vars(args).items()},
                                    "rows": rows, "families_nested_cos": families}, indent=1))
    plot(rows, args.png)
    print(f"wrote {args.out} and {args.png}")


if __name__ == "__main__":
    main()
