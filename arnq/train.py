"""A Ray-free supervised training loop for classifiers (timm image models and HF text models).

`train_classifier` runs AdamW with linear warm-up + cosine decay, gradient clipping
and label smoothing over `(inputs, labels)` batches from `make_loader`. Two hooks let
later methods extend it without copying it: `loss_fn` adds a loss term computed from
the model, batch and logits, and `step_callback` runs before every optimisation step
(e.g. to anneal injected noise). Shuffling is seeded per epoch, so a run is
reproducible from `TrainConfig.seed`; the global RNGs are seeded for the run only
(`seeded`), so the caller's RNG states and determinism flags are as it left them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from arnq.batch import forward_logits, move_to, token_mask
from arnq.quant.quantizer import token_mask_context
from arnq.scoped import seeded, thread_limit

log = logging.getLogger(__name__)

LossHook = Callable[[nn.Module, Any, torch.Tensor, torch.Tensor], torch.Tensor]
StepHook = Callable[[int, int], None]
EpochHook = Callable[[int, dict], "bool | None"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one supervised fine-tuning / training run."""

    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup_frac: float = 0.1
    grad_clip: float | None = 1.0
    seed: int = 0
    label_smoothing: float = 0.0
    max_steps: int | None = None
    eval_every_epoch: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    decay_norm_and_bias: bool = False
    length_bucketing: bool = False

    def __post_init__(self) -> None:
        def bad(field: str, value: Any, fix: str) -> ValueError:
            return ValueError(f"TrainConfig.{field}={value!r} is invalid; {fix}")

        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise bad("epochs", self.epochs, "use an integer >= 1")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", self.lr, "use a finite learning rate > 0, e.g. 1e-3")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise bad("batch_size", self.batch_size, "use an integer >= 1")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise bad("weight_decay", self.weight_decay, "use a value >= 0")
        if not (isinstance(self.warmup_frac, (int, float)) and 0 <= self.warmup_frac < 1):
            raise bad("warmup_frac", self.warmup_frac, "use a fraction in [0, 1)")
        if self.grad_clip is not None and not (
            isinstance(self.grad_clip, (int, float)) and self.grad_clip > 0
        ):
            raise bad("grad_clip", self.grad_clip, "use a max gradient norm > 0, or None to disable clipping")
        if not isinstance(self.seed, int):
            raise bad("seed", self.seed, "use an integer")
        if not (isinstance(self.label_smoothing, (int, float)) and 0 <= self.label_smoothing < 1):
            raise bad("label_smoothing", self.label_smoothing, "use a value in [0, 1)")
        if self.max_steps is not None and (not isinstance(self.max_steps, int) or self.max_steps < 1):
            raise bad("max_steps", self.max_steps, "use an integer >= 1, or None to run all epochs")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise bad("betas", self.betas, "use two AdamW betas in [0, 1), e.g. (0.9, 0.999)")


