"""recipes.config: YAML + overrides onto typed dataclasses, with errors that name file and key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import pytest
import yaml

from recipes.config import ConfigError, config_to_dict, load_config, save_config


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, ...] = (0.9, 0.95)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"


@dataclass
class Model:
    hidden_size: int = 64
    num_layers: int = 2
    tie_embeddings: bool = False


class SelfChecking:
    """Stands in for ModelConfig: a non-dataclass that validates its own mapping."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    @classmethod
    def from_config_dict(cls, d: dict, where: str) -> "SelfChecking":
        if "vocab_size" in d and not isinstance(d["vocab_size"], int):
            raise ValueError(f"{where}.vocab_size: must be an int")
        return cls(where=where, **d)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.kwargs.items() if k != "where"}


@dataclass
class Stage:
    name: str = "run"
    seed: int = 0
    out_dir: Path = Path("runs/x")
    model: Model = field(default_factory=Model)
    optim: Optim = field(default_factory=Optim)
    tags: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    trl: dict[str, Any] = field(default_factory=dict)
    max_steps: Optional[int] = None
    warmup: int | None = 10
    backbone: SelfChecking | None = None


def write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_only():
    cfg = load_config(Stage, None)
    assert cfg == Stage()


def test_nested_dataclasses_and_types(tmp_path):
    path = write(
        tmp_path,
        """
name: demo
out_dir: /tmp/out
model: {hidden_size: 128, tie_embeddings: true}
optim: {lr: 3e-4, betas: [0.8, 0.9], schedule: linear}
tags: [a, b]
weights: {math: 1, code: 0.5}
max_steps: 5
warmup: null
""",
    )
    cfg = load_config(Stage, path)
    assert cfg.name == "demo"
    assert cfg.out_dir == Path("/tmp/out")
    assert cfg.model == Model(hidden_size=128, num_layers=2, tie_embeddings=True)
    # `3e-4` is a float in YAML 1.2; plain PyYAML would have made it the string '3e-4'.
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.optim.schedule == "linear"
    assert cfg.tags == ["a", "b"]
    assert cfg.weights == {"math": 1.0, "code": 0.5}
    assert isinstance(cfg.weights["math"], float)
    assert cfg.max_steps == 5
    assert cfg.warmup is None


@pytest.mark.parametrize(
    "override, attr, expected",
    [
        ("seed=3", ("seed",), 3),
        ("optim.lr=1e-3", ("optim", "lr"), 1e-3),
        ("optim.lr=2", ("optim", "lr"), 2.0),
        ("model.tie_embeddings=true", ("model", "tie_embeddings"), True),
        ("name=hello world", ("name",), "hello world"),
        ("tags=[x, y]", ("tags",), ["x", "y"]),
        ("max_steps=null", ("max_steps",), None),
        ("max_steps=7", ("max_steps",), 7),
        ("optim.schedule=constant", ("optim", "schedule"), "constant"),
        ("out_dir=runs/other", ("out_dir",), Path("runs/other")),
        ("weights.math=2.5", ("weights", "math"), 2.5),
        ("trl.gradient_checkpointing=true", ("trl", "gradient_checkpointing"), True),
    ],
)
def test_overrides(tmp_path, override, attr, expected):
    path = write(tmp_path, "seed: 1\noptim: {lr: 0.5}\nmax_steps: 3\n")
    cfg = load_config(Stage, path, [override])
    value = cfg
    for name in attr:
        value = value[name] if isinstance(value, dict) else getattr(value, name)
    assert value == expected
    assert type(value) is type(expected)


def test_override_wins_over_file_and_keeps_siblings(tmp_path):
    path = write(tmp_path, "model: {hidden_size: 32, num_layers: 4}\n")
    cfg = load_config(Stage, path, ["model.hidden_size=16"])
    assert (cfg.model.hidden_size, cfg.model.num_layers) == (16, 4)


def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    path = write(tmp_path, "model: {hiden_size: 32}\n")
    with pytest.raises(ConfigError) as e:
        load_config(Stage, path)
    msg = str(e.value)
    assert str(path) in msg and "hiden_size" in msg and "did you mean 'hidden_size'" in msg
    assert "model" in msg


def test_unknown_override_names_the_override():
    with pytest.raises(ConfigError, match=r"--set optim\.lrr=1.*'optim\.lrr'.*did you mean 'lr'"):
        load_config(Stage, None, ["optim.lrr=1"])


def test_malformed_override():
    with pytest.raises(ConfigError, match="expected key.path=value"):
        load_config(Stage, None, ["seed"])


def test_wrong_type_message(tmp_path):
    path = write(tmp_path, "model:\n  hidden_size: abc\n")
    with pytest.raises(ConfigError) as e:
        load_config(Stage, path)
    assert str(e.value) == f"{path}: model.hidden_size: expected int, got str ('abc')"


