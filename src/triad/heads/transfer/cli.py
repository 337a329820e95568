"""``triad predict transfer``: classify image files and folders, or texts, with a registered transfer model.

Images: PNG or JPEG files and folders (searched recursively for ``.png``, ``.jpg``, ``.jpeg``). With
``--out predictions.csv`` every file is a row (``path``, ``class``, one ``p_<class>`` column per class,
``error``): a file that cannot be read (corrupt, empty, not an image) is a row with its error, not an
abort. Without ``--out`` the predictions are printed. Texts: ``--text`` with the texts as arguments or
``--file texts.txt`` (one text a line).

``check`` refuses a wrong request before the model loads, so it and this module's top level import
nothing heavy (no torch, mlflow or pandas).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from triad.errors import DataError, TriadError

SUMMARY = "classify images (PNG or JPEG files or folders) or texts"
DESCRIPTION = (
    "Classify PNG or JPEG images (8 or 16 bits; files, or folders searched recursively), or texts with --text, "
    "whichever the model was trained on. With --out, write one CSV row per input (path, class, a probability "
    "column per class, error), a file that cannot be read being a row with its error."
)
BATCH = 32  # files decoded and classified at a time: memory stays flat for any number of files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="*", help="PNG or JPEG files, or folders of them (searched recursively); texts with --text"
    )
    parser.add_argument("--text", action="store_true", help="inputs are texts, not image paths")
    parser.add_argument("--file", type=Path, help="with --text: a UTF-8 file of texts to classify, one a line")
    parser.add_argument(
        "--out",
        type=Path,
        help="write the predictions to this CSV file (path or text, class, p_<class> per class, error) "
        "instead of printing them; its folder must exist",
    )


# --- the request, checked before the model loads ---------------------------------------------------
def image_files(inputs: list[str], strict: bool) -> list[str]:
    """The image files ``inputs`` name: files as given, folders walked recursively for PNG and JPEG files
    (hidden ones skipped), in order. ``strict``: a named file that is not a PNG or JPEG is refused."""
    from triad.data.own import IMAGE_SUFFIXES

    missing = [p for p in inputs if not Path(p).exists()]
    if missing:
        raise DataError(
            f"no such image file(s) or folder(s): {missing}; pass PNG or JPEG files or folders, or --text for texts"
        )
    files: list[str] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in IMAGE_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise DataError(f"{name} holds no PNG or JPEG files (.png, .jpg, .jpeg), in any sub-folder either")
            files += [str(p) for p in found]
        elif path.is_file():
            if strict and _signature(path) is None:
                raise DataError(f"not a PNG or JPEG image: {name} (with --out it would be a row with this error)")
            files.append(name)
        else:
            raise DataError(f"{name} is neither a file nor a folder; pass PNG or JPEG files or folders")
    return files


def _signature(path: Path) -> str | None:
    """ "PNG" or "JPEG" from a file's first bytes (None: neither, or unreadable)."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError:
        return None
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    return "JPEG" if head.startswith(b"\xff\xd8\xff") else None


def text_lines(path: Path) -> list[str]:
    """The non-blank lines of a UTF-8 file (a BOM dropped), stripped; invalid UTF-8 names its line."""
    if not path.is_file():
        raise DataError(f"--file {path}: no such file; pass a UTF-8 text file, one text a line")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"--file {path}:{line}: invalid UTF-8; save the file as UTF-8") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def check(args: argparse.Namespace) -> None:
    """Refuse a request that cannot work before the model loads: missing paths, no images, --out's folder
    missing. Stores what to classify as ``args.files`` (image paths) or ``args.texts``."""
    if args.out is not None:
        if args.out.is_dir():
            raise DataError(
                f"--out {args.out} is a folder; name the CSV file to write, e.g. {args.out}/predictions.csv"
            )
        if not args.out.resolve().parent.is_dir():
            raise DataError(f"--out {args.out}: the folder {args.out.parent} does not exist; create it first")
    if args.file is not None and not args.text:
        raise TriadError("--file holds texts, one a line: add --text (image files and folders are plain arguments)")
    if args.text:
        args.texts = list(args.inputs) + (text_lines(args.file) if args.file is not None else [])
        if not args.texts:
            raise TriadError("no texts to classify: pass them as arguments after --text, or --file texts.txt")
        return
    if not args.inputs:
        raise TriadError("no images to classify: pass PNG or JPEG files or folders (or --text and texts)")
    args.files = image_files(args.inputs, strict=args.out is None)


# --- the model's answers ---------------------------------------------------------------------------
def model_modality(model) -> str | None:
    """ "image" or "text": the model's input column in its signature, else its logged config."""
    import mlflow

    schema = model.metadata.get_input_schema()
    names = set(schema.input_names()) if schema is not None and schema.has_input_names() else set()
    for modality in ("image", "text"):
        if modality in names:
            return modality
    try:
        return model.unwrap_python_model().config.get("modality")
    except (mlflow.exceptions.MlflowException, AttributeError):  # not a triad transfer model: let it answer
        return None


