"""`Encoder`: load a bundle once, then turn texts into sentence embeddings with onnxruntime."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, NoReturn, overload

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from ._auto import Choice, choose_auto
from ._batching import (
    CUDA_BATCH_SIZE,
    CUDA_MAX_TOKENS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_TOKENS,
    ShapeBuckets,
    mark_prompt,
    pad_batch,
    pad_width_to,
    plan_batches,
)
from ._cpu import cpu_info
from ._errors import ArgumentError, BundleError, InputError, check_positive_int
from ._hub import HubRevision, fetch_bundle
from ._manifest import Manifest, Variant, check_files, read_manifest
from ._progress import Progress
from ._providers import DEVICES, Device, Provider, available_cpus, check_session_device, providers_for
from ._text import surrogate_at
from ._tokens import TextTokenizer
from ._warmup import BackgroundWarmup

PrecisionChoice = Literal["auto", "fp32", "int8", "fp16"]
WarmupChoice = bool | Literal["background"] | None
# Texts tokenized ahead of the model at once: large enough for length-sorting to leave little
# padding, small enough that its token ids (a few MB) are all that is held beyond the output.
_CHUNK_TEXTS = 4096
Embeddings = npt.NDArray[np.float32]
# (row indices into the chunk, input_ids, attention_mask): one model call, padded and checked.
_Batch = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]


class Encoder:
    """Sentence embeddings from a fusembed bundle, without torch.

    Args:
        bundle: directory written by `fusembed export`.
        device: "cpu" or "cuda". "cuda" needs onnxruntime-gpu; it never falls back to the CPU.
        precision: which ONNX variant to run. "auto" picks fp16 on CUDA and, on the CPU, the
            faster of int8 and fp32 as measured on this kind of CPU (see `Encoder.choice` for why;
            docs/export.md for the rule). int8 is never used on CUDA (it is slower there).
        threads: intra-op threads; default: the CPUs this process may use (cgroup quota aware).
        verify: check the sha256 of the files it reads (tokenizer, its variant) on load.
        truncate_dim: keep the first N dimensions of every embedding (Matryoshka models).
        prompt_name, prompt: the prompt `encode` applies when a call names none (see `encode`);
            by default the model's `default_prompt_name`, if it has one.
        bucket_shapes: pad every batch up to one of a fixed set of shapes (row counts in powers
            of two, widths in steps of about 1.5x), so that the session meets no new shape
            once warm. Default: on for CUDA, where each new shape stalls a call; off for the CPU.
        warmup: run every bucket shape once at load (largest first, so that onnxruntime's
            memory arena grows once), for steady latency from the first request, and before a
            call whose budget reaches past the shapes warmed. Default: on wherever shapes are
            bucketed. `warmup()` does it later instead. "background": the same on a thread of
            its own, so that the encoder is usable at once; until it ends, a call pays for any
            shape it meets first (see `warming`, `wait_warmup`).
        thread_spinning: let onnxruntime's intra-op threads busy-wait for the next call, which
            saves a wake-up per call. A process that needs its cores for other work between
            calls (a server's event loop and tokenizer) runs faster with it off.

    Example:
        >>> enc = Encoder("bundles/all-MiniLM-L6-v2")          # doctest: +SKIP
        >>> enc.encode(["How many people live in London?"]).shape  # doctest: +SKIP
        (1, 384)

    An `Encoder` is safe to share between threads; onnxruntime runs concurrent calls.
    """

    def __init__(
        self,
        bundle: str | Path,
        *,
        device: Device = "cpu",
        precision: PrecisionChoice = "auto",
        threads: int | None = None,
        verify: bool = True,
        truncate_dim: int | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        bucket_shapes: bool | None = None,
        warmup: WarmupChoice = None,
        thread_spinning: bool = True,
    ) -> None:
        self.bundle = Path(bundle)
        _check_options(device, precision, threads, verify, bucket_shapes, warmup, thread_spinning)
        providers = providers_for(device)
        # Only the files this encoder uses are checked (below): the tokenizer and its variant.
        self.manifest: Manifest = read_manifest(self.bundle, files=())
        self.truncate_dim: int | None = self._check_truncate_dim(truncate_dim)
        self._prompt: str | None = None  # the prompt this encoder applies when a call names none
        if prompt_name is not None or prompt is not None:
            self._prompt = self.prompt_for(prompt_name, prompt)
        self.device: Device = device
        self.choice: Choice = _choose_variant(self.manifest, device, precision)
        self.variant: Variant = self.manifest.variants[self.choice.name]
        check_files(self.bundle, self.manifest, used_files(self.manifest, self.choice.name),
                    verify_hashes=verify)
        self._tokenizer = TextTokenizer(self.bundle / self.manifest.tokenizer, self.manifest.max_seq_length)
        self._vocab_size = self._tokenizer.vocab_size
        self._prompt_lengths: dict[str, int] = {}
        self._session = _load_session(
            self.bundle / self.variant.file, providers, threads or available_cpus(), thread_spinning
        )
        check_session_device(self._session, device)
        names = tuple(i.name for i in self._session.get_inputs())
        if set(names) != set(self.manifest.inputs):
            raise BundleError(
                f"{self.bundle / self.variant.file}: graph inputs {names} differ from the "
                f"manifest's {self.manifest.inputs}; the bundle is damaged"
            )
        outputs = {o.name: o.shape for o in self._session.get_outputs()}
        width = outputs.get(self.manifest.output, [None])[-1]
        if self.manifest.output not in outputs or (isinstance(width, int) and width != self.manifest.dim):
            found = ", ".join(f"{name} {shape}" for name, shape in outputs.items())
            raise BundleError(
                f"{self.bundle / self.variant.file}: the graph's outputs ({found}) do not include "
                f"{self.manifest.output!r} with the manifest's dim {self.manifest.dim}; the bundle is damaged"
            )
        self._needs_type_ids = "token_type_ids" in names
        bucketed = device == "cuda" if bucket_shapes is None else bucket_shapes
        self._buckets = ShapeBuckets(self.manifest.max_seq_length) if bucketed else None
        # The defaults `encode` plans with: a GPU wants far larger calls than a CPU.
        self.default_batch_size = CUDA_BATCH_SIZE if device == "cuda" else DEFAULT_BATCH_SIZE
        self.default_max_tokens = CUDA_MAX_TOKENS if device == "cuda" else DEFAULT_MAX_TOKENS
        self._grow_chunks = device == "cuda"  # see `_prepared_chunks`
        # Bucket shapes already run; with warm-up on, a call whose budget reaches past them runs
        # the new ones first (see `_warm_for`).
        self._warmed: set[tuple[int, int]] = set()
        self._warmed_budgets: set[tuple[int, int]] = set()
        warm = warmup if warmup is not None else bucketed
        self._warm_on_use = bool(warm) and self._buckets is not None
        self._background: BackgroundWarmup | None = None
        if warm == "background":
            budget = self._budget(None, None)
            self._background = BackgroundWarmup(lambda stop: self._warm(*budget, stop))
        elif warm:
            self.warmup()

    # Set by `from_pretrained`: the hub repository and the commit the bundle was loaded from.
    hub: HubRevision | None = None

    @classmethod
    def from_pretrained(
        cls,
        repo_id: str,
        *,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        device: Device = "cpu",
        precision: PrecisionChoice = "auto",
        threads: int | None = None,
        verify: bool = True,
        truncate_dim: int | None = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        bucket_shapes: bool | None = None,
        warmup: WarmupChoice = None,
        thread_spinning: bool = True,
    ) -> Encoder:
        """Load the bundle published in hub repository `repo_id` (see `fusembed push`).

        The manifest is fetched first, then the tokenizer, the check set and the file of the
        variant `device` and `precision` choose, all from the commit the manifest came from, into
        the Hugging Face cache (`cache_dir`, else `HF_HUB_CACHE`); each file is checked against
        the manifest's sha256 before it loads. With `local_files_only=True` or `HF_HUB_OFFLINE=1`
        only the cache is used. `encoder.hub.commit` is the commit loaded.

        Args:
            repo_id: "org/name".
            revision: branch, tag or commit (default: main); a commit pins the exact files.
            cache_dir, token, local_files_only: as huggingface_hub takes them; `token` defaults
                to the one `hf auth login` stored, if any.
            device, precision, threads, verify, truncate_dim, prompt_name, prompt,
                bucket_shapes, warmup, thread_spinning: as `Encoder`.

        Example:
            >>> enc = Encoder.from_pretrained("org/all-MiniLM-L6-v2-fusembed")  # doctest: +SKIP
            >>> enc.hub.commit  # doctest: +SKIP
            '3f1c...'

        Raises:
            BundleError: the repository holds no fusembed bundle, or a file differs from its
                sha256 (it was not loaded).
            HubError: the repository or revision does not exist or is not accessible, the hub
                cannot be reached, or (offline) the bundle is not in the cache.
        """
        # Arguments and this machine's providers first: nothing is downloaded for a call that fails.
        _check_options(device, precision, threads, verify, bucket_shapes, warmup, thread_spinning)
        providers_for(device)
        folder, hub = fetch_bundle(
            repo_id, revision=revision, cache_dir=cache_dir, token=token,
            local_files_only=local_files_only, verify=verify,
            # the check set too (small): `fusembed doctor` and `info` run from the cache then
            wanted=lambda manifest: (*used_files(manifest, _choose_variant(manifest, device, precision).name),
                                     *([manifest.check] if manifest.check else [])))
        encoder = cls(folder, device=device, precision=precision, threads=threads,
                      verify=False,  # fetch_bundle checked every file it fetched against the manifest
                      truncate_dim=truncate_dim, prompt_name=prompt_name, prompt=prompt,
                      bucket_shapes=bucket_shapes, warmup=warmup, thread_spinning=thread_spinning)
        encoder.hub = hub
        return encoder

    # -- what the model is -------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Length of each embedding: the model's, or `truncate_dim` where the encoder has one."""
        return self.truncate_dim or self.manifest.dim

    @property
    def prompts(self) -> dict[str, str]:
        """The model's prompts by name (from its config_sentence_transformers.json)."""
        return dict(self.manifest.prompts)

    @property
    def default_prompt_name(self) -> str | None:
        """The prompt used when a call names none, if the model has one."""
        return self.manifest.default_prompt_name

    @property
    def max_seq_length(self) -> int:
        """Word pieces kept per text, [CLS] and [SEP] included; longer texts are truncated."""
        return self.manifest.max_seq_length

    @property
    def similarity(self) -> str:
        """The score that fits the model: "cosine" or "dot" (use `dot_score` for "dot")."""
        return self.manifest.similarity

    @property
    def normalized(self) -> bool:
        """Whether embeddings have unit length (then dot product equals cosine)."""
        return self.manifest.normalized

    @property
    def precision(self) -> str:
        """The variant this encoder runs: "fp32", "int8" or "fp16"."""
        return self.variant.precision

    def __repr__(self) -> str:
        return (
            f"Encoder({str(self.bundle)!r}, device={self.device!r}, precision={self.precision!r}, "
            f"dim={self.dim}, similarity={self.similarity!r})"
        )

    # -- encoding ----------------------------------------------------------------------------
    @overload
    def encode(
        self, texts: str, *, batch_size: int | None = ..., max_tokens: int | None = ...,
        show_progress_bar: bool = ..., prompt_name: str | None = ..., prompt: str | None = ...,
        truncate_dim: int | None = ...,
    ) -> Embeddings: ...
    @overload
    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = ..., max_tokens: int | None = ...,
        show_progress_bar: bool = ..., prompt_name: str | None = ..., prompt: str | None = ...,
        truncate_dim: int | None = ...,
    ) -> Embeddings: ...

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        batch_size: int | None = None,
        max_tokens: int | None = None,
        show_progress_bar: bool = False,
        prompt_name: str | None = None,
        prompt: str | None = None,
        truncate_dim: int | None = None,
    ) -> Embeddings:
        """Embed texts. Returns float32 `(len(texts), dim)`, or `(dim,)` for a single string.

        Texts are sorted by token length and packed into batches of at most `batch_size` texts
        and `max_tokens` padded tokens (by default `default_batch_size` and `default_max_tokens`:
        32 and 8192 on the CPU, 512 and 65536 on CUDA); output row i is the embedding of
        texts[i] whatever the batching. With bucketed shapes a batch holds a power of two of
        texts. Texts longer than `max_seq_length` word pieces are truncated exactly as
        sentence-transformers does.

        As in sentence-transformers: `prompt_name` puts one of the model's `prompts` before each
        text, `prompt` puts the given text there (it wins over `prompt_name`), and with neither the
        encoder's own prompt applies, else the model's `default_prompt_name`, if it has one; the
        prompt counts toward `max_seq_length`. `truncate_dim` keeps the first N dimensions
        (Matryoshka models), without normalising them again; it overrides the encoder's own.

        Raises:
            InputError: texts is not a string or a sequence of strings (the message names the
                first offending index).
            ArgumentError: batch_size or max_tokens is not a positive int; prompt_name is not one
                of the model's prompts (the message lists them); truncate_dim is not between 1 and
                the model's dimension.
        """
        batch_size, max_tokens = self._budget(batch_size, max_tokens)
        self._warm_for(batch_size, max_tokens)
        before = self.prompt_for(prompt_name, prompt)
        keep = self._check_truncate_dim(truncate_dim) or self.truncate_dim or self.manifest.dim
        if isinstance(texts, str):  # the interactive path: no planning, no padding
            if (at := surrogate_at(texts)) is not None:
                raise InputError(f"the text has a lone surrogate at position {at}, which is not valid "
                                 "Unicode")
            ids = np.asarray([self._tokenizer.row(before + texts)], dtype=np.int64)
            mask = mark_prompt(np.ones_like(ids), self._pooled_out(before))
            vector: Embeddings = self._run(ids, mask)[0]
            return vector if keep == self.manifest.dim else vector[:keep].copy()
        items = _check_texts(texts)
        if before:
            items = [before + text for text in items]
        out = np.empty((len(items), self.manifest.dim), dtype=np.float32)
        if not items:
            return out[:, :keep].copy()
        progress = Progress(len(items)) if show_progress_bar else None
        chunks = self._prepared_chunks(items, max(_CHUNK_TEXTS, batch_size), batch_size, max_tokens,
                                       self._pooled_out(before))
        for start, batches in chunks:
            self._run_batches(batches, out[start:], progress)
        return out if keep == self.manifest.dim else out[:, :keep].copy()

    def prompt_for(self, prompt_name: str | None = None, prompt: str | None = None) -> str:
        """The text `encode` puts before each input for these arguments ("" for none).

        Raises:
            ArgumentError: prompt or prompt_name is not a str, or prompt_name is not one of the
                model's prompts; or the model's pooling leaves its prompt out, which the fused
                graph cannot do.
        """
        if prompt is None and prompt_name is None and self._prompt is not None:
            return self._prompt
        return resolve_prompt(self.manifest, prompt_name, prompt)

    def _pooled_out(self, prompt: str) -> int:
        """How many leading tokens of a text that starts with `prompt` the model's pooling leaves
        out: 0 unless its Pooling has include_prompt false. Counted as sentence-transformers
        counts them: the prompt tokenized alone, without its trailing special token."""
        if not prompt or self.manifest.include_prompt:
            return 0
        if prompt not in self._prompt_lengths:
            self._prompt_lengths[prompt] = self._tokenizer.prompt_length(prompt)
        return self._prompt_lengths[prompt]

    def _check_truncate_dim(self, truncate_dim: int | None) -> int | None:
        return check_truncate_dim(self.manifest, truncate_dim)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Word-piece ids per text, [CLS] and [SEP] included and truncated to `max_seq_length`:
        what `encode` runs. `len(row)` is the text's token count (a server's `usage`).

        Raises:
            InputError: texts is not a sequence of strings.
        """
        if isinstance(texts, str):
            raise InputError("tokenize takes a sequence of str; wrap a single text in a list")
        return self._tokenize(_check_texts(texts))

    def encode_tokens(
        self, rows: Sequence[Sequence[int]], *, batch_size: int | None = None,
        max_tokens: int | None = None,
    ) -> Embeddings:
        """Embed rows from `tokenize`. Equals `encode` of the same texts, row for row.

        For callers that tokenize once and need the token counts too (a server counting usage,
        or gathering requests up to a token budget before they run as one batch).

        Raises:
            InputError: a row is empty, longer than `max_seq_length`, or holds an id outside the
                vocabulary; nothing was encoded.
        """
        batch_size, max_tokens = self._budget(batch_size, max_tokens)
        rows = _check_rows(rows, self.max_seq_length)
        self._warm_for(batch_size, max_tokens)
        out = np.empty((len(rows), self.manifest.dim), dtype=np.float32)
        if rows:
            self._run_batches(self._prepare(rows, batch_size, max_tokens, check_ids=True), out, None)
        return out if self.dim == self.manifest.dim else out[:, : self.dim].copy()

    def warmup(self, *, batch_size: int | None = None, max_tokens: int | None = None) -> int:
        """Run every shape `encode` (within `batch_size` and `max_tokens`) and a server's
        batches can give, largest first, but those already run; with unbucketed shapes, one
        short call. Returns the number of shapes run. Later calls meet no shape onnxruntime has
        not prepared. A background warm-up still running is waited for first.

        An encoder built with warm-up on (the CUDA default) calls this itself when a call's
        `batch_size` or `max_tokens` reach past what it has warmed, so that the new shapes cost
        one pause, largest first, rather than a stall at each."""
        budget = self._budget(batch_size, max_tokens)
        self.wait_warmup()
        return self._warm(*budget)

    @property
    def warming(self) -> bool:
        """True while a background warm-up (`warmup="background"`) is still running."""
        return self._background is not None and self._background.running

    def wait_warmup(self, timeout: float | None = None) -> bool:
        """Wait for a background warm-up to end (at once where there is none): True once it
        has, False if `timeout` seconds pass first.

        Raises:
            Exception: what the background warm-up raised, if it failed (a call would meet the
                same error).
        """
        return self._background is None or self._background.wait(timeout)

    def _warm(self, batch_size: int, max_tokens: int, stop: threading.Event | None = None) -> int:
        """`warmup` of a checked budget, without waiting; between two shapes, returns early
        once `stop` is set."""
        if self._buckets is None:
            shapes = [(1, 8)]
        else:
            every = self._buckets.warmup_shapes(batch_size, max(max_tokens, DEFAULT_MAX_TOKENS))
            shapes = [shape for shape in every if shape not in self._warmed]
        for done, (rows, width) in enumerate(shapes):
            if stop is not None and stop.is_set():
                return done
            ids = np.full((rows, width), self.manifest.pad_token_id, dtype=np.int64)
            self._run(ids, np.ones_like(ids))
            self._warmed.add((rows, width))
        if self._buckets is not None:
            self._warmed_budgets.add((batch_size, max_tokens))
        return len(shapes)

    def _warm_for_server(self, max_batch_tokens: int) -> None:
        """`_warm_for` every shape a server's batches within `max_batch_tokens` padded can take:
        as many rows as fit at the narrowest width, many more than `encode`'s default 512 where
        the texts are short. A server starts once warm: a background warm-up is waited for."""
        self.wait_warmup()
        if self._buckets is not None:
            self._warm_for(max(1, max_batch_tokens // self._buckets.widths[0]), max_batch_tokens)

    def _warm_for(self, batch_size: int, max_tokens: int) -> None:
        """`warmup` for a call's budget, where this encoder warms up and the budget is new.
        Not while a background warm-up runs: the call must not wait for it."""
        if (self._warm_on_use and (batch_size, max_tokens) not in self._warmed_budgets
                and not self.warming):
            self._warm(batch_size, max_tokens)

    def _budget(self, batch_size: int | None, max_tokens: int | None) -> tuple[int, int]:
        """`batch_size` and `max_tokens`, checked, or this encoder's defaults for its device."""
        check_positive_int("batch_size", batch_size, none_ok=True)
        check_positive_int("max_tokens", max_tokens, none_ok=True)
        return batch_size or self.default_batch_size, max_tokens or self.default_max_tokens

    def _prepare(self, rows: Sequence[Sequence[int]], batch_size: int, max_tokens: int,
                 prompt_tokens: int = 0, *, check_ids: bool = False) -> list[_Batch]:
        """Plan `rows` into length-sorted, token-budgeted batches and pad each (to its bucket
        shape where shapes are bucketed): everything but the model call, so that it can run on a
        helper thread while the model runs the previous chunk. `check_ids`: rows from a caller,
        not from the tokenizer, whose ids must be ints (numpy's conversion would truncate 2.5).

        Raises:
            InputError: a row holds something other than ints, or an id outside the vocabulary.
        """
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        batches = []
        for idx in plan_batches(lengths, batch_size, max_tokens, self._buckets):
            batch = [rows[i] for i in idx]
            # Python's sum of the ids, against the sum of what numpy made of them: equal for ints,
            # for a fifth of the cost of checking each id's type (0.7 ms per 512 rows of 256).
            total = _id_sum(batch) if check_ids else 0
            if total is None:
                _not_int_id(batch, idx)
            try:
                ids, mask = pad_batch(batch, self.manifest.pad_token_id, prompt_tokens)
            except (TypeError, ValueError, OverflowError):
                raise InputError("token id rows must hold ints (use tokenize)") from None
            if check_ids and total != int(ids[mask != 0].sum()):
                _not_int_id(batch, idx)
            if ids.size and (ids.min() < 0 or ids.max() >= self._vocab_size):
                raise InputError(f"token ids must lie in [0, {self._vocab_size}); got one outside it")
            if self._buckets is not None:
                ids, mask = self._buckets.pad(ids, mask, self.manifest.pad_token_id)
            batches.append((idx, ids, mask))
        return batches

    def _run_batches(self, batches: list[_Batch], out: Embeddings, progress: Progress | None) -> None:
        """Run prepared batches, writing the embedding of row i (of the chunk) to out[i]."""
        for idx, ids, mask in batches:
            out[idx] = self._run(ids, mask)[: len(idx)]
            if progress is not None:
                progress.advance(len(idx))

    def _prepared_chunks(
        self, items: list[str], chunk: int, batch_size: int, max_tokens: int, prompt_tokens: int = 0
    ) -> Iterator[tuple[int, list[_Batch]]]:
        """Yield (offset, prepared batches) per chunk of `items`. Past one chunk, chunk i+1 is
        tokenized and padded on a helper thread while chunk i runs (the Rust tokenizer and
        onnxruntime both release the GIL), and only two chunks of token ids are held at once,
        however many texts come in. Within a chunk, batches are planned by length, so chunks
        must stay large enough to sort.

        The first chunk is the one nothing overlaps: the model waits for it. On CUDA chunks
        therefore start at an eighth of `chunk` (at least one batch) and grow by half up to
        `chunk`, so that the GPU starts after 512 texts are tokenized rather than 4096, and a
        call of 2048 texts overlaps its tokenizing with the GPU as a call of 20000 does. On the
        CPU, where tokenizing is a few percent of the model's time, every chunk is `chunk` long:
        longer chunks sort better, and 7500 mixed texts ran 8% faster so."""

        def prepare(texts: list[str]) -> list[_Batch]:
            return self._prepare(self._tokenize(texts), batch_size, max_tokens, prompt_tokens)

        first = max(batch_size, chunk // 8) if self._grow_chunks else chunk
        if len(items) <= first:  # one chunk: no thread to start
            yield 0, prepare(items)
            return
        sizes = _chunk_sizes(len(items), first, chunk)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusembed-tokenize") as pool:
            pending = pool.submit(prepare, items[: sizes[0]])
            start = 0
            for size, following in itertools.zip_longest(sizes, sizes[1:]):
                batches = pending.result()
                if following is not None:
                    pending = pool.submit(prepare, items[start + size : start + size + following])
                yield start, batches
                start += size

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        """`tokenize` without its checks, for texts already checked: by `_check_texts`, or by the
        server's protocol layer, which checks each text once, with messages in API terms."""
        return self._tokenizer.rows(texts)

    def _encode_batch(self, rows: Sequence[Sequence[int]]) -> Embeddings:
        """One model call on exactly `rows`, padded to the longest, output row for row: for a
        caller that planned the batch itself (the server's batcher, within its token budget).
        Rows must come from `_tokenize` or `_prompted`; nothing is checked."""
        ids, mask = pad_batch(rows, self.manifest.pad_token_id)
        for i, row in enumerate(rows):
            if isinstance(row, PromptedRow):
                mark_prompt(mask[i : i + 1], row.pooled_out)
        return self._run(ids, mask)

    def _prompted(self, rows: list[list[int]], prompt: str) -> list[list[int]]:
        """`rows` of texts that each start with `prompt`, marked for `_encode_batch` where the
        model's pooling leaves the prompt's tokens out; else `rows` as they are."""
        skip = self._pooled_out(prompt)
        return [PromptedRow(row, skip) for row in rows] if skip else rows

    def _run(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.int64]) -> Embeddings:
        """One model call; row i of the result is row i of `ids`, whatever padding was added."""
        rows = len(ids)
        if self._buckets is not None:
            ids, mask = self._buckets.pad(ids, mask, self.manifest.pad_token_id)
        ids, mask = pad_width_to(ids, mask, self.variant.token_multiple, self.manifest.pad_token_id)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._needs_type_ids:
            feeds["token_type_ids"] = np.zeros_like(ids)
        if self.device == "cuda":
            return self._run_cuda(feeds)[:rows]
        result = self._session.run([self.manifest.output], feeds)[0]
        return np.asarray(result[:rows], dtype=np.float32)

    def _run_cuda(self, feeds: dict[str, npt.NDArray[np.int64]]) -> Embeddings:
        # IO binding: inputs are copied to the GPU once and the output is allocated there, so
        # onnxruntime does not stage every tensor through its own host copies.
        binding = self._session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        binding.bind_output(self.manifest.output, "cuda")
        self._session.run_with_iobinding(binding)
        return np.asarray(binding.copy_outputs_to_cpu()[0], dtype=np.float32)


