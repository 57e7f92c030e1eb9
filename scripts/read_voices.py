"""How well a finetuned model reads voices it was not trained on: render test texts with each
voice and score greedy transcripts per voice, beside the test split's own renderings of them.

For judging whether a candidate training voice is new to the model (docs/experiments/recipe.md,
"MBROLA"): a voice the model already reads well adds little; one it reads as badly as the
recorded test voices is a timbre the training voices do not cover. The texts are the first
``--texts`` distinct texts of the corpus's test split, so every voice reads the same ones.

Usage::

    .venv/bin/python scripts/read_voices.py --model models/finetuned \\
        --voices mbrola:us1 mbrola:us2 mbrola:us3 --out /tmp/read_mbrola
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s6damon import io  # noqa: E402
from s6damon.corpus.synth import render  # noqa: E402
from s6damon.model.factory import load_ctc_model  # noqa: E402
from s6damon.train.evaluate import score, transcribe  # noqa: E402


def first_test_texts(manifest: pd.DataFrame, n: int) -> list[str]:
    """The first ``n`` distinct texts of the test split, in manifest order."""
    return list(dict.fromkeys(manifest.loc[manifest["split"] == "test", "text"]))[:n]


def render_rows(voices: list[str], texts: list[str], out: Path, sample_rate: int) -> pd.DataFrame:
    """Render every text with every voice into ``out`` (wav files); one manifest row each. Texts a
    voice cannot render with exact timings are left out (the summary's ``rendered`` counts the rest)."""
    rows = []
    for voice in voices:
        for i, text in enumerate(texts):
            r = render(voice, text, sample_rate)
            if r is None:
                continue
            path = out / f"{voice.replace(':', '_')}_{i:03d}.wav"
            sf.write(path, r.audio, sample_rate)
            rows.append({"utt_id": path.stem, "path": str(path), "duration": r.duration,
                         "text": text, "voice": voice})
    return pd.DataFrame(rows, columns=["utt_id", "path", "duration", "text", "voice"])


def per_voice(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    """WER/CER per voice of transcripts with a ``voice`` column."""
    return {str(v): score(g) for v, g in df.groupby("voice")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="finetuned CTC checkpoint folder")
    ap.add_argument("--voices", nargs="+", required=True)
    ap.add_argument("--out", type=Path, required=True, help="folder for the renderings and summary.json")
    ap.add_argument("--manifest", type=Path, default=Path("data/corpus/manifest.parquet"))
    ap.add_argument("--texts", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    manifest = io.read_parquet(args.manifest)
    texts = first_test_texts(manifest, args.texts)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = render_rows(args.voices, texts, args.out, 16000)
    model, tokenizer = load_ctc_model(args.model)
    hyps = transcribe(model, tokenizer, rows)
    hyps["voice"] = rows["voice"].to_numpy()
    # the same texts as the test split rendered them, each text by its one test voice
    test = manifest[(manifest["split"] == "test") & manifest["text"].isin(texts)]
    test_hyps = transcribe(model, tokenizer, test)
    test_hyps["voice"] = test["voice"].to_numpy()
    summary = {
        "model": str(args.model), "texts": len(texts),
        "rendered": {v: int((rows["voice"] == v).sum()) for v in args.voices},
        "voices": per_voice(hyps), "all": score(hyps),
        "test_split_same_texts": per_voice(test_hyps),
    }
    io.write_json(args.out / "summary.json", summary)
    hyps.to_parquet(args.out / "hyps.parquet")
    for name, res in [*summary["voices"].items(), ("(all)", summary["all"]),
                      *((f"test {v}", r) for v, r in summary["test_split_same_texts"].items())]:
        print(f"{name:28s} {res['utterances']:4d} utts  WER {res['wer']:.3f}  CER {res['cer']:.3f}")


if __name__ == "__main__":
    main()
