"""The DeepSeek-V3 network as a transformers PreTrainedModel (spec §2-4, §7).

Module names equal HF's parameter names, so the state dict is the official layout except for the
routed experts (stacked in memory, per-expert on disk; see model/checkpoint.py). MTP modules live
in the same `model.layers` list at indices >= num_hidden_layers, as in the official checkpoints.

The causal-LM structure transformers, TRL, PEFT and accelerate expect (issue 12): the backbone
`model` (`base_model_prefix`) takes input_ids / attention_mask / position_ids / inputs_embeds /
cache and returns the final-normed hidden states (`last_hidden_state`, like HF's
`DeepseekV3Model`); `lm_head` projects them. TRL's fused LM head calls the backbone and applies
`lm_head` itself, so everything a trainer needs must live in the backbone. Decoder layers are
`GradientCheckpointingLayer`s, so `gradient_checkpointing_enable()` (reentrant or not) works.

Packed sequences: pass `position_ids` that restart at 0 for each document; attention is then
confined to each document and no loss (main or MTP) is taken across a document boundary. This is
how TRL's padding-free / BFD packing collator hands batches over (no attention_mask, position ids
restarting per document, plus varlen `cu_seq_lens_*` that carry the same boundaries).
"""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DeepseekV3ForCausalLM, GenerationMixin, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ModelOutput

from model.attention import MLA
from model.checkpoint import from_hf_state_dict, load_checkpoint, read_config, save_checkpoint
from model.config import ModelConfig, warn_ignored
from model.fp8 import convert_linears
from model.layers import RMSNorm, SwiGLU
from model.moe import MoE, RoutedExperts, Router
from model.rope import RotaryEmbedding

IGNORE_INDEX = -100
# transformers renamed `past_key_values` to `cache` in model outputs and forward kwargs.
_CACHE_FIELD = ("cache" if "cache" in inspect.signature(
    DeepseekV3ForCausalLM.forward).parameters else "past_key_values")