@dataclass(frozen=True)
class RandomAffine:
    """Batched random rotation / scale / shift (and optional horizontal flip) of image tensors (B, C, H, W).

    Border-padded, on any device; `hflip` mirrors each image left-right with probability 1/2.
    """

    degrees: float = 10.0
    translate: float = 0.1
    scale: tuple[float, float] = (0.9, 1.1)
    hflip: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.degrees <= 180:
            raise ValueError(f"RandomAffine.degrees={self.degrees} is invalid; use a value in [0, 180]")
        if not 0 <= self.translate < 1:
            raise ValueError(f"RandomAffine.translate={self.translate} is invalid; use a fraction in [0, 1)")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(
                f"RandomAffine.scale={self.scale} is invalid; use (low, high) with 0 < low <= high"
            )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Each image warped by its own affine map drawn from the torch RNG."""
        n, device = images.shape[0], images.device
        angle = (torch.rand(n, device=device) * 2 - 1) * math.radians(self.degrees)
        lo, hi = self.scale
        zoom = lo + torch.rand(n, device=device) * (hi - lo)
        shift = (torch.rand(n, 2, device=device) * 2 - 1) * (2 * self.translate)  # grid coords span 2
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # output x sampled from input x' = mirror * (cos x - sin y) + shift: mirror -1 flips left-right
        mirror = torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0) if self.hflip else 1.0
        theta = torch.stack(
            [
                torch.stack([mirror * cos, -mirror * sin, shift[:, 0]], 1),
                torch.stack([sin, cos, shift[:, 1]], 1),
            ],
            1,
        ).to(images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def lr_schedule(step: int, total: int, warmup: int) -> float:
    """LR multiplier at `step` (0-based): linear warm-up over `warmup` steps, then cosine to 0 at `total`."""
    if total < 1:
        raise ValueError(f"lr_schedule total={total} is invalid; use the number of optimisation steps (>= 1)")
    if not 0 <= warmup <= total:
        raise ValueError(f"lr_schedule warmup={warmup} is invalid; use 0 <= warmup <= total ({total})")
    if step < 0:
        raise ValueError(f"lr_schedule step={step} is invalid; steps count from 0")
    if step < warmup:
        return (step + 1) / warmup
    if step >= total:
        return 0.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def text_length(item: Any) -> int:
    """Whitespace-token length of a text example `(text, label)` or `((text_a, text_b), label)`."""
    text = item[0] if isinstance(item, (tuple, list)) and len(item) == 2 else item
    if isinstance(text, str):
        return len(text.split())
    if isinstance(text, (tuple, list)) and all(isinstance(t, str) for t in text):
        return sum(len(t.split()) for t in text)
    raise TypeError(f"text_length cannot measure {type(text).__name__}; pass length_fn for this dataset")


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)


class SeededBatchSampler(Sampler[list[int]]):
    """Batches of indices, reshuffled each epoch from (seed, epoch); optionally length-bucketed.

    Bucketing sorts indices by length inside chunks of `bucket_batches` batches of a
    random permutation, cuts the chunks into batches and shuffles the batch order,
    so each batch holds examples of similar length but the epoch order stays random.
    Without `shuffle`, bucketing sorts the whole dataset by length (fast evaluation).
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        lengths: Sequence[int] | None = None,
        bucket_batches: int = 50,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} is invalid; use an integer >= 1")
        if lengths is not None and len(lengths) != num_items:
            raise ValueError(
                f"lengths has {len(lengths)} entries for {num_items} items; give one length per item"
            )
        self.num_items = num_items
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long) if lengths is not None else None
        self.bucket_batches = bucket_batches
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the shuffle of `epoch` for the next iteration."""
        self.epoch = epoch

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_items // self.batch_size
        return math.ceil(self.num_items / self.batch_size)

    def batches(self, epoch: int) -> list[list[int]]:
        """All batches of `epoch`, deterministic for (seed, epoch)."""
        gen = _epoch_generator(self.seed, epoch)
        n, bs = self.num_items, self.batch_size
        if not self.shuffle:
            order = torch.arange(n)
            if self.lengths is not None:
                order = torch.argsort(self.lengths, stable=True)
            out = [order[i : i + bs].tolist() for i in range(0, n, bs)]
        elif self.lengths is None:
            order = torch.randperm(n, generator=gen)
            out = [order[i : i + bs].tolist() for i in range(0, n, bs)]
        else:
            order = torch.randperm(n, generator=gen)
            chunk = bs * self.bucket_batches
            out = []
            for start in range(0, n, chunk):
                idx = order[start : start + chunk]
                idx = idx[torch.argsort(self.lengths[idx], stable=True)]
                out.extend(idx[i : i + bs].tolist() for i in range(0, len(idx), bs))
            # a short batch may fall inside a chunk boundary; keep it, then shuffle batch order
            out = [out[i] for i in torch.randperm(len(out), generator=gen).tolist()]
        if self.drop_last:
            out = [b for b in out if len(b) == bs]
        return out

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)
        self.epoch += 1  # next pass over the loader is the next epoch
        return iter(batches)


def make_loader(
    dataset: Dataset,
    collate: Callable[[list], Any],
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    length_bucketing: bool = False,
    *,
    length_fn: Callable[[Any], int] = text_length,
    bucket_batches: int = 50,
    drop_last: bool = False,
    num_workers: int = 0,
) -> DataLoader:
    """A DataLoader over `dataset` with seeded per-epoch shuffling and optional length bucketing."""
    lengths = [length_fn(dataset[i]) for i in range(len(dataset))] if length_bucketing else None
    sampler = SeededBatchSampler(
        len(dataset),
        batch_size,
        shuffle=shuffle,
        seed=seed,
        lengths=lengths,
        bucket_batches=bucket_batches,
        drop_last=drop_last,
    )
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers)


def param_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool = False) -> list[dict]:
    """AdamW groups: no weight decay on biases, norms, embeddings' position/cls tokens unless asked."""
    skip = set()
    if hasattr(model, "no_weight_decay"):
        skip = set(model.no_weight_decay())
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if not decay_norm_and_bias and (p.ndim <= 1 or name in skip):
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _set_loader_epoch(loader: Any, epoch: int) -> None:
    sampler = getattr(loader, "batch_sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    elif hasattr(getattr(loader, "sampler", None), "set_epoch"):
        loader.sampler.set_epoch(epoch)


def train_classifier(
    model: nn.Module,
    train_loader: Any,
    cfg: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    eval_loader: Any = None,
    on_epoch_end: EpochHook | None = None,
    augment: Callable[[Any], Any] | None = None,
    loss_fn: LossHook | None = None,
    step_callback: StepHook | None = None,
    epoch_callback: Callable[[int], None] | None = None,
    num_threads: int | None = None,
    resume: dict | None = None,
    on_checkpoint: Callable[[dict], None] | None = None,
) -> dict:
    """Train `model` in place on `(inputs, labels)` batches; returns a summary with per-epoch history.

    Hooks: `augment(inputs)` transforms training inputs on `device`;
    `loss_fn(model, inputs, labels, logits)` returns an extra loss added to the
    cross-entropy; `step_callback(step, total_steps)` runs before each step;
    `on_epoch_end(epoch, record)` sees each epoch's record and may return True to stop;
    `epoch_callback(epoch)` runs before each epoch. `on_checkpoint(state)` receives, after
    every epoch, the state (`epoch`, `step`, `optimizer`, `scheduler`, `rng`, `history`)
    that `resume=` accepts to continue an interrupted run to the same result.
    Padding tokens are marked (token_mask_context) so quantizers and losses skip them.
    """
    with thread_limit(num_threads), seeded(cfg.seed):
        model.to(device)
        steps_per_epoch = len(train_loader)
        if steps_per_epoch == 0:
            raise ValueError("train_loader yields no batches; check the dataset size and batch_size")
        total = cfg.epochs * steps_per_epoch
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        optimizer = torch.optim.AdamW(
            param_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias), lr=cfg.lr, betas=cfg.betas
        )
        warmup = int(round(cfg.warmup_frac * total))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_schedule(min(s, total), total, warmup))
        run = _Run(model, cfg, optimizer, scheduler, device, total, augment, loss_fn, step_callback)
        history: list[dict] = []
        first_epoch = 0
        if resume is not None:
            optimizer.load_state_dict(resume["optimizer"])
            scheduler.load_state_dict(resume["scheduler"])
            torch.set_rng_state(resume["rng"])
            run.step, first_epoch, history = resume["step"], resume["epoch"], list(resume["history"])
        start = time.perf_counter()
        stopped_early = False
        for epoch in range(first_epoch, cfg.epochs):
            if run.step >= total:
                break
            model.train()
            _set_loader_epoch(train_loader, epoch)
            if epoch_callback is not None:
                epoch_callback(epoch)
            record = _train_epoch(run, train_loader, epoch)
            if eval_loader is not None and cfg.eval_every_epoch:
                record["eval_accuracy"] = evaluate(model, eval_loader, device)
            history.append(record)
            log.info("epoch %d/%d: loss %.4f, train acc %.3f, %.1f s", epoch + 1, cfg.epochs, record["train_loss"],
                     record["train_accuracy"], record["seconds"])
            stop = on_epoch_end is not None and on_epoch_end(epoch, record)
            if on_checkpoint is not None:
                on_checkpoint({
                    "epoch": epoch + 1, "step": run.step, "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "history": history,
                })
            if stop:
                stopped_early = True
                break
        result = {
            "steps": run.step, "total_steps": total, "epochs": len(history), "history": history,
            "train_loss": history[-1]["train_loss"] if history else float("nan"),
            "seconds": time.perf_counter() - start, "stopped_early": stopped_early,
        }
        if eval_loader is not None:
            if history and "eval_accuracy" in history[-1]:
                result["eval_accuracy"] = history[-1]["eval_accuracy"]
            else:
                result["eval_accuracy"] = evaluate(model, eval_loader, device)
        model.eval()
        return result


