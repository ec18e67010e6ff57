"""The error raised when a foreign model cannot be imported."""


class ImportedModelError(ValueError):
    """A foreign checkpoint or package cannot be imported: the message names the file, version or element."""
