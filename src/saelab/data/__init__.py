"""Corpora and token windows."""

from .corpus import DEFAULT_CORPUS, EMBEDDED_CORPORA, Corpus, Document, load_corpus
from .tokens import TokenizeConfig, TokenWindows, load_token_windows, save_token_windows, text_mask, tokenize_corpus

__all__ = ["DEFAULT_CORPUS", "EMBEDDED_CORPORA", "Corpus", "Document", "TokenWindows", "TokenizeConfig",
           "load_corpus", "load_token_windows", "save_token_windows", "text_mask", "tokenize_corpus"]