@dataclass
class _Run:
    """One training run's model, optimisation state, step counter and hooks."""

    model: nn.Module
    cfg: TrainConfig
    optimizer: torch.optim.Optimizer
    scheduler: Any
    device: torch.device | str
    total: int
    augment: Callable[[Any], Any] | None
    loss_fn: LossHook | None
    step_callback: StepHook | None
    step: int = 0


def _train_epoch(run: _Run, loader: Any, epoch: int) -> dict:
    """One pass over `loader` (stopping at `run.total` steps); returns the epoch's record."""
    epoch_start = time.perf_counter()
    loss_sum = extra_sum = 0.0
    correct = seen = 0
    for inputs, labels in loader:
        if run.step >= run.total:
            break
        if run.step_callback is not None:
            run.step_callback(run.step, run.total)
        inputs, labels = move_to(inputs, run.device), labels.to(run.device)
        if run.augment is not None:
            inputs = run.augment(inputs)
        loss, extra, logits = _train_step(run, inputs, labels)
        extra_sum += extra * len(labels)
        loss_sum += float(loss.detach()) * len(labels)
        correct += int((logits.detach().argmax(-1) == labels).sum())
        seen += len(labels)
    record = {
        "epoch": epoch, "step": run.step, "train_loss": loss_sum / max(seen, 1),
        "train_accuracy": correct / max(seen, 1), "lr": run.optimizer.param_groups[0]["lr"],
        "seconds": time.perf_counter() - epoch_start,
    }
    if run.loss_fn is not None:
        record["extra_loss"] = extra_sum / max(seen, 1)
    return record


