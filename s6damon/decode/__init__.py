"""Beam-search decoding of CTC models with a lexicon and a word n-gram LM.

- :mod:`s6damon.decode.ngram`: interpolated Kneser-Ney estimation, ARPA write/read.
- :mod:`s6damon.decode.lm_text`: the LM's training text (train transcripts, held-out
  sentences excluded) and out-of-vocabulary rates.
- :mod:`s6damon.decode.beam`: CTC emissions, lexicon files and the flashlight beam search
  (torchaudio's ``ctc_decoder``), with dev tuning of the LM weight and word score.

No Prefect or DVC here: the ``decode`` stage (``flows/decode.py``) drives these functions.
"""

from s6damon.decode.beam import BeamDecoder, BeamSettings, emissions, tune, write_lexicon
from s6damon.decode.lm_text import lm_sentences, oov_rate
from s6damon.decode.ngram import NgramModel, estimate, read_arpa, write_arpa

__all__ = ["BeamDecoder", "BeamSettings", "NgramModel", "emissions", "estimate", "lm_sentences", "oov_rate",
           "read_arpa", "tune", "write_arpa", "write_lexicon"]