class PromptedRow(list[int]):
    """A text's token ids whose first `pooled_out` are a prompt the model's pooling leaves out."""

    __slots__ = ("pooled_out",)

    def __init__(self, ids: list[int], pooled_out: int) -> None:
        super().__init__(ids)
        self.pooled_out = pooled_out


def _chunk_sizes(total: int, first: int, largest: int) -> list[int]:
    """Chunk lengths that add up to `total`: `first`, growing by half up to `largest`, then `largest`."""
    sizes, size = [], first
    while total > 0:
        sizes.append(min(size, total))
        total -= sizes[-1]
        size = min(max(size * 3 // 2, size + 1), largest)
    return sizes


def used_files(manifest: Manifest, variant: str) -> tuple[str, str]:
    """The bundle files an encoder running `variant` reads."""
    return manifest.tokenizer, manifest.variants[variant].file


def resolve_prompt(manifest: Manifest, prompt_name: str | None = None, prompt: str | None = None) -> str:
    """The text put before each input, as sentence-transformers chooses it: `prompt`, else the
    model's prompt named `prompt_name`, else the model's default prompt, else "".

    Raises:
        ArgumentError: prompt or prompt_name is not a str, prompt_name is not one of the model's
            prompts (the message lists them), or the model's pooling leaves the prompt out.
    """
    if prompt is not None:
        if not isinstance(prompt, str):
            raise ArgumentError("prompt", f"must be a str, got {type(prompt).__name__}")
        if (at := surrogate_at(prompt)) is not None:
            raise ArgumentError("prompt", f"has a lone surrogate at position {at}, which is not valid "
                                "Unicode")
        chosen = prompt
    elif prompt_name is not None:
        if not isinstance(prompt_name, str):
            raise ArgumentError("prompt_name", f"must be a str, got {type(prompt_name).__name__}")
        if prompt_name not in manifest.prompts:
            known = ", ".join(repr(n) for n in manifest.prompts) or "none"
            raise ArgumentError("prompt_name", f"is {prompt_name!r}, which this model does not "
                                f"define; its prompts: {known}")
        chosen = manifest.prompts[prompt_name]
    elif manifest.default_prompt_name is not None:
        chosen = manifest.prompts[manifest.default_prompt_name]
    else:
        chosen = ""
    if chosen and not manifest.include_prompt and not manifest.prompt_in_mask:
        raise ArgumentError("prompt", "is set, but this model's pooling leaves the prompt's tokens out "
                            "(include_prompt=false), which this bundle's graph does not do (it was "
                            "exported by an older fusembed); export it again, or encode without a prompt")
    return chosen


def check_truncate_dim(manifest: Manifest, truncate_dim: int | None) -> int | None:
    """`truncate_dim` if it is None or 1 to the model's dimension, else an `ArgumentError`."""
    check_positive_int("truncate_dim", truncate_dim, none_ok=True)
    if truncate_dim is not None and truncate_dim > manifest.dim:
        raise ArgumentError("truncate_dim", f"is {truncate_dim}, but this model's embeddings "
                            f"have {manifest.dim} dimensions")
    return truncate_dim


def _check_rows(rows: object, max_seq_length: int) -> list[Sequence[int]]:
    """`encode_tokens`' rows as a list, each checked to be a list of 1 to `max_seq_length` ids (a
    2-D integer numpy array is taken row by row). The ids themselves are checked as batches are
    padded (`_prepare`)."""
    if isinstance(rows, np.ndarray):
        if rows.ndim != 2 or rows.dtype.kind not in "iu":
            raise InputError(f"rows as a numpy array must be 2-D with integer ids, got {rows.ndim}-D "
                             f"{rows.dtype} (use tokenize)")
        checked: list[Sequence[int]] = rows.tolist()
    elif isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise InputError(f"rows must be a list of token id lists, got {type(rows).__name__} (use tokenize)")
    else:
        checked = list(rows)
    for i, row in enumerate(checked):
        if isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, np.ndarray)):
            raise InputError(
                f"rows[{i}] is {type(row).__name__}, expected a list of token ids (use tokenize)")
        if not 0 < len(row) <= max_seq_length:
            raise InputError(
                f"rows[{i}] has {len(row)} tokens; expected 1 to {max_seq_length} (use tokenize)")
    return checked


