"""The corpus: the embedded synthesised default corpus, external corpora, and its normalisation.

- :mod:`s6damon.corpus.plan`: which text each utterance says, with which voice, in which split.
- :mod:`s6damon.corpus.grammar`, :mod:`s6damon.corpus.sentences`: the command grammar and the
  open-vocabulary sentences.
- :mod:`s6damon.corpus.synth`, :mod:`s6damon.corpus.crosslingual`, :mod:`s6damon.corpus.phones`:
  synthesis with exact phone and word timings.
- :mod:`s6damon.corpus.augment`: tempo, pitch and speed changes that keep the timings exact.
- :mod:`s6damon.corpus.build`: rendering a shard of the plan to wavs and manifest rows.
- :mod:`s6damon.corpus.sources`, :mod:`s6damon.corpus.validate`: external corpora and their checks.
- :mod:`s6damon.corpus.ltas`: long-term spectrum normalisation (``prepare.ltas``), also the
  exported models' front end.
"""
