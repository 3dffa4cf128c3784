"""A preallocated MLA latent cache: per layer, the normalised latent (C) and the rotated shared
rope key (R) of every position, 576 values per token per layer at DeepSeek-V3 size (spec §2.3).

Allocated once for (layers, batch, max_len); each step writes its new positions in place, so
decoding never reallocates. Sequences may sit at different positions (per-sequence lengths).
"""

from __future__ import annotations

import torch


class LatentCache:
    def __init__(self, num_layers: int, batch_size: int, max_len: int, latent_dim: int,
                 rope_dim: int, dtype: torch.dtype, device: torch.device | str):
        self.max_len = max_len
        self.latent = torch.zeros(num_layers, batch_size, max_len, latent_dim, dtype=dtype,
                                  device=device)
        self.rope_key = torch.zeros(num_layers, batch_size, max_len, rope_dim, dtype=dtype,
                                    device=device)

    @property
    def nbytes(self) -> int:
        return self.latent.nbytes + self.rope_key.nbytes

    def write(self, layer: int, positions_BT: torch.Tensor, latent_BTC: torch.Tensor,
              rope_key_BTR: torch.Tensor, length: int):
        """Store this step's entries at their positions; return the first `length` slots."""
        lat, rk = self.latent[layer], self.rope_key[layer]
        lat.scatter_(1, positions_BT[..., None].expand(-1, -1, lat.shape[-1]), latent_BTC.to(lat.dtype))
        rk.scatter_(1, positions_BT[..., None].expand(-1, -1, rk.shape[-1]), rope_key_BTR.to(rk.dtype))
        return lat[:, :length], rk[:, :length]

    def extend(self, other: "LatentCache") -> None:
        """Append another cache's rows (sequences joining a running batch); the shorter one's
        slots are padded with zeros up to the longer max_len."""
        length = max(self.max_len, other.max_len)

        def pad(t):
            return torch.nn.functional.pad(t, (0, 0, 0, length - t.shape[2]))

        self.latent = torch.cat((pad(self.latent), pad(other.latent)), dim=1)
        self.rope_key = torch.cat((pad(self.rope_key), pad(other.rope_key)), dim=1)
        self.max_len = length

    def reorder(self, index: torch.Tensor) -> None:
        """Keep/permute batch rows (e.g. after dropping finished sequences)."""
        self.latent = self.latent[:, index]
        self.rope_key = self.rope_key[:, index]
