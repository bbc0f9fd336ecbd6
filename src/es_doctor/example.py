"""The commented example configuration written by ``es-doctor config init``."""

from importlib.resources import files

EXAMPLE: str = files("es_doctor").joinpath("data/es-doctor.example.yaml").read_text(encoding="utf-8")
