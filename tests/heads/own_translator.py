"""A user's own parallel text for the translator, end to end (used by tests/spine/test_own_data_flow.py).

``make`` writes 300 aligned sentence pairs into two files, English and a small made-up language
("Nordish": its own words, the adjective after its noun, the verb last), with the quirks of real
files: a byte-order mark on one, Windows line ends on the other, a blank line at the end. ``check``
translates a file of sentences with the registered model through ``triad predict --file``.
"""

from __future__ import annotations

import random
from pathlib import Path

from tests.tiny import TINY

NOUNS = {
    "dog": "vok",
    "cat": "mira",
    "bird": "pilo",
    "man": "duro",
    "woman": "sela",
    "child": "kimo",
    "horse": "rasta",
    "fish": "nemo",
}
ADJECTIVES = {"red": "ruva", "small": "tini", "big": "gora", "old": "vela", "young": "nuvi", "white": "bila"}
VERBS = {"sees": "vidat", "likes": "amat", "follows": "sekat", "finds": "trovat", "hears": "audat", "calls": "vokat"}


def sentence_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` distinct (English, Nordish) pairs: "the red dog sees the cat." -> "ta vok ruva ta mira vidat." """
    rng = random.Random(seed)
    pairs: dict[str, str] = {}
    while len(pairs) < n:
        adjective, noun, verb, other = (
            rng.choice(sorted(ADJECTIVES)),
            rng.choice(sorted(NOUNS)),
            rng.choice(sorted(VERBS)),
            rng.choice(sorted(NOUNS)),
        )
        english = f"the {adjective} {noun} {verb} the {other}."
        pairs[english] = f"ta {NOUNS[noun]} {ADJECTIVES[adjective]} ta {NOUNS[other]} {VERBS[verb]}."
    return list(pairs.items())


def make(folder: Path) -> list[str]:
    """Write ``folder/{train.en,train.nd}`` (300 pairs) and ``folder/in.txt`` (sentences to translate, a
    blank line among them); -> the overrides that train the translator on them as ``own-translator``."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = sentence_pairs(320)
    source, target = folder / "train.en", folder / "train.nd"
    source.write_bytes(b"\xef\xbb\xbf" + "".join(f"{en}\n" for en, _ in pairs[:300]).encode())  # with a BOM
    target.write_bytes("".join(f"{nd}\r\n" for _, nd in pairs[:300]).encode() + b"\r\n")  # CRLF, a blank last line
    unseen = [en for en, _ in pairs[300:]]
    (folder / "in.txt").write_text("\n".join(unseen[:6] + [""] + unseen[6:]) + "\n", encoding="utf-8")
    return [
        "data/translator=parallel_text",
        f"data.translator.source={source}",
        f"data.translator.target={target}",
        "data.translator.src_lang=en",
        "data.translator.tgt_lang=x-nordish",
        "data.translator.name=own-translator",
        "data.translator.val_fraction=0.1",
        "data.translator.test_fraction=0.1",
        "trainer.enable_progress_bar=false",
        "trainer.log_every_n_steps=2",
        *TINY["translator"],
    ]


def check(project: Path, folder: Path, out_dir: Path) -> None:
    """``triad predict --model own-translator/1 translator --file in.txt --out out.txt``: one line out per line
    in, the blank line kept blank; a file that is not UTF-8 is refused (exit 3) before the model loads."""
    from triad.cli import main

    out_dir.mkdir(parents=True, exist_ok=True)
    given, out = folder / "in.txt", out_dir / "out.txt"
    assert main(["predict", "--model", "own-translator/1", "translator", "--file", str(given), "--out", str(out)]) == 0
    lines_in = given.read_text(encoding="utf-8").splitlines()
    lines_out = out.read_text(encoding="utf-8").splitlines()
    assert len(lines_out) == len(lines_in) == 21
    assert lines_out[6] == ""  # the blank input line stays blank (a barely trained model may say little elsewhere)
    bad = folder / "bad.txt"
    bad.write_bytes(b"the dog sees the cat.\nthe cat sees the dog.\nthe \xff bird.\n")
    assert main(["predict", "--model", "own-translator/1", "translator", "--file", str(bad), "--out", str(out)]) == 3
