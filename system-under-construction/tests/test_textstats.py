from textstats import line_count, top_words, word_count, words


def test_words_are_lower_cased_in_order():
    assert words("The cat, the HAT.") == ["the", "cat", "the", "hat"]


def test_word_count_ignores_punctuation():
    assert word_count("Hello, world! It's fine.") == 4


def test_line_count_counts_a_last_line_without_newline():
    assert line_count("a\nb") == 2
    assert line_count("a\nb\n") == 2
    assert line_count("") == 0


def test_top_words_breaks_ties_alphabetically():
    assert top_words("b a b a c", n=2) == [("a", 2), ("b", 2)]
