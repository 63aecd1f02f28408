from __future__ import annotations

from hpo_tools.errors import did_you_mean


def test_did_you_mean_names_the_closest_candidate() -> None:
    # A one-letter typo must point at the real field.
    assert did_you_mean("embeding_dim", ["embedding_dim", "hash_bucket_size"]) == (
        " (did you mean 'embedding_dim'?)"
    )


def test_did_you_mean_is_empty_when_nothing_is_close() -> None:
    # Unrelated names must not produce a misleading hint.
    assert did_you_mean("zzz", ["embedding_dim"]) == ""
