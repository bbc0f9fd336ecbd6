"""The guide's six symptom classes (kept import-light: the CLI's --help reads it)."""

SYMPTOM_CLASSES: tuple[str, ...] = (
    "startup",
    "performance",
    "vectors",
    "inter-manager",
    "deploy",
    "monitoring",
)
