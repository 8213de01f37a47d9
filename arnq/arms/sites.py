"""Named activation sites of ViT/DeiT, Swin and BERT, found from module structure, and hooks on them.

A site is one activation tensor inside a transformer block, read with a forward hook
(a module's output) or a forward pre-hook (a module's first positional input); the
model's forward is never copied or patched. Sites are looked up by attribute path, so
they work the same on a model prepared by `arnq.quant.prepare` (QuantLinear keeps the
attribute paths) -- but find them *after* preparing: a site found before `prepare`
holds the replaced Linear, which never runs again (`observe` refuses such sites).

Site names are `"<kind>/<module path>"`, e.g. `"post_ln/blocks.0.norm2"`, so the kind
can be read back from a name alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from arnq.quant.api import detect_family

#: post_ln: LayerNorm outputs feeding qkv / fc1 (BERT: the two post-LN outputs of a layer);
#: fc2_in: input of the second FFN Linear (the GELU output); ffn_out: output of that Linear
#: (BERT only); residual: the residual stream (timm: block output; BERT: the sums entering
#: each LayerNorm).
SITE_KINDS = ("post_ln", "fc2_in", "ffn_out", "residual")
FAMILY_KINDS = {
    "vit": ("post_ln", "fc2_in", "residual"),
    "swin": ("post_ln", "fc2_in", "residual"),
    "bert": ("post_ln", "fc2_in", "ffn_out", "residual"),
}

HookKind = Literal["input", "output"]
SiteFn = Callable[[str, torch.Tensor], None]


@dataclass(frozen=True)
class Site:
    """One activation: its name, kind, owning module and whether its input or output is read."""

    name: str
    kind: str
    module: nn.Module = field(repr=False, compare=False)
    hook: HookKind

    def __post_init__(self) -> None:
        if self.kind not in SITE_KINDS:
            raise ValueError(f"kind={self.kind!r}: choose one of {', '.join(SITE_KINDS)}")
        if self.hook not in ("input", "output"):
            raise ValueError(f"hook={self.hook!r}: use 'input' (forward pre-hook) or 'output' (forward hook)")


def site_kind(name: str) -> str:
    """The kind prefix of a site name (`"post_ln/blocks.0.norm1"` -> `"post_ln"`)."""
    return name.split("/", 1)[0]


def _blocks(model: nn.Module, family: str) -> list[nn.Module]:
    """The transformer blocks (timm) or encoder layers (BERT) in forward order."""
    if family == "vit":
        return list(model.blocks)
    if family == "swin":
        return [block for stage in model.layers for block in stage.blocks]
    encoder = model.bert.encoder if hasattr(model, "bert") else model.encoder
    return list(encoder.layer)


def _block_sites(block: nn.Module, family: str) -> list[tuple[str, str, HookKind]]:
    """(kind, attribute path inside the block, hook) of every site in one block."""
    if family in ("vit", "swin"):
        return [
            ("post_ln", "norm1", "output"),
            ("post_ln", "norm2", "output"),
            ("fc2_in", "mlp.fc2", "input"),
            ("residual", "", "output"),
        ]
    return [
        ("post_ln", "attention.output.LayerNorm", "output"),
        ("post_ln", "output.LayerNorm", "output"),
        ("fc2_in", "output.dense", "input"),
        ("ffn_out", "output.dense", "output"),
        ("residual", "attention.output.LayerNorm", "input"),
        ("residual", "output.LayerNorm", "input"),
    ]


def _check_kinds(kinds: Iterable[str] | None, family: str) -> tuple[str, ...]:
    """Validated kinds, restricted to those this family has."""
    if kinds is None:
        return FAMILY_KINDS[family]
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    unknown = [k for k in kinds if k not in SITE_KINDS]
    if unknown:
        raise ValueError(f"site kinds {unknown}: unknown; valid kinds are {', '.join(SITE_KINDS)}")
    present = tuple(k for k in kinds if k in FAMILY_KINDS[family])
    if kinds and not present:
        raise ValueError(
            f"site kinds {list(kinds)}: none exist in a {family} model; it has {', '.join(FAMILY_KINDS[family])}"
        )
    return present


def find_sites(model: nn.Module, kinds: Iterable[str] | None = None, *, family: str | None = None) -> list[Site]:
    """Sites of the given kinds (default: all the family has) in forward order.

    Kinds the family lacks (ffn_out on ViT/Swin) are skipped; asking only for absent
    kinds, or for an unknown kind, raises ValueError.
    """
    family = family or detect_family(model)
    wanted = _check_kinds(kinds, family)
    names = {id(m): n for n, m in model.named_modules()}
    sites = []
    for block in _blocks(model, family):
        for kind, path, hook in _block_sites(block, family):
            if kind not in wanted:
                continue
            module = block.get_submodule(path) if path else block
            sites.append(Site(f"{kind}/{names[id(module)]}", kind, module, hook))
    return sites


def as_tokens(x: torch.Tensor) -> torch.Tensor:
    """Flatten spatial dims so every site reads (B, T, C): Swin's (B, H, W, C) -> (B, H*W, C)."""
    return x.flatten(1, -2) if x.dim() > 3 else x  # (B, H, W, C) -> (B, H*W, C)


@contextlib.contextmanager
def observe(model: nn.Module, sites: Iterable[Site], fn: SiteFn) -> Iterator[None]:
    """Call `fn(site.name, tensor)` with each site's (B, T, C) activation whenever it is computed.

    Hooks are registered on entry and removed on exit (also on error).
    """
    sites = list(sites)
    owned = {id(m) for m in model.modules()}
    stale = [s.name for s in sites if id(s.module) not in owned]
    if stale:
        raise ValueError(
            f"sites {stale[:3]} (of {len(stale)}) are not modules of this model; "
            "call find_sites() on the model as it is now (after prepare())"
        )
    handles = []
    try:
        for site in sites:
            handles.append(_register(site, fn))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _register(site: Site, fn: SiteFn) -> torch.utils.hooks.RemovableHandle:
    """Register one forward hook or pre-hook that reports the site's tensor to `fn`."""
    name = site.name
    if site.hook == "output":

        def output_hook(module: nn.Module, args: tuple, output: torch.Tensor | tuple) -> None:
            fn(name, as_tokens(output[0] if isinstance(output, tuple) else output))

        return site.module.register_forward_hook(output_hook)

    def input_hook(module: nn.Module, args: tuple) -> None:
        if not args:
            raise RuntimeError(f"site {name}: the module was called without a positional input to read")
        fn(name, as_tokens(args[0]))

    return site.module.register_forward_pre_hook(input_hook)


@contextlib.contextmanager
def capture(model: nn.Module, sites: Iterable[Site] | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Yield a dict that holds each site's latest (B, T, C) activation during the context.

    Tensors are not detached, so a loss on them backpropagates into the model.
    `sites=None` captures every site of the model.
    """
    sites = find_sites(model) if sites is None else list(sites)
    acts: dict[str, torch.Tensor] = {}
    with observe(model, sites, acts.__setitem__):
        yield acts
