"""Offline language detection (lingua), restricted to the languages the support org handles.

Restricting the candidate set keeps the detector small and fast (all 75 languages would load ~1 GB of
models) and avoids exotic false positives on short texts. Very short texts fall back to English.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

DEFAULT_LANGUAGES = ("en", "es", "fr", "de", "pt", "ja", "it", "nl")
MIN_CHARS = 12


@lru_cache(maxsize=4)
def _detector(languages: tuple[str, ...]):
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    langs = [Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper())) for code in languages]
    return LanguageDetectorBuilder.from_languages(*langs).with_low_accuracy_mode().build()


def detect_languages(texts: Sequence[str], languages: Sequence[str] = DEFAULT_LANGUAGES,
                     parallel: bool = True) -> list[str]:
    """ISO 639-1 code per text ("en" when the text is too short to tell).

    ``parallel``: lingua detects the batch on all cores (Rust threads) — fastest alone. In a worker process
    beside the classifier (``models.offload``) one thread is better: it leaves the classifier its core.
    """
    detector = _detector(tuple(languages))
    texts = [t or "" for t in texts]
    if parallel:
        detected = detector.detect_languages_in_parallel_of(texts)
    else:
        detected = [detector.detect_language_of(t) if len(t.strip()) >= MIN_CHARS else None for t in texts]
    return [
        "en" if not text or len(text.strip()) < MIN_CHARS or lang is None else lang.iso_code_639_1.name.lower()
        for text, lang in zip(texts, detected, strict=True)
    ]
