"""Secrets are never shown, whatever is wrong with them, and a secret that YAML does not
read as non-empty text is an error that says to quote it. Each case runs main.py and
checks that no four characters in a row of the secret appear in stdout, stderr or the
(unchanged) previous output."""

from __future__ import annotations

import pytest

from config import ConfigPaths, load_config
from tests.rejects import CLUSTER, NODES, BadInput

SECRET = "Zq8SeNtInEl"
QUOTE = "(expected the secret in double quotes; value not shown)"
NO_VALUE = (
    "has no value as YAML reads it (an unquoted &, *, !, # or | starts YAML syntax; "
    "expected the secret in double quotes, or remove the key)"
)
HINT = "(on the line of {key}: write the secret in double quotes)"
S = SECRET

# (the value as written after `key: `, the expected line after `{c}:`)
BAD_SECRETS = [
    (f"&{S}", "7: {key}: " + NO_VALUE),  # an anchor: silently empty before
    ("null", "7: {key}: " + NO_VALUE),
    ("~", "7: {key}: " + NO_VALUE),
    ("", "7: {key}: " + NO_VALUE),
    ('""', "7: {key}: is empty (expected the secret in double quotes, or remove the key)"),
    (
        "6e06",
        "7: {key}: YAML reads this value as a number or true/false (in YAML 1.1 or 1.2), not as text "
        + QUOTE,
    ),
    (
        "0o17",
        "7: {key}: YAML reads this value as a number or true/false (in YAML 1.1 or 1.2), not as text "
        + QUOTE,
    ),
    (
        "007",
        "7: {key}: YAML reads this value as a number or true/false (in YAML 1.1 or 1.2), not as text "
        + QUOTE,
    ),
    (
        "1e3",
        "7: {key}: YAML reads this value as a number or true/false (in YAML 1.1 or 1.2), not as text "
        + QUOTE,
    ),
    (
        "yes",
        "7: {key}: YAML reads this value as a number or true/false (in YAML 1.1 or 1.2), not as text "
        + QUOTE,
    ),
    ("84736251", "7: {key}: YAML reads this value as a number, not as text " + QUOTE),
    ("3.1415", "7: {key}: YAML reads this value as a number, not as text " + QUOTE),
    ("true", "7: {key}: YAML reads this value as true/false, not as text " + QUOTE),
    (f"[{S}]", "7: {key}: YAML reads this value as a list, not as text " + QUOTE),
    (f"{{a: {S}}}", "7: {key}: YAML reads this value as a mapping, not as text " + QUOTE),
    (f"*{S}", "7: alias (*name) to an anchor that is not defined above it " + HINT),
    (f"!{S} x", "7: explicit YAML tag (tags are not read here: remove it, and quote text) " + HINT),
    (f'"{S[:4]}\\q{S[4:]}"', "7: YAML syntax error, column {col}: found unknown escape character " + HINT),
    (f"{S}: x", "7: YAML syntax error, column {col}: mapping values are not allowed in this context " + HINT),
    (f"@{S}", "7: YAML syntax error, column {col}: found character that cannot start any token " + HINT),
    (f"`{S}", "7: YAML syntax error, column {col}: found character that cannot start any token " + HINT),
    (
        f"- {S}",
        "7: YAML syntax error, column {col}: block sequence entries are not allowed in this context " + HINT,
    ),
    (f'"{S}', "8: YAML syntax error, column 1: found unexpected end of stream"),
    (
        f'"{S[:4]}\x01{S[4:]}"',
        "7: control character in column {col} (YAML does not allow it; remove it) " + HINT,
    ),
]
# Where each syntax error is found, counted from the value's first column.
COLUMN = {
    f'"{S[:4]}\\q{S[4:]}"': 5,
    f"{S}: x": 11,
    f"@{S}": 0,
    f"`{S}": 0,
    f"- {S}": 0,
    f'"{S[:4]}\x01{S[4:]}"': 5,
}


