"""What tracing a sentence-transformers model into ONNX needs beyond `torch.onnx.export`.

Two things, each small:

- **Attention masks without vmap.** transformers 4.53 and later build attention masks in
  `masking_utils`, whose default implementations use `torch.vmap` or read sequence lengths as
  Python ints; TorchScript tracing either fails on them or bakes the example's length into the
  graph. For the duration of an export, `traceable_masks()` registers one mask function for the
  "sdpa" and "eager" attention implementations that builds the same mask from tensor operations
  only. For bidirectional encoders it returns transformers 4's additive mask, the form
  onnxruntime's attention fusion knows.
- **Eager attention.** `eager_attention()` switches the model to transformers' "eager" attention
  (the same arithmetic as SDPA, written out as MatMul, Softmax, MatMul) while it is traced:
  onnxruntime fuses that pattern into its Attention kernel on every transformers release, where
  the traced SDPA of transformers 5 is left unfused.
- **Squeeze without `If`.** torch exports `x.squeeze(d)` on a dimension of unknown size as
  `If(size == 1, Squeeze, Identity)`. Pooling squeezes dimensions that are 1 by construction (CLS
  and last-token pooling gather one position), and the `If` stops onnxruntime's float16 converter
  and its graph optimisations. `fold_squeeze_ifs` replaces each such `If` with its `Squeeze`; were
  the dimension ever not 1, Squeeze fails at run time rather than returning a wrong shape.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import onnx
from onnx import helper


def _classic_mask(attention_mask: Any, dtype: Any) -> Any:
    """transformers 4.x's additive SDPA mask, in the form onnxruntime's BERT fusion matches:
    Where(Cast(1 - Expand(mask)), finfo.min, 1 - Expand(mask))."""
    import torch

    batch, length = attention_mask.shape
    expanded = attention_mask[:, None, None, :].expand(batch, 1, length, length).to(dtype)
    inverted = 1.0 - expanded
    return inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)


def traceable_mask(*_args: Any, attention_mask: Any = None, mask_function: Callable[..., Any] | None = None,
                   dtype: Any = None, **_kwargs: Any) -> Any:
    """A 4D attention mask from the 2D padding mask, with sizes taken from tensors.

    Without a cache (an embedding model encodes each text once), queries and keys are the same
    positions, so every index comes from `attention_mask`'s own shape and stays dynamic when traced.
    """
    import torch
    from transformers import masking_utils

    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        dtype = torch.float32
    if attention_mask is None:
        raise RuntimeError("fusembed traces models with an attention mask; none reached the mask function")
    if mask_function is None or mask_function is getattr(masking_utils, "bidirectional_mask_function", None):
        return _classic_mask(attention_mask, dtype)
    padding = attention_mask.to(torch.bool)
    positions = torch.arange(padding.shape[-1], device=padding.device)
    batch = torch.arange(padding.shape[0], device=padding.device)[:, None, None, None]
    head = torch.zeros((1, 1, 1, 1), dtype=torch.long, device=padding.device)
    allowed = mask_function(batch, head, positions[None, None, :, None], positions[None, None, None, :])
    return allowed & padding[:, None, None, :]


def traceable_eager_mask(*args: Any, dtype: Any = None, **kwargs: Any) -> Any:
    """`traceable_mask` as eager attention takes it: additive, 0 where allowed, finfo.min where not."""
    import torch

    mask = traceable_mask(*args, dtype=dtype, **kwargs)
    if mask.dtype != torch.bool:
        return mask
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        dtype = torch.float32
    return torch.zeros((), dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)


def _no_packed_sequences(*_args: Any, **_kwargs: Any) -> Any:
    return None


@contextlib.contextmanager
def traceable_masks() -> Iterator[None]:
    """Register `traceable_mask` for "sdpa" and "eager" attention while the block runs."""
    try:
        from transformers import masking_utils
    except ImportError:  # transformers before 4.53 builds masks inside each model, traceably
        yield
        return
    registry = masking_utils.ALL_MASK_ATTENTION_FUNCTIONS
    saved = {name: registry[name] for name in ("sdpa", "eager") if name in registry}
    find_packed = getattr(masking_utils, "find_packed_sequence_indices", None)
    for name in saved:
        registry.register(name, traceable_eager_mask if name == "eager" else traceable_mask)
    if find_packed is not None:  # uses torch.diff on position ids; texts are never packed here
        masking_utils.find_packed_sequence_indices = _no_packed_sequences
    try:
        yield
    finally:
        for name, function in saved.items():
            registry.register(name, function)
        if find_packed is not None:
            masking_utils.find_packed_sequence_indices = find_packed


@contextlib.contextmanager
def eager_attention(st_model: Any) -> Iterator[None]:
    """Run the model's attention as "eager" inside the block, then restore what it was."""
    model = getattr(st_model[0], "auto_model", None)
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    switch = getattr(model, "set_attn_implementation", None)
    if switch is None or before in (None, "eager"):
        yield
        return
    switch("eager")
    try:
        yield
    finally:
        switch(before)


def fold_squeeze_ifs(model: onnx.ModelProto) -> int:
    """Replace every `If(cond, then=Squeeze(x), else=Identity(x))` with `Squeeze(x)`; return how many."""
    graph = model.graph
    folded = 0
    for index in range(len(graph.node)):
        node = graph.node[index]
        if node.op_type != "If":
            continue
        branches = {a.name: a.g for a in node.attribute}
        then, other = branches.get("then_branch"), branches.get("else_branch")
        if then is None or other is None:
            continue
        squeeze = [n for n in then.node if n.op_type == "Squeeze"]
        rest = [n for n in then.node if n.op_type not in ("Squeeze", "Constant")]
        if len(squeeze) != 1 or rest or [n.op_type for n in other.node] != ["Identity"]:
            continue
        source = other.node[0].input[0]
        if squeeze[0].input[0] != source:
            continue
        axes_name = squeeze[0].input[1] if len(squeeze[0].input) > 1 else ""
        new_inputs = [source]
        if axes_name:
            const = next((n for n in then.node if n.op_type == "Constant" and axes_name in n.output), None)
            if const is None:
                continue
            axes = onnx.numpy_helper.to_array(const.attribute[0].t)
            init_name = f"{node.name or node.output[0]}_axes"
            graph.initializer.append(onnx.numpy_helper.from_array(axes.astype("int64"), init_name))
            new_inputs.append(init_name)
        replacement = helper.make_node("Squeeze", new_inputs, list(node.output),
                                       name=(node.name or node.output[0]) + "_squeeze")
        graph.node[index].CopyFrom(replacement)
        folded += 1
    return folded
