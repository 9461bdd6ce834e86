"""Load a CloudFormation/SAM YAML template, turning short-form intrinsics into their long form.

`!Ref X` -> {"Ref": "X"}, `!Condition X` -> {"Condition": "X"},
`!GetAtt A.B` -> {"Fn::GetAtt": ["A", "B"]}, any other `!Name v` -> {"Fn::Name": v}.
Kept local to the tests on purpose (the local stack has its own template reader).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation short tags."""


def _construct_node(loader: CfnLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


def _construct_intrinsic(loader: CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value = _construct_node(loader, node)
    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_yaml(path: Path | str) -> Any:
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass


def load_template(path: Path | str = TEMPLATE_PATH) -> dict[str, Any]:
    template = load_yaml(path)
    if not isinstance(template, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return template
