"""Lists of names in error messages stay short (a LibriSpeech speaker table has hundreds)."""
from __future__ import annotations

from speechunits.errors import some_of


def test_some_of_lists_a_few_names_and_counts_the_rest() -> None:
    speakers = [str(n) for n in range(100, 361)]  # 261 speakers, as librispeech-sample's table
    text = some_of(speakers)
    assert text == "100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111 ... (261 in all)"
    assert some_of(["a", "b"]) == "a, b" and some_of([]) == "none" and some_of(("x",) * 3, limit=3) == "x, x, x"