def _train_step(run: _Run, inputs: Any, labels: torch.Tensor) -> tuple[torch.Tensor, float, torch.Tensor]:
    """One optimisation step; returns (total loss, the hook's extra loss, logits)."""
    with token_mask_context(token_mask(inputs)):
        logits = forward_logits(run.model, inputs)
    loss = F.cross_entropy(logits, labels, label_smoothing=run.cfg.label_smoothing)
    extra = 0.0
    if run.loss_fn is not None:
        extra_loss = run.loss_fn(run.model, inputs, labels, logits)
        extra = float(extra_loss.detach())
        loss = loss + extra_loss
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite training loss {float(loss.detach())} at step {run.step}; lower lr")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.cfg.grad_clip is not None:
        nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.step += 1
    return loss, extra, logits


def evaluate(
    model: nn.Module, loader: Any, device: torch.device | str = "cpu", num_threads: int | None = None
) -> float:
    """Top-1 accuracy of `model` over `(inputs, labels)` batches, in eval mode without autograd."""
    with thread_limit(num_threads):
        model.eval()
        correct = total = 0
        with torch.inference_mode():
            for inputs, labels in loader:
                logits = forward_logits(model, move_to(inputs, device))
                correct += int((logits.argmax(-1).cpu() == labels.cpu()).sum())
                total += len(labels)
        if total == 0:
            raise ValueError("evaluate got an empty loader; nothing to score")
        return correct / total
