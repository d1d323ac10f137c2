"""``main.py settings``: every setting, generated from the Settings model itself.

Each field of :class:`config.settings.Settings` carries its description as a field
docstring; this renders them with the environment variable, the type and the default,
as text for a terminal or as Markdown (``--markdown``), which is committed as
docs/settings.md (tests/unit/test_settings_reference.py fails when the two differ). A
secret's default is never printed, only that it is a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_core import PydanticUndefined

from config.settings import Settings

REGENERATE = "python3 main.py settings --markdown > docs/settings.md"


@dataclass(frozen=True, slots=True)
class SettingDoc:
    """One setting as the reference shows it."""

    env: str
    type: str
    default: str
    description: str


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not _is_generic(annotation) else None
    if text is None:
        text = str(annotation)
    text = re.sub(r"\b(?:typing|pathlib|decimal|pydantic\.types)\.", "", text)
    text = text.replace("NoneType", "None").replace("PosixPath", "Path")
    return "secret" if "SecretStr" in text else text


def _is_generic(annotation: Any) -> bool:
    return hasattr(annotation, "__args__")


def _default(field: Any) -> str:
    if field.annotation is SecretStr or isinstance(field.default, SecretStr):
        return "(secret, empty)"
    value = field.default
    if value is PydanticUndefined and field.default_factory is not None:
        value = field.default_factory()
    if value is None or value is PydanticUndefined:
        return "unset"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "none"
    if isinstance(value, Path) and not value.is_absolute():
        return f"./{value}"
    return str(value) or "(empty)"


def settings_docs() -> Iterator[SettingDoc]:
    """The model's fields in their declared order."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    for name, field in Settings.model_fields.items():
        yield SettingDoc(
            env=(prefix + name).upper(),
            type=_type_name(field.annotation),
            default=_default(field),
            description=" ".join((field.description or "").split()),
        )


def render_text() -> str:
    """For a terminal: a block per setting."""
    blocks = [
        f"{d.env}  ({d.type}, default: {d.default})\n    {d.description}" for d in settings_docs()
    ]
    return "\n".join(blocks) + "\n"


def render_markdown() -> str:
    """docs/settings.md."""
    lines = [
        "# Settings",
        "",
        "Environment variables (or lines of a `.env` file in the working directory). A bad",
        "value stops the daemon at start with one line naming the setting. Generated from",
        f"`config/settings.py`; regenerate with `{REGENERATE}`.",
        "",
        "| variable | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for d in settings_docs():
        meaning = d.description.replace("``", "`")
        cells = (f"`{d.env}`", f"`{d.type}`", f"`{d.default}`", meaning)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