def _id_sum(batch: list[Sequence[int]]) -> float | None:
    """Python's sum of the ids in `batch` (a float where one is: 2.5 must not become 2), or None
    when one is not a number."""
    try:
        return sum(map(sum, batch))
    except TypeError:
        return None


def _not_int_id(batch: list[Sequence[int]], idx: npt.NDArray[np.int64]) -> NoReturn:
    """The `InputError` that names the first id in `batch` that is not an int, by its row in the
    caller's rows (`idx` maps them back) and its position."""
    for i, row in zip(idx, batch, strict=True):
        for j, value in enumerate(row):
            if not isinstance(value, (int, np.integer)):
                raise InputError(f"rows[{i}][{j}] is {value!r}, not an int token id (use tokenize)")
    raise InputError("token id rows must hold ints (use tokenize)")


def _check_texts(texts: object) -> list[str]:
    if isinstance(texts, (bytes, bytearray)):
        raise InputError("texts must be str or a sequence of str, got bytes; decode it first")
    if isinstance(texts, np.ndarray) and texts.ndim == 1:
        texts = texts.tolist()
    if not isinstance(texts, Sequence):
        raise InputError(f"texts must be str or a sequence of str, got {type(texts).__name__}")
    items: list[object] = list(texts)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InputError(
                f"texts[{i}] is {type(item).__name__} ({item!r:.60}), expected str; "
                "nothing was encoded"
            )
        if (at := surrogate_at(item)) is not None:
            raise InputError(f"texts[{i}] has a lone surrogate at position {at}, which is not valid "
                             "Unicode; nothing was encoded")
    return items  # type: ignore[return-value]  # every item was just checked to be a str


