import pytest

from bonetumor import config, paths


@pytest.mark.parametrize("profile", config.PROFILES)
def test_every_profile_loads(profile):
    settings = config.load(profile)
    assert settings.profile == profile
    assert profile in settings.tag()


def test_smoke_profile_is_small():
    smoke, quick = config.load("smoke"), config.load("quick")
    assert smoke.data.phantom_images < quick.data.phantom_images
    assert smoke.model.width < 1 and "width" in smoke.tag()
    assert "synthetic phantom" in smoke.tag()


def test_ablations_profile_is_the_quick_recipe_with_every_comparator_and_ablation():
    """make ablations' profile differs from quick only where its header says: the schedule, the comparators
    and ablations it runs, and what only other notebooks read (centre hold-out, targets)."""
    quick = config.load("quick").model_dump(mode="json")
    ablations = config.load("ablations").model_dump(mode="json")
    assert ablations["train"].pop("epochs") == 12 and quick["train"].pop("epochs") == 24
    assert ablations["comparators"].pop("architectures") == list(config.COMPARATORS)
    assert ablations["ablations"].pop("names") == list(config.ABLATIONS)
    quick["comparators"].pop("architectures")
    quick["ablations"].pop("names")
    for settings in (quick, ablations):
        for key in ("profile", "centre_holdout", "targets"):
            settings.pop(key)
    assert ablations == quick


def test_data_path_switches_to_btxrd(tmp_path):
    settings = config.load("smoke", data=tmp_path)
    assert settings.data.source == "btxrd" and settings.data_path == tmp_path.resolve()
    assert "BTXRD" in settings.tag()
    assert config.load("smoke", data="").data.source == "phantom"


def test_phantom_path_names_what_is_in_it():
    settings = config.load("smoke")
    assert settings.data_path.parent == paths.DATA
    assert f"{settings.data.phantom_images}" in settings.data_path.name


def test_unknown_key_is_an_error_naming_the_file():
    with pytest.raises(ValueError, match="smoke.yaml"):
        config.load("smoke", {"train": {"epochz": 3}})


def test_fractions_must_sum_to_one():
    with pytest.raises(ValueError, match="sum to"):
        config.load("smoke", {"data": {"train_fraction": 0.9}})


def test_missing_profile_names_the_file():
    with pytest.raises(FileNotFoundError, match="nosuch.yaml"):
        config.load("nosuch")


def test_btxrd_without_path_is_a_clear_error():
    settings = config.load("smoke", {"data": {"source": "btxrd"}})
    with pytest.raises(ValueError, match="DATA="):
        settings.data_path


def test_parse_overrides_reads_nested_keys_and_yaml_values():
    assert config.parse_overrides(["train.lr=0.005", "model.anchor_sizes=[8, 16]", "data.preprocess=true"]) == {
        "train": {"lr": 0.005}, "model": {"anchor_sizes": [8, 16]}, "data": {"preprocess": True}}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        config.parse_overrides(["train.lr"])
