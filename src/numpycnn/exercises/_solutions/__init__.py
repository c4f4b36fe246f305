"""The teachers' answers: one file per exercise, written as a learner's file would be and checked by the tests."""