def _check_options(device: object, precision: object, threads: object, verify: object,
                   bucket_shapes: object, warmup: object, thread_spinning: object) -> None:
    """`Encoder`'s options, each alone and device with precision, before any file is read.

    Raises:
        ArgumentError: the first option that is not one `Encoder` takes.
    """
    if device not in DEVICES:
        raise ArgumentError("device", f"must be one of {DEVICES}, got {device!r}")
    if precision not in ("auto", "fp32", "int8", "fp16"):
        raise ArgumentError("precision", f"must be 'auto', 'fp32', 'int8' or 'fp16', got {precision!r}")
    if precision == "int8" and device == "cuda":
        raise ArgumentError("precision", "'int8' is for the CPU; on CUDA use 'fp16' or 'fp32'")
    check_positive_int("threads", threads, none_ok=True)
    if bucket_shapes is not None and not isinstance(bucket_shapes, bool):
        raise ArgumentError("bucket_shapes", f"must be True, False or None, got {bucket_shapes!r}")
    if warmup is not None and not isinstance(warmup, bool) and not (
            isinstance(warmup, str) and warmup == "background"):
        raise ArgumentError("warmup", f"must be True, False, 'background' or None, got {warmup!r}")
    for name, flag in (("verify", verify), ("thread_spinning", thread_spinning)):
        if not isinstance(flag, bool):
            raise ArgumentError(name, f"must be True or False, got {flag!r}")


def _choose_variant(manifest: Manifest, device: Device, precision: PrecisionChoice) -> Choice:
    have = sorted(manifest.variants)
    if precision == "auto":
        try:
            return choose_auto(manifest, device, cpu_info())
        except LookupError:
            raise BundleError(f"bundle has no variant usable on {device} (it has {have})") from None
    if precision not in ("fp32", "int8", "fp16"):
        raise ArgumentError("precision", f"must be 'auto', 'fp32', 'int8' or 'fp16', got {precision!r}")
    if precision == "int8" and device == "cuda":
        raise ArgumentError("precision", "'int8' is for the CPU; on CUDA use 'fp16' or 'fp32'")
    if precision not in manifest.variants:
        raise BundleError(
            f"bundle has no {precision!r} variant; it has {have}. "
            "Re-export with that precision or choose one of those."
        )
    return Choice(precision, "asked for")


def _load_session(
    path: Path, providers: list[Provider], threads: int, spinning: bool = True
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises several unrelated types for a bad model file
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"{path}: onnxruntime cannot load this ONNX file ({first_line})") from None
