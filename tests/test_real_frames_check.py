"""bench.real_frames_check's content WER: hypotheses cut to the reference's word count."""

from bench.real_frames_check import cut_to_reference


def test_cut_to_reference_keeps_as_many_normalised_words_as_the_reference():
    refs = ["Ten of clubs.", "This must be morning."]
    hyps = ["10 of clubs 10 of clubs 10 of clubs", "This must be"]
    assert cut_to_reference(refs, hyps) == ["10 of clubs", "this must be"]
