"""The one classification of params `train` keys (mbmt.config.TRAIN_KEYS) against the schema, and
the two lists that follow from it: the run identity's and the train stage's params."""

from __future__ import annotations

from mbmt.config import (AS_WRITTEN, EFFECTIVE, EXECUTION, RESULT, TRAIN_EXECUTION_KEYS, TRAIN_KEYS,
                         TRAIN_RESULT_KEYS, WEIGHTING, schema)


def test_every_schema_train_key_is_classified():
    """A key added to the schema's `train` section must be classified (result or execution) here
    before anything runs with it: otherwise it silently neither re-runs training nor names a run."""
    section = schema()["properties"]["train"]
    keys = list(section["properties"])
    unclassified = [key for key in keys if key not in TRAIN_KEYS]
    assert not unclassified, (f"train keys {unclassified} of src/mbmt/schemas/params.schema.yaml are not in "
                              "mbmt.config.TRAIN_KEYS: add each as RESULT (it changes the weights or the log) "
                              "or EXECUTION (where and how fast)")
    stale = [key for key in TRAIN_KEYS if key not in keys]
    assert not stale, f"mbmt.config.TRAIN_KEYS classifies {stale}, which the schema's train section lacks"
    assert set(section["required"]) == set(keys)
    # The schema's order, so that the stage's params in dvc.yaml keep theirs.
    assert list(TRAIN_KEYS) == keys


def test_each_key_is_result_or_execution_and_says_how_a_result_is_recorded():
    for key, entry in TRAIN_KEYS.items():
        assert entry.kind in (RESULT, EXECUTION), key
        assert entry.why, key
        assert (entry.recorded in (AS_WRITTEN, WEIGHTING, EFFECTIVE)) == (entry.kind == RESULT), key
    assert set(TRAIN_RESULT_KEYS) | set(TRAIN_EXECUTION_KEYS) == set(TRAIN_KEYS)
    assert not set(TRAIN_RESULT_KEYS) & set(TRAIN_EXECUTION_KEYS)


def test_the_train_stage_depends_on_the_result_keys_only():
    from mbmt.stage_specs import STAGE_PARAMS

    train_keys = [key.removeprefix("train.") for key in STAGE_PARAMS["train"] if key.startswith("train.")]
    assert train_keys == list(TRAIN_RESULT_KEYS)
    assert "train" not in STAGE_PARAMS["train"]  # not the whole section: execution keys re-run nothing


def test_the_run_identity_records_every_result_key_and_no_execution_key():
    """run_settings' train block: the as-written keys by name, the weighting with its options (the
    strategies' params_keys), amp and channels_last as the effective values."""
    from mbmt.training.checkpoint import RESULT_KEYS
    from mbmt.training.weighting import WEIGHTINGS

    weighting_keys = {"weighting"} | {key for strategy in WEIGHTINGS.values() for key in strategy.params_keys}
    assert weighting_keys == {key for key, entry in TRAIN_KEYS.items() if entry.recorded == WEIGHTING}
    assert set(RESULT_KEYS) | weighting_keys | {"amp", "channels_last"} == set(TRAIN_RESULT_KEYS)
    assert {key for key, entry in TRAIN_KEYS.items() if entry.recorded == EFFECTIVE} == {"amp", "channels_last"}
    # Existing runs keep their identity's meaning: the keys it has recorded as written since format 1.
    assert RESULT_KEYS == ("epochs", "batch_size", "lr", "weight_decay", "lr_step", "lr_gamma", "augment",
                           "steps_per_epoch", "val_every")


def test_the_docs_list_the_classification():
    """docs/training.md's table and docs/workflow.md's train row name the keys of each kind."""
    from conftest import REPO

    training = (REPO / "docs" / "training.md").read_text()
    assert f"| result (run identity, re-runs the train stage) | `{', '.join(TRAIN_RESULT_KEYS)}` |" in training
    assert f"| execution (neither) | `{', '.join(TRAIN_EXECUTION_KEYS)}` |" in training
    workflow = (REPO / "docs" / "workflow.md").read_text()
    assert f"not the execution keys `{', '.join(TRAIN_EXECUTION_KEYS)}`" in workflow