def _class_names(model) -> list[str]:
    try:
        return list(model.unwrap_python_model().config["class_names"])
    except Exception:  # not a triad transfer model: its answers name the classes
        return []


def read_file(path: str) -> tuple[bytes | None, str]:
    """(the file's bytes, "") or (None, why it cannot be an image) for what the model need not see."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, f"unreadable: {exc.strerror or exc}"
    if not data:
        return None, "empty file: zero bytes"
    if not (data.startswith(b"\x89PNG\r\n\x1a\n") or data.startswith(b"\xff\xd8\xff")):
        return None, f"not a PNG or JPEG image (its first bytes are {data[:8]!r})"
    return data, ""


def _error_text(exc: BaseException) -> str:
    from triad.predict import first_line

    return re.sub(r"^image \d+: ", "", first_line(exc))


def classify_files(model, files: list[str], batch: int = BATCH) -> list[dict]:
    """One row per file: ``path``, ``label``, ``label_id``, ``p_<class>``..., ``error`` ("" when classified).

    Files are read and classified ``batch`` at a time; when the model refuses a batch, its files are
    classified one by one so that only the bad ones get an error.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    rows = []
    with tqdm(total=len(files), desc="classifying", unit="file", disable=not sys.stderr.isatty()) as bar:
        for start in range(0, len(files), batch):
            chunk = files[start : start + batch]
            read = [read_file(path) for path in chunk]
            answers: dict[int, dict] = {k: {"error": why} for k, (data, why) in enumerate(read) if data is None}
            good = [k for k, (data, _) in enumerate(read) if data is not None]
            if good:
                try:
                    out = model.predict(pd.DataFrame({"image": [read[k][0] for k in good]}))
                    answers |= {k: {**row, "error": ""} for k, row in zip(good, out.to_dict("records"))}
                except (ValueError, TypeError):
                    for k in good:
                        try:
                            row = model.predict(pd.DataFrame({"image": [read[k][0]]})).to_dict("records")[0]
                            answers[k] = {**row, "error": ""}
                        except (ValueError, TypeError) as exc:
                            answers[k] = {"error": _error_text(exc)}
            rows += [{"path": path, **answers[k]} for k, path in enumerate(chunk)]
            bar.update(len(chunk))
    return rows


def csv_frame(rows: list[dict], key: str, class_names: list[str]):
    """The ``--out`` table: ``key`` (path or text), ``class``, ``p_<class>`` per class, ``error``."""
    import pandas as pd

    names = class_names or [c[2:] for c in dict.fromkeys(c for row in rows for c in row if c.startswith("p_"))]
    frame = pd.DataFrame(rows)
    table = pd.DataFrame({key: frame[key], "class": frame.get("label", pd.Series([None] * len(frame)))})
    for name in names:
        column = f"p_{name}"
        table[column] = frame[column] if column in frame else None
    table["error"] = frame.get("error", "")
    return table


def show(args: argparse.Namespace, model) -> None:
    import pandas as pd

    from triad.predict import model_predict

    if not hasattr(args, "files") and not hasattr(args, "texts"):
        check(args)
    modality = model_modality(model)
    if modality == "text" and not args.text:
        raise TriadError(
            "this model classifies texts: pass --text and the texts (or --file texts.txt), "
            "e.g. triad predict transfer --text 'In the beginning...'"
        )
    if modality == "image" and args.text:
        raise TriadError("this model classifies images: pass PNG or JPEG paths, without --text")
    if args.text:
        key, inputs = "text", args.texts
        parts = [
            model_predict(args, model, pd.DataFrame({"text": inputs[i : i + 256]})) for i in range(0, len(inputs), 256)
        ]
        result = pd.concat(parts, ignore_index=True)
        result["error"] = ""
        rows = [{"text": text, **row} for text, row in zip(inputs, result.to_dict("records"))]
    else:
        key, inputs = "path", args.files
        rows = classify_files(model, inputs)
    failed = [row for row in rows if row.get("error")]
    if args.out is not None:
        csv_frame(rows, key, _class_names(model)).to_csv(args.out, index=False)
        print(f"wrote {len(rows)} prediction(s) to {args.out}" + (f" ({len(failed)} with an error)" if failed else ""))
    else:
        table = pd.DataFrame(rows).rename(columns={key: "input"})
        if "label_id" in table:  # a whole number, also where an error row left it empty
            table["label_id"] = table["label_id"].astype("Int64")
        if not failed:
            table = table.drop(columns="error")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep=""))
    if failed and len(failed) == len(rows):
        raise DataError(
            f"none of the {len(rows)} input(s) could be classified; the first: {failed[0][key]}: {failed[0]['error']}"
        )
