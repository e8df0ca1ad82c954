import pytest

from r1.config import build_config, load_config
from r1.errors import R1Error


def test_defaults_and_overrides():
    cfg = build_config({}, ["optim.lr=3e-5", "rollout.stop=['</answer>', '\\n\\n']", "task.params.digits=3"])
    assert cfg.optim.lr == 3e-5
    assert cfg.task.params == {"digits": 3}
    assert cfg.rollout.group_size == 8


@pytest.mark.parametrize("overrides,message", [
    (["optim.lrr=1"], "unknown key 'optim.lrr'"),
    (["optim.lr=fast"], "optim.lr: Input should be a valid number"),
    (["rewards={}"], "at least one reward"),
    (["reward_params.language.target=zh"], "'language' is not one of the rewards in use"),
    (["rollout.group_size=1"], "rollout.group_size"),
    (["algorithm.advantage=ppo"], "algorithm.advantage"),
    (["lr"], "expected key=value"),
])
def test_bad_config_is_one_clear_line(overrides, message):
    with pytest.raises(R1Error) as e:
        build_config({}, overrides)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_recipe_errors_name_the_file(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("optim:\n  lr: [1\n")
    with pytest.raises(R1Error, match="r.yaml:"):
        load_config(bad)
    bad.write_text("optim:\n  learning_rate: 1\n")
    with pytest.raises(R1Error, match="r.yaml: config: unknown key 'optim.learning_rate'"):
        load_config(bad)
    with pytest.raises(R1Error, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_recipes_and_presets_validate():
    from pathlib import Path

    from r1.presets import preset_names, preset_path

    root = Path(__file__).resolve().parents[1]
    from r1.config import read_yaml
    from r1.pipeline.distill import parse_recipe

    for recipe in sorted((root / "recipes").glob("*.yaml")):
        if recipe.name.startswith("distill-"):
            parse_recipe(read_yaml(recipe), source=str(recipe))
        elif recipe.name.startswith("sft-"):
            from r1.config import build_sft_config

            build_sft_config(read_yaml(recipe), source=str(recipe))
        elif recipe.name.startswith("r1-pipeline-"):
            from r1.pipeline.runner import Pipeline

            Pipeline(read_yaml(recipe), "/nonexistent", source=str(recipe))  # validates; runs nothing
        else:
            load_config(recipe)
    assert {"smollm2", "reasoning", "tiny"} <= set(preset_names())
    assert (root / "recipes" / "r1-zero-reasoning-smollm2.yaml").resolve() == preset_path("reasoning").resolve()
    for name in preset_names():
        load_config(preset_path(name))


def test_set_reward_adds_to_the_defaults_but_a_recipe_mapping_replaces_them():
    cfg = build_config({}, ["rewards.format=2"])
    assert cfg.rewards == {"accuracy": 1.0, "format": 2.0, "tag_count": 0.5}
    cfg = build_config({"rewards": {"accuracy": 1.0}}, [])
    assert cfg.rewards == {"accuracy": 1.0}


def test_every_config_field_is_described():
    """Each field is documented once, in its Field(description=...), where `r1 ... --help`
    and the docs read it."""
    import inspect

    from pydantic import BaseModel

    import r1.config
    import r1.eval.runner
    import r1.pipeline.generate
    import r1.rollout.sampler

    bare = [f"{name}.{field}" for mod in (r1.config, r1.rollout.sampler, r1.eval.runner, r1.pipeline.generate)
            for name, cls in inspect.getmembers(mod, inspect.isclass)
            if issubclass(cls, BaseModel) and cls.__module__ == mod.__name__
            for field, info in cls.model_fields.items() if not (info.description or "").strip()]
    assert not bare, bare


def test_split_seed_fixes_the_heldout_problems_across_run_seeds():
    from r1.data.tasks import build_task

    def heldout(*sets):
        cfg = build_config({"task": {"name": "arithmetic", "train_size": 50, "heldout_size": 20}}, list(sets))
        _, held = build_task(cfg).splits(cfg.task.train_size, cfg.task.heldout_size)
        return [e.question for e in held]

    # without it the split follows the run's seed; with it every run seed sees the same problems
    assert heldout("seed=0") != heldout("seed=1")
    assert heldout("seed=0", "task.split_seed=7") == heldout("seed=1", "task.split_seed=7")
    assert heldout("seed=7") == heldout("seed=3", "task.split_seed=7")
