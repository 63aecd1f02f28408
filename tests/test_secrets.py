"""The masker hides credential values in log records and relayed lines."""

from __future__ import annotations

import io
import logging

from hypothesis import given
from hypothesis import strategies as st

from hpo_tools.secrets import SecretMasker, credential_env_names, is_credential_name


def test_mask_replaces_every_occurrence_of_a_secret():
    masker = SecretMasker(["AKIDsecret1"])
    # Both occurrences must go: a relayed line may repeat the key.
    assert masker.mask("id=AKIDsecret1 again AKIDsecret1") == "id=*** again ***"


def test_longer_secret_containing_a_shorter_one_is_masked_whole():
    masker = SecretMasker(["abcd", "abcdefgh"])
    # Masking "abcd" first would leave "efgh" of the longer secret visible.
    assert masker.mask("x abcdefgh y") == "x *** y"


def test_very_short_values_are_not_treated_as_secrets():
    masker = SecretMasker(["1", "", None])  # type: ignore[list-item]
    # "1" would garble every number in the log while hiding nothing.
    assert masker.mask("step 1 of 10") == "step 1 of 10"
    assert masker.secret_count == 0


def test_add_env_masks_values_of_named_environment_variables():
    masker = SecretMasker()
    masker.add_env(["MY_SECRET", "MISSING"], environ={"MY_SECRET": "envsecretvalue"})
    assert masker.mask("value envsecretvalue") == "value ***"


def test_logging_filter_masks_formatted_message_and_arguments():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    masker = SecretMasker(["topsecretkey"])
    handler.addFilter(masker)
    logger = logging.getLogger("test_secrets.filter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("key is %s", "topsecretkey")
    finally:
        logger.removeHandler(handler)
    # The secret arrives as a %-argument; the filter must mask after formatting.
    assert "topsecretkey" not in stream.getvalue()
    assert "key is ***" in stream.getvalue()


def test_logging_filter_masks_exception_text():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretMasker(["exceptionsecret"]))
    logger = logging.getLogger("test_secrets.exc")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ValueError("bad key exceptionsecret")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    # Tracebacks carry exception messages, which may quote the secret.
    assert "exceptionsecret" not in stream.getvalue()
    assert "ValueError: bad key ***" in stream.getvalue()


def test_credential_names_are_recognised():
    assert is_credential_name("accessKeySecret")
    assert is_credential_name("accessKeyID")
    assert is_credential_name("OSS_ACCESS_KEY_ID")
    assert is_credential_name("GITHUB_TOKEN")
    # API keys are credentials too (the common *_API_KEY env vars).
    assert is_credential_name("DASHSCOPE_API_KEY")
    assert is_credential_name("apiKey")
    assert is_credential_name("SSH_PRIVATE_KEY")
    assert not is_credential_name("endpoint")
    assert not is_credential_name("project_name")


def test_credential_env_names_lists_only_credential_variables():
    names = credential_env_names({"ODPS_ACCESS_ID": "x", "HOME": "/root", "MY_PASSWORD": "p"})
    assert names == ["MY_PASSWORD", "ODPS_ACCESS_ID"]



@given(
    secrets=st.lists(st.text(min_size=4, max_size=12), min_size=1, max_size=4),
    filler=st.lists(st.text(max_size=8), min_size=1, max_size=5),
)
def test_masked_text_contains_no_secret(secrets, filler):
    masker = SecretMasker(secrets)
    text = "".join(f + s for f, s in zip(filler, secrets * len(filler)))
    masked = masker.mask(text)
    # Whatever surrounds them, no secret survives masking (overlaps included).
    for secret in secrets:
        if secret.strip() and len(secret.strip()) >= 4:
            assert secret.strip() not in masked
