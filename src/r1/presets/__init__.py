"""Built-in presets for `r1 zero` (YAML recipes shipped inside the package)."""

from pathlib import Path

PRESETS_DIR = Path(__file__).parent


def preset_path(name: str) -> Path:
    return PRESETS_DIR / f"zero-{name}.yaml"


def preset_names() -> list[str]:
    return sorted(p.stem.removeprefix("zero-") for p in PRESETS_DIR.glob("zero-*.yaml"))
