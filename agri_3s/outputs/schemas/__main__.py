"""``python -m agri_3s.outputs.schemas``: rewrite the shipped schema files from :mod:`.fields`."""

from pathlib import Path

from . import shipped_texts

if __name__ == "__main__":
    here = Path(__file__).parent
    for name, text in shipped_texts().items():
        (here / name).write_text(text, encoding="utf-8")
        print(here / name)
