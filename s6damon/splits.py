"""Names of the manifest's splits, shared by every stage."""

#: the labeled splits: ``train`` is finetuned on, the other three are evaluated
SPLITS = ("train", "dev", "test", "test_open")
#: audio for SSL pretraining only: no stage trains on or aligns its transcripts
UNLABELED = "unlabeled"