def test_wrong_type_from_override_blames_the_override(tmp_path):
    path = write(tmp_path, "seed: 1\n")
    with pytest.raises(ConfigError, match=r"^--set seed=abc: seed: expected int, got str"):
        load_config(Stage, path, ["seed=abc"])


@pytest.mark.parametrize(
    "text, needle",
    [
        ("seed: true\n", "seed: expected int, got bool"),  # bool is not an int
        ("optim: {lr: false}\n", "optim.lr: expected float, got bool"),
        ("optim: {schedule: step}\n", "expected one of ['cosine', 'linear', 'constant']"),
        ("tags: [a, 3]\n", "tags[1]: expected str, got int"),
        ("tags: a\n", "tags: expected list[str]"),
        ("weights: {math: x}\n", "weights.math: expected float"),
        ("model: 3\n", "model: expected a mapping for Model"),
        ("max_steps: 1.5\n", "max_steps: expected int"),
    ],
)
def test_type_errors(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=None) as e:
        load_config(Stage, path)
    assert needle in str(e.value) and str(path) in str(e.value)


def test_bad_yaml(tmp_path):
    path = write(tmp_path, "model: {hidden_size: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML") as e:
        load_config(Stage, path)
    assert str(path) in str(e.value)


def test_not_a_mapping(tmp_path):
    path = write(tmp_path, "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(Stage, path)


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="not found") as e:
        load_config(Stage, missing)
    assert str(missing) in str(e.value)
    assert isinstance(e.value, ValueError)


def test_section_selection(tmp_path):
    path = write(tmp_path, "sft: {seed: 1}\ngrpo: {seed: 2, model: {num_layers: x}}\n")
    assert load_config(Stage, path, section="sft").seed == 1
    assert load_config(Stage, path, section="eval") == Stage()  # absent section: defaults
    with pytest.raises(ConfigError) as e:
        load_config(Stage, path, section="grpo")
    assert str(e.value).startswith(f"{path}: grpo.model.num_layers: expected int")


def test_missing_required_field_is_an_error(tmp_path):
    @dataclass
    class Needs:
        data: str

    with pytest.raises(ConfigError, match="data"):
        load_config(Needs, write(tmp_path, "{}\n"))


def test_dict_any_passthrough(tmp_path):
    path = write(tmp_path, "trl: {bf16: true, lr_scheduler_kwargs: {min_lr: 0.0}, report_to: [wandb]}\n")
    cfg = load_config(Stage, path)
    assert cfg.trl == {"bf16": True, "lr_scheduler_kwargs": {"min_lr": 0.0}, "report_to": ["wandb"]}


def test_from_config_dict_hook(tmp_path):
    path = write(tmp_path, "backbone: {vocab_size: 300, hidden_size: 8}\n")
    cfg = load_config(Stage, path)
    assert isinstance(cfg.backbone, SelfChecking)
    assert cfg.backbone.kwargs["vocab_size"] == 300
    assert cfg.backbone.kwargs["where"] == f"{path}: backbone"

    bad = write(tmp_path, "backbone: {vocab_size: lots}\n", "bad.yaml")
    with pytest.raises(ConfigError, match=rf"^{bad}: backbone.vocab_size: must be an int$"):
        load_config(Stage, bad)
    # Below a self-validating class, override paths are the class's to check.
    cfg = load_config(Stage, None, ["backbone.anything=1"])
    assert cfg.backbone.kwargs["anything"] == 1


def test_save_load_round_trip(tmp_path):
    cfg = load_config(
        Stage,
        None,
        ["name=rt", "optim.lr=5e-5", "tags=[a]", "out_dir=runs/rt", "trl.bf16=true", "backbone.vocab_size=7"],
    )
    out = tmp_path / "sub" / "config.yaml"
    save_config(cfg, out)
    assert list(out.parent.iterdir()) == [out]  # no temp file left behind
    plain = yaml.safe_load(out.read_text())
    assert plain["out_dir"] == "runs/rt" and plain["backbone"] == {"vocab_size": 7}
    again = load_config(Stage, out)
    assert config_to_dict(again) == config_to_dict(cfg)
    assert again.optim == cfg.optim and again.model == cfg.model and again.out_dir == cfg.out_dir


def test_fixed_length_tuple_round_trips_and_checks_its_length(tmp_path):
    # pretrain's OptimConfig.betas is tuple[float, float]: the resolved config a stage saves must
    # load back (it did not: "supports tuple[X, ...] only")
    from pretrain.config import OptimConfig

    saved = tmp_path / "optim.yaml"
    save_config(OptimConfig(betas=(0.8, 0.99)), saved)
    assert load_config(OptimConfig, saved).betas == (0.8, 0.99)
    with pytest.raises(ConfigError, match="betas"):
        load_config(OptimConfig, write(tmp_path, "betas: [0.9, 0.95, 0.99]\n"))
    with pytest.raises(ConfigError, match=r"betas\[1\]"):
        load_config(OptimConfig, write(tmp_path, "betas: [0.9, fast]\n"))
