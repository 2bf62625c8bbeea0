"""Unit tests of the evaluator's logic, in plain CPython:
`python3 -m unittest` in this folder."""

import unittest

import readability
from readability import BadParameters, Bounds, judge, measure, parse_bounds, syllables

SIMPLE = "The cat sat on the mat. It was a sunny day. We had fun."
DENSE = (
    "Notwithstanding considerable methodological heterogeneity, the preponderance of "
    "epidemiological investigations substantiates an association between socioeconomic "
    "deprivation and cardiovascular morbidity."
)


class Syllables(unittest.TestCase):
    def test_common_words(self):
        for word, expected in [("cat", 1), ("table", 2), ("make", 1), ("banana", 3),
                               ("jumped", 1), ("wanted", 2), ("readability", 5), ("the", 1)]:
            self.assertEqual(syllables(word), expected, word)


class Measure(unittest.TestCase):
    def test_counts(self):
        r = measure(SIMPLE)
        self.assertEqual((r.words, r.sentences), (14, 3))

    def test_simple_text_reads_easier_than_dense_text(self):
        self.assertLess(measure(SIMPLE).grade, 2)
        self.assertGreater(measure(DENSE).grade, 20)
        self.assertGreater(measure(SIMPLE).ease, 90)
        self.assertLess(measure(DENSE).ease, 0)

    def test_text_without_words(self):
        self.assertEqual(measure("... !!!").words, 0)


class Judge(unittest.TestCase):
    def test_within_and_outside_bounds(self):
        self.assertTrue(judge(SIMPLE, Bounds(max_grade=8)).passed)
        dense = judge(DENSE, Bounds(max_grade=8))
        self.assertFalse(dense.passed)
        self.assertLess(dense.score, 0.2)
        self.assertIn("above 8", dense.reason)

    def test_near_misses_score_higher_than_far_ones(self):
        medium = "Our refund policy covers purchases made within thirty days of delivery."
        near, far = judge(medium, Bounds(max_grade=6)), judge(DENSE, Bounds(max_grade=6))
        self.assertFalse(near.passed)
        self.assertGreater(near.score, far.score)
        self.assertLess(near.score, 1)

    def test_both_bounds(self):
        j = judge(DENSE, Bounds(max_grade=30, min_ease=60))
        self.assertFalse(j.passed)
        self.assertIn("reading ease", j.reason)

    def test_no_words_fails(self):
        self.assertFalse(judge("", Bounds(max_grade=8)).passed)


class Parameters(unittest.TestCase):
    def test_accepted_shapes(self):
        self.assertEqual(parse_bounds(8), Bounds(max_grade=8.0))
        self.assertEqual(parse_bounds({"min_ease": 60}), Bounds(min_ease=60.0))

    def test_refused_shapes(self):
        for value in [None, True, "8", {}, {"max_grade": "8"}, {"grade": 8}, {"min_ease": 120}]:
            with self.assertRaises(BadParameters, msg=repr(value)):
                parse_bounds(value)


if __name__ == "__main__":
    unittest.main()