class DecoderLayer(GradientCheckpointingLayer):
    """Pre-norm MLA + (dense or MoE) FFN. Under activation checkpointing the wrapper recomputes
    this forward in backward; the router then counts its tokens twice, which leaves the sign-based
    bias update (model/balance.py) unchanged. The HF cache must go by keyword (`cache=`) so the
    checkpoint wrapper can drop it, as it does for every HF layer."""

    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__()
        self.self_attn = MLA(config, layer_idx)
        if layer_idx >= (config.first_k_dense_replace or 0):
            self.mlp = MoE(config)
        else:
            self.mlp = SwiGLU(config.hidden_size, config.intermediate_size)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, cos, sin, mask=None, cache=None, absorbed=None):
        h = self.input_layernorm(x)
        if absorbed is not None:  # (cache, positions, key_mask) from the engine
            x = x + self.self_attn.forward_absorbed(h, cos, sin, *absorbed)
        else:
            x = x + self.self_attn(h, cos, sin, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class SharedHead(nn.Module):
    """Holds the MTP module's own final norm; the output head itself is the shared lm_head."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class MTPLayer(DecoderLayer):
    """One MTP depth (spec §4.1): x = block(eh_proj([enorm(emb(t_{i+k})) ; hnorm(h_i)]))."""

    def __init__(self, config: ModelConfig, layer_idx: int):
        super().__init__(config, layer_idx)
        self.enorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.hnorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        # Concat order [embedding ; hidden] as in every released implementation (spec §4.1).
        self.eh_proj = nn.Linear(2 * config.hidden_size, config.hidden_size, bias=False)
        self.shared_head = SharedHead(config)

    def combine(self, emb_BTD, hidden_BTD):
        return self.eh_proj(torch.cat((self.enorm(emb_BTD), self.hnorm(hidden_BTD)), dim=-1))


def _output_class(name, doc, fields):
    """A ModelOutput dataclass whose cache field has this transformers' name."""
    namespace = {"__annotations__": {k: "torch.Tensor | None" for k in fields},
                 **dict.fromkeys(fields), "__doc__": doc}
    return dataclass(types.new_class(name, (ModelOutput,), exec_body=lambda ns: ns.update(namespace)))


TransformerOutput = _output_class(
    "TransformerOutput",
    """logits (B, T, V); loss = lm_loss + mtp_loss_weight * mtp_loss + balance_loss (each also
    reported alone); hidden_states = the last decoder layer's output before the final norm (the
    MTP input h^0); the HF cache under this transformers' name.""",
    ["loss", "logits", _CACHE_FIELD, "lm_loss", "mtp_loss", "balance_loss", "hidden_states"])

BackboneOutput = _output_class(
    "BackboneOutput",
    """HF's BaseModelOutputWithPast fields: last_hidden_state (B, T, D) after the final norm,
    the cache, hidden_states (embeddings + each main layer's output, when output_hidden_states).
    Ours: pre_norm_hidden_state = the last main layer's output before the norm (MTP's h^0) and
    layer_inputs = (cos, sin, mask, doc) that the MTP modules reuse.""",
    ["last_hidden_state", _CACHE_FIELD, "hidden_states", "attentions", "pre_norm_hidden_state",
     "layer_inputs"])


def document_ids(position_ids_BT: torch.Tensor) -> torch.Tensor:
    """A new document starts wherever the position does not continue the previous one."""
    starts = torch.ones_like(position_ids_BT, dtype=torch.bool)
    starts[:, 1:] = position_ids_BT[:, 1:] != position_ids_BT[:, :-1] + 1
    return starts.long().cumsum(dim=1)


def build_mask(T, S, device, doc_BT=None, padding_BS=None, past=0):
    """Bool (B|1, 1, T, S) mask, True = attend. Query i sits at key index past+i.

    Each query may always see itself, so fully padded rows never produce NaN.
    """
    q_idx = torch.arange(T, device=device)[:, None] + past
    k_idx = torch.arange(S, device=device)[None, :]
    mask = (k_idx <= q_idx)[None]
    if doc_BT is not None:
        mask = mask & (doc_BT[:, :, None] == doc_BT[:, None, :])
    if padding_BS is not None:
        mask = mask & padding_BS[:, None, :].bool()
    mask = mask | (k_idx == q_idx)[None]
    return mask[:, None]


# Keys trainers pass that carry nothing position_ids does not: TRL's padding-free collator adds
# varlen boundaries for flash-attention kernels; older generate loops add cache_position.
_REDUNDANT_KWARGS = {"cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx",
                     "cache_position", "output_attentions", "output_router_logits"}


class Backbone(nn.Module):
    """HF's `model.*` prefix: embeddings, decoder layers (+ MTP layers), final norm. Its forward
    is DeepseekV3Model's: token ids (or embeddings) in, final-normed hidden states out."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        n = config.num_hidden_layers
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        layers = [DecoderLayer(config, i) for i in range(n)]
        layers += [MTPLayer(config, n + k) for k in range(config.num_mtp_modules)]
        self.layers = nn.ModuleList(layers)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, use_cache=None, output_hidden_states=None, return_dict=True,
                **kwargs):
        unknown = set(kwargs) - _REDUNDANT_KWARGS - {"cache"}
        if unknown:
            raise TypeError(f"Transformer backbone got unexpected keyword arguments {sorted(unknown)}")
        if kwargs.get("output_attentions"):
            warn_ignored("output_attentions=True", "SDPA does not return attention weights")
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        hf_cache = past_key_values if past_key_values is not None else kwargs.get("cache")
        h = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        B, T, _ = h.shape
        if T > self.config.max_position_embeddings:
            raise ValueError(f"input length {T} exceeds max_position_embeddings="
                             f"{self.config.max_position_embeddings}")
        self._reset_routers(attention_mask, T)
        if use_cache and hf_cache is None:
            from transformers import DynamicCache
            hf_cache = DynamicCache(config=self.config)
        past = hf_cache.get_seq_length() if hf_cache is not None else 0
        doc = None
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=h.device)[None].expand(B, -1)
        elif T > 1 and not past:
            doc = document_ids(position_ids)
        mask = None
        if doc is not None or attention_mask is not None or past:
            mask = build_mask(T, past + T, h.device, doc, attention_mask, past)
        cos, sin = self.rotary_emb(position_ids)
        states = [h] if output_hidden_states else None
        for layer in self.layers[: self.config.num_hidden_layers]:
            h = layer(h, cos, sin, mask, cache=hf_cache)
            if states is not None:
                states.append(h)
        out = BackboneOutput(last_hidden_state=self.norm(h), pre_norm_hidden_state=h,
                             hidden_states=tuple(states) if states else None,
                             layer_inputs=(cos, sin, mask, doc), **{_CACHE_FIELD: hf_cache})
        return out.to_tuple() if return_dict is False else out

    def _reset_routers(self, attention_mask, T_now):
        """Tell the routers which current positions are real tokens (padding must not steer the
        bias update or the balance loss) and clear last call's balance loss."""
        token_mask = None
        if attention_mask is not None and attention_mask.shape[-1] >= T_now:
            token_mask = attention_mask[:, -T_now:].reshape(-1).bool()
        for module in self.modules():
            if isinstance(module, Router):
                module.balance_loss, module.token_mask = None, token_mask


class Transformer(PreTrainedModel, GenerationMixin):
    config_class = ModelConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["DecoderLayer", "MTPLayer"]

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.model = Backbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
        if config.fp8:
            self.enable_fp8()

    def enable_fp8(self) -> None:
        """FP8 scope of the report (spec §5.1): MLA projections, dense FFNs, shared and routed
        experts. Embedding, lm_head, router, norms, eh_proj and the attention core stay as is."""
        backend, pow2 = self.config.fp8_backend, self.config.fp8_pow2_scales
        for layer in self.model.layers:
            convert_linears(layer.self_attn, backend, pow2)
            mlp = layer.mlp
            if isinstance(mlp, MoE):
                mlp.experts.fp8 = (backend, pow2)
                if mlp.shared_experts is not None:
                    convert_linears(mlp.shared_experts, backend, pow2)
            else:
                convert_linears(mlp, backend, pow2)

    # -- checkpoints (HF layout; model/checkpoint.py) ------------------------------------
    def save_pretrained(self, save_directory, **kwargs):
        """Write an HF-layout checkpoint (per-expert keys, MTP as extra decoder layers)."""
        for key in kwargs:
            if key not in ("safe_serialization", "is_main_process", "state_dict", "max_shard_size"):
                warn_ignored(f"save_pretrained({key}=...)", "our checkpoints are always safetensors")
        if kwargs.get("is_main_process", True):
            save_checkpoint(self, save_directory, state_dict=kwargs.get("state_dict"))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, dtype=None, torch_dtype=None,
                        device=None, device_map=None, **kwargs):
        """Load from a local checkpoint directory (no hub access), validating every tensor."""
        path = Path(pretrained_model_name_or_path)
        if not path.is_dir():
            raise FileNotFoundError(f"model path {path} does not exist or is not a directory "
                                    "(only local checkpoint directories are supported)")
        dtype = dtype or torch_dtype
        if dtype == "auto":  # transformers' meaning: the dtype the checkpoint was saved in
            dtype = getattr(read_config(path), "dtype", None) or "float32"
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype.removeprefix("torch."))
        device = device or (device_map if isinstance(device_map, (str, torch.device)) else None)
        return load_checkpoint(cls, path, dtype=dtype, device=device)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """Also takes the on-disk layout save_pretrained writes (per-expert keys), so that
        transformers' Trainer, which reads a checkpoint's safetensors itself (resume) and loads
        them non-strictly, restores the routed experts instead of silently skipping them."""
        if any(".mlp.experts." in k and k.endswith("_proj.weight") for k in state_dict):
            state_dict = from_hf_state_dict(dict(state_dict), "state dict")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # -- HF plumbing -------------------------------------------------------------------
    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    @torch.no_grad()
    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.normal_(0.0, std)
        elif isinstance(module, RMSNorm):
            module.weight.fill_(1.0)
        elif isinstance(module, Router):
            module.weight.normal_(0.0, std)
            module.e_score_correction_bias.zero_()
        elif isinstance(module, RoutedExperts):
            module.gate_up_proj.normal_(0.0, std)
            module.down_proj.normal_(0.0, std)

    def _routers(self):
        return [m for m in self.modules() if isinstance(m, Router)]

    @property
    def main_layers(self):
        return self.model.layers[: self.config.num_hidden_layers]

    @property
    def mtp_layers(self):
        return self.model.layers[self.config.num_hidden_layers:]

    # -- forward -----------------------------------------------------------------------
    def forward(self, input_ids=None, attention_mask=None, position_ids=None, labels=None,
                past_key_values=None, use_cache=None, logits_to_keep=0, inputs_embeds=None,
                return_dict=True, num_items_in_batch=None, **kwargs):
        """HF-style causal LM forward. `labels` are unshifted (HF convention, -100 ignored);
        with labels and MTP modules the MTP loss is computed and added with its weight.

        `num_items_in_batch` (transformers' Trainer, for exact gradient accumulation): the main
        and MTP losses become token sums divided by it instead of per-call means."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask,
                         position_ids=position_ids, past_key_values=past_key_values,
                         inputs_embeds=inputs_embeds, use_cache=use_cache, **kwargs)
        logits = self.lm_head(self._last(out.last_hidden_state, logits_to_keep))
        result = TransformerOutput(logits=logits, hidden_states=out.pre_norm_hidden_state,
                                   **{_CACHE_FIELD: getattr(out, _CACHE_FIELD)})
        if labels is not None:
            self._add_losses(result, input_ids, labels, out, num_items_in_batch)
        return result.to_tuple() if return_dict is False else result

    @staticmethod
    def _last(h, logits_to_keep):
        return h[:, -logits_to_keep:] if isinstance(logits_to_keep, int) and logits_to_keep else h

    def _add_losses(self, result, input_ids, labels, backbone_out, num_items=None):
        cos, sin, mask, doc = backbone_out.layer_inputs
        result.lm_loss = rescale_to_items(shifted_cross_entropy(result.logits, labels, 1, doc),
                                          labels, 1, doc, num_items)
        loss = result.lm_loss
        if len(self.mtp_layers) and self.config.mtp_loss_weight > 0:
            if input_ids is None:
                raise ValueError("the MTP loss needs input_ids (set mtp_loss_weight=0 to train "
                                 "from inputs_embeds)")
            result.mtp_loss = self.mtp_loss(input_ids, labels, backbone_out.pre_norm_hidden_state,
                                            cos, sin, mask, doc, num_items)
            loss = loss + self.config.mtp_loss_weight * result.mtp_loss
        balance = self.balance_loss()
        if balance is not None:
            result.balance_loss = balance
            loss = loss + balance
        result.loss = loss

    def balance_loss(self) -> torch.Tensor | None:
        """Sum of the routers' sequence-wise balance losses from the last forward (None if off)."""
        losses = [r.balance_loss for r in self._routers() if r.balance_loss is not None]
        return torch.stack(losses).sum() if losses else None

    def mtp_loss(self, input_ids, labels, hidden, cos, sin, mask, doc, num_items=None):
        """(1/D) * sum_k CE_k, where depth k at position i predicts labels[i + k + 1] (spec §4.2)."""
        losses = []
        h = hidden
        for k, layer in enumerate(self.mtp_layers, start=1):
            shifted = torch.zeros_like(input_ids)  # token t_{i+k}; the tail has none (masked)
            shifted[:, :-k] = input_ids[:, k:]
            h = layer(layer.combine(self.model.embed_tokens(shifted), h), cos, sin, mask)
            logits = self.lm_head(layer.shared_head.norm(h))
            losses.append(rescale_to_items(shifted_cross_entropy(logits, labels, k + 1, doc),
                                           labels, k + 1, doc, num_items))
        return torch.stack(losses).mean()

    # -- generation (HF GenerationMixin) -------------------------------------------------
    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None,
                                      **kwargs):
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        return {"input_ids": input_ids[:, past:], "past_key_values": past_key_values,
                "attention_mask": attention_mask, "use_cache": kwargs.get("use_cache", True),
                "position_ids": _positions_from_mask(attention_mask, past, input_ids)}


