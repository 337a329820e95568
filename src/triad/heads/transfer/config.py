"""Config schema of the transfer head: ``cfg.data.transfer`` and ``cfg.model.transfer``.

The schema holds types, bounds and what each key means; ``conf/`` sets every value. The default
profile (``conf/data/transfer/mnist5k_fewlabel.yaml`` and ``conf/model/transfer/small.yaml``) is an
ImageNet EfficientNet-lite0 fine-tuned by gradual unfreezing on ten labelled MNIST digits per class,
at 32x32 so that it runs in seconds on two CPU cores.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from triad.schema import DataKeys, OptimConfig, StrictModel

Task = Literal["mnist5k_fewlabel", "pneumoniamnist", "bible_sections", "image_folder", "text_csv"]
OWN_TASKS = ("image_folder", "text_csv")  # the user's own files, at ``path``
Backbone = Literal["efficientnet_lite0", "minilm", "registry", "timm", "hf"]
Strategy = Literal["linear_probe", "partial", "full", "gradual", "lora"]


class TransferData(DataKeys):
    """Which task, and how much of it is labelled.

    The training *pool* is every training example the task has (capped at ``pool_per_class``; ``null``: no cap);
    the model trains on a stratified, seeded subset of ``labels_per_class`` of them (``null``: all),
    which is the few-label setting. Tasks with official splits (PneumoniaMNIST) keep them; the
    built-in others are split here, stratified, with ``val_per_class`` and ``test_per_class`` examples.

    The user's own data (``task: image_folder`` or ``text_csv``, read from ``path``):

    - ``image_folder``: ``path/<class>/*.png|jpg|jpeg`` or ``path/{train,val,test}/<class>/...``. Every
      image is converted to ``channels`` (1: grey, 3: RGB) and resized to ``image_size`` x ``image_size``.
    - ``text_csv``: a UTF-8 CSV file with the header ``text,label`` and optionally ``split``.

    Both split by a hash of each example's name (its path relative to ``path``, or its text), ``val_fraction``
    and ``test_fraction`` of it going to val and test, so adding examples never moves the others; a
    ``split`` the user gives (folders or column) is kept instead. Keys that do not apply to a task are ``null``.
    """

    task: Task
    labels_per_class: int | None = Field(ge=1)
    pool_per_class: int | None = Field(ge=1)
    val_per_class: int | None = Field(ge=1)  # built-in tasks split here (mnist5k_fewlabel, bible_sections)
    test_per_class: int | None = Field(ge=1)
    split_seed: int  # seeds the split and the labelled subset
    image_size: int | None = Field(ge=8, le=1024)  # image_folder: the side of the square images written
    channels: Literal[1, 3] | None  # image_folder: 1 (grey) or 3 (RGB)
    val_fraction: float | None = Field(gt=0, lt=1)  # own data: the share of examples held out for validation
    test_fraction: float | None = Field(gt=0, lt=1)  # own data: the share held out for test

    @model_validator(mode="after")
    def _keys_the_task_needs(self) -> TransferData:
        needs = {
            "mnist5k_fewlabel": ("val_per_class", "test_per_class"),
            "bible_sections": ("val_per_class", "test_per_class"),
            "image_folder": ("path", "image_size", "channels", "val_fraction", "test_fraction"),
            "text_csv": ("path", "val_fraction", "test_fraction"),
        }.get(self.task, ())
        unset = [key for key in needs if getattr(self, key) is None]
        if unset:
            raise ValueError(f"task {self.task} needs {', '.join(unset)} (set data.transfer.<key>)")
        if self.task in OWN_TASKS and self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"val_fraction ({self.val_fraction}) + test_fraction ({self.test_fraction}) leave nothing to train on; "
                "their sum must be below 1"
            )
        return self


Arm = Literal["scratch", "imagenet", "ssl", "imagenet+ssl"]
Start = Literal["scratch", "imagenet"]


class PretrainConfig(StrictModel):
    """The ``pretrain`` step: self-supervised pretraining of EfficientNet-lite0 on the task's unlabelled images.

    Every training image of the prepared task (the pool, labels unused; never val or test) is a training
    example. Each step draws ``batch_size`` images, makes two random views of each (``augment``: a random
    resized crop keeping ``crop_scale`` to 1 of the area, a rotation of up to ``rotation`` degrees, brightness
    and contrast jitter of up to ``brightness`` and ``contrast``, a horizontal flip only if ``flip``) and
    trains the network to tell which views come from the same image:

    - ``simclr`` (Chen et al., 2020): NT-Xent, a cross-entropy over every pair of views in the batch at
      ``temperature``;
    - ``byol`` (Grill et al., 2020): an online network predicts a target network's projection of the other
      view; the target is an exponential moving average of the online one (momentum ``ema``).

    Both put a projection MLP (1280 -> ``hidden_dim`` -> ``projection_dim``) on the pooled features; it is
    dropped after pretraining. One network is pretrained per entry of ``starts``: ``scratch`` (random
    initialisation) and/or ``imagenet`` (the ImageNet weights), each for ``steps`` AdamW steps at ``lr`` (cosine
    decay). ``image_size`` is the side the views are made at (``null``: ``model.transfer.image_size``; smaller
    is cheaper, the convolutions do not depend on it).
    """

    objective: Literal["simclr", "byol"]
    starts: list[Start] = Field(min_length=1)
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=2)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    image_size: int | None = Field(ge=16, le=512)
    temperature: float = Field(gt=0)
    ema: float = Field(ge=0, lt=1)
    hidden_dim: int = Field(ge=1)
    projection_dim: int = Field(ge=1)
    crop_scale: float = Field(gt=0, le=1)
    rotation: float = Field(ge=0, le=45)
    brightness: float = Field(ge=0, lt=1)
    contrast: float = Field(ge=0, lt=1)
    flip: bool  # only where a mirrored image is still the same class (not for digits or text)


class EvidenceConfig(StrictModel):
    """The ``evidence`` step: where the backbone's starting weights come from, by label fraction.

    Every arm is the same EfficientNet-lite network at ``image_size``; ``arms`` says which run:

    - ``scratch``: randomly initialised, every layer trained on the images;
    - ``imagenet``: the ImageNet weights;
    - ``ssl``: self-supervised on the task's own unlabelled images from a random start (the ``pretrain``
      step, ``model.transfer.pretrain``);
    - ``imagenet+ssl``: the ImageNet weights, then self-supervised the same way.

    The three pretrained arms share one recipe: their lowest ``frozen_groups`` layer groups stay frozen
    (their outputs are computed once per arm and cached) and the rest fine-tunes. The scratch arm's channels are
    scaled by ``scratch_width`` (1.0, the default, is the same network; narrower is cheaper but no longer a
    like-for-like comparison, and the evidence's caveats say so).
    ``class_balance`` weights both arms' loss by inverse class frequency (skewed tasks: PneumoniaMNIST's
    training split is 90% pneumonia).

    Each arm trains once per label ``fraction`` (of the pool, stratified) and seed in ``seeds``, on a
    pool first capped at ``pool_per_class`` examples per class (``null``: the whole pool), with AdamW
    at ``lr``, ``batch_size`` and ``max_epochs``. ``target_accuracy`` is the validation accuracy whose
    first epoch is reported as the epochs (and seconds) to target.
    """

    arms: list[Arm] = Field(min_length=1)
    fractions: list[float] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    pool_per_class: int | None = Field(ge=1)
    frozen_groups: int = Field(ge=0, le=9)
    scratch_width: float = Field(gt=0, le=1.0)
    max_epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    target_accuracy: float = Field(gt=0, le=1.0)
    class_balance: bool

    @model_validator(mode="after")
    def _fractions_in_range(self) -> EvidenceConfig:
        bad = [f for f in self.fractions if not 0 < f <= 1]
        if bad:
            raise ValueError(f"evidence fractions must lie in (0, 1], got {bad}")
        return self


class LoraConfig(StrictModel):
    """The ``lora`` section (strategy=lora): low-rank adapters (Hu et al., 2021) added through peft.

    r:       the adapters' rank.
    alpha:   their scale: the low-rank update is multiplied by ``alpha / r``.
    dropout: dropout on the adapters' input.
    targets: the backbone layers (module names, e.g. the attention's ``query`` and ``value``) that get
             adapters.
    """

    r: int = Field(ge=1)
    alpha: float = Field(gt=0)
    dropout: float = Field(ge=0, lt=1)
    targets: list[str] = Field(min_length=1)


class TransferModel(OptimConfig):
    """The backbone, the fine-tuning strategy and the input adaptation.

    backbone:       ``efficientnet_lite0`` (ImageNet weights from the installed package), ``minilm``
                    (all-MiniLM-L6-v2 sentence encoder), ``registry`` (a triad model by MLflow URI,
                    ``backbone_name: models:/triad-translator@champion``), or the optional ``timm`` /
                    ``hf`` hub names given in ``backbone_name`` (need those packages and internet).
    pretrained:     start from the backbone's pretrained weights (``false``: the same network, randomly
                    initialised).
    strategy:       ``linear_probe`` (backbone frozen), ``partial`` (the ``frozen_groups`` lowest
                    backbone groups frozen, the rest trains from the start), ``full`` (everything
                    trains from the start), ``gradual`` (layer groups open one by one in ``unfreeze_order``, every
                    ``unfreeze_every`` epochs), ``lora`` (low-rank adapters through peft, set in the
                    ``lora`` section; text).
    layer_lr_decay: discriminative learning rates: the k-th layer group below the classifier
                    trains at ``lr * layer_lr_decay**k`` (1.0 = one rate for all).
    freeze_batchnorm: batch norm keeps its pretrained statistics in every group (few labels).
    image_size:     images are resized to this square size and given three channels.
    max_length:     text backbones: texts are truncated to this many tokens.
    dropout:        dropout on the backbone's features, before the new classifier.
    class_balance:  weight the training loss by inverse class frequency, so that a skewed training
                    split (PneumoniaMNIST's is 90% pneumonia) does not teach its prior.
    shift_augment:  training images are shifted by up to this many pixels in each direction
                    (edge-padded), a fresh offset per image and step; 0 turns it off.
    start:          where an efficientnet_lite0 backbone's weights come from when training starts:
                    ``backbone`` (its own: ImageNet, or random with ``pretrained: false``), ``ssl`` or
                    ``imagenet+ssl`` (the ``pretrain`` step's network from that start), or ``best_on_val``:
                    the pretrained evidence arm (imagenet, ssl, imagenet+ssl) with the best mean validation
                    score at the evidence's label count nearest the training split's (so the registered
                    model starts from what the validation split prefers; never chosen on test); with another
                    backbone, ``best_on_val`` is ``backbone`` (the evidence compares EfficientNet-lite0 arms).
    pretrain:       the self-supervised ``pretrain`` step (``PretrainConfig``).
    """

    backbone: Backbone
    backbone_name: str | None
    pretrained: bool
    strategy: Strategy
    unfreeze_order: list[str] | None  # null: from the top (output side) down
    unfreeze_every: int = Field(ge=1)
    frozen_groups: int = Field(ge=0)  # strategy=partial: how many backbone groups, from the input side
    layer_lr_decay: float = Field(gt=0, le=1.0)
    freeze_batchnorm: bool
    lora: LoraConfig
    image_size: int = Field(ge=16, le=512)
    class_balance: bool
    shift_augment: int = Field(ge=0, le=16)
    max_length: int = Field(ge=8, le=512)
    dropout: float = Field(ge=0, lt=1)
    start: Literal["backbone", "ssl", "imagenet+ssl", "best_on_val"]
    pretrain: PretrainConfig
    evidence: EvidenceConfig

    @model_validator(mode="after")
    def _backbone_name_given(self) -> TransferModel:
        if self.backbone in ("registry", "timm", "hf") and not self.backbone_name:
            raise ValueError(f"backbone {self.backbone!r} needs backbone_name (a model URI or hub name)")
        if self.start in ("ssl", "imagenet+ssl") and self.backbone != "efficientnet_lite0":
            raise ValueError(
                f"start={self.start!r} needs backbone efficientnet_lite0 (the pretrain step's network), not "
                f"{self.backbone!r}: set model.transfer.start=backbone"
            )
        return self


# What the head registry reads (triad.heads).
Data = TransferData
Model = TransferModel