@pytest.mark.parametrize("key", ["tfstate_password", "proxmox_api_token_secret"])
@pytest.mark.parametrize(("value", "expected"), BAD_SECRETS, ids=[repr(v) for v, _ in BAD_SECRETS])
def test_a_bad_secret_is_one_line_without_its_value(
    bad: BadInput, key: str, value: str, expected: str
) -> None:
    bad.write(CLUSTER + f"{key}: {value}\n", NODES)
    col = len(key) + 3 + COLUMN.get(value, 0)
    bad.reject(["{c}:" + expected.format(key=key, col=col)], secrets=(SECRET,))


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        # problems elsewhere, with a good secret in the file
        (
            f'tfstate_password: "{S}"\nproxmox_vm_advanced: {{bios: uefi}}\n',
            ["{c}:8: proxmox_vm_advanced.bios: 'uefi' is not valid (expected 'ovmf' or 'seabios')"],
        ),
        (
            f'tfstate_password: "{S}"\ntfstate_password: "{S}"\n',
            ["{c}:8: tfstate_password: duplicate key (each key once)"],
        ),
        # a secret pasted into a key that is not secret
        (
            f'proxmox_api_token_id: "root@pam!tf={S}"\n',
            [
                "{c}:7: proxmox_api_token_id: the value is not valid (expected a token id such as 'root@pam!terraform')"
            ],
        ),
        (
            f'tfstate_url: "https://u:{S}@tfstate.example.com"\n',
            [
                "{c}:7: tfstate_url: the value is not valid (expected an http(s):// URL such as 'https://tfstate.example.com')"
            ],
        ),
        # both secrets wrong at once: two lines, neither value
        (
            f"tfstate_password: 84736251\nproxmox_api_token_secret: [{S}]\n",
            [
                "{c}:7: tfstate_password: YAML reads this value as a number, not as text " + QUOTE,
                "{c}:8: proxmox_api_token_secret: YAML reads this value as a list, not as text " + QUOTE,
            ],
        ),
    ],
    ids=["other error", "duplicate", "pasted into the token id", "credentials in a URL", "both"],
)
def test_secrets_around_other_problems(bad: BadInput, extra: str, expected: list[str]) -> None:
    bad.write(CLUSTER + extra, NODES)
    bad.reject(expected, secrets=(SECRET,))


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ('"6e06"', "6e06"),
        ('"0o17"', "0o17"),
        ('"1e3"', "1e3"),
        ('"007"', "007"),
        ('"true"', "true"),
        ('"null"', "null"),
        ('"  spaced out  "', "  spaced out  "),
        ("'it''s \"quoted\"'", 'it\'s "quoted"'),
        ('"back\\\\slash \\" quote"', 'back\\slash " quote'),
        ('"pässwörd ✓ 密码"', "pässwörd ✓ 密码"),
        ('"${not.a.template} %{x}"', "${not.a.template} %{x}"),
        ('"&anchor *alias !tag #hash"', "&anchor *alias !tag #hash"),
        ("plain-text_secret", "plain-text_secret"),
    ],
)
def test_quoted_secrets_are_read_exactly(bad: BadInput, written: str, value: str) -> None:
    bad.write(CLUSTER + f"tfstate_password: {written}\nproxmox_api_token_secret: {written}\n", NODES)
    cluster = load_config(ConfigPaths(bad.cluster, bad.nodes)).config.cluster
    assert cluster.tfstate_password is not None and cluster.proxmox_api_token_secret is not None
    assert cluster.tfstate_password.get_secret_value() == value
    assert cluster.proxmox_api_token_secret.get_secret_value() == value


def test_a_misspelt_secret_key_warns_without_the_value(bad: BadInput) -> None:
    bad.write(CLUSTER + f'tfstate_pasword: "{S}"\n', NODES)
    warnings = [str(w) for w in load_config(ConfigPaths(bad.cluster, bad.nodes)).warnings]
    assert not any(S[:4] in w for w in warnings)
    # (nodes.yaml's two controllers add an even-number warning of their own)
    assert [w for w in warnings if w.startswith(f"{bad.cluster}:")] == [
        f"{bad.cluster}:7: tfstate_pasword: warning: unknown key (did you mean 'tfstate_password'?)"
    ]