def _positions_from_mask(attention_mask, past, input_ids):
    """Positions for left-padded batches: count of real tokens before each slot."""
    if attention_mask is None:
        return None
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    return positions[:, past:input_ids.shape[1]]


def shifted_targets(labels_BT, shift, doc_BT=None):
    """labels[:, i + shift] for each position i < T - shift, IGNORE_INDEX where the target lies
    in another document (packed sequences)."""
    targets = labels_BT[:, shift:].clone()
    if doc_BT is not None:
        targets[doc_BT[:, shift:] != doc_BT[:, :-shift]] = IGNORE_INDEX
    return targets


def shifted_cross_entropy(logits_BTV, labels_BT, shift, doc_BT=None):
    """Mean CE of logits[:, i] against labels[:, i + shift]; positions whose target lies in
    another document (packed sequences) or beyond the window are ignored."""
    T = labels_BT.shape[1]
    if shift >= T:
        return logits_BTV.sum() * 0.0
    targets = shifted_targets(labels_BT, shift, doc_BT)
    pred = logits_BTV[:, : T - shift]
    return F.cross_entropy(pred.float().reshape(-1, pred.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE_INDEX)


def rescale_to_items(mean_loss, labels_BT, shift, doc_BT, num_items):
    """A per-target mean turned into sum / num_items (HF's gradient-accumulation convention);
    0 when no target counts."""
    if num_items is None:
        return mean_loss
    if shift >= labels_BT.shape[1]:
        return mean_loss
    count = (shifted_targets(labels_BT, shift, doc_BT) != IGNORE_INDEX).sum()
    num_items = torch.as_tensor(num_items, device=mean_loss.device, dtype=mean_loss.dtype)
    return torch.where(count > 0, mean_loss.nan_to_num() * count / num_items, 0.0)
