#!/bin/sh
# Writes the seed corpus for the open_shard target from the golden shards of every version.
# Each seed is [mode byte] ++ shard bytes, for modes 0, 1 and 2, and for mode 3
# [3, 7] ++ 7 no-op pokes (add 0) ++ shard bytes, so that mutating a poke in place reaches
# the footer's numbers -- see fuzz_targets/open_shard.rs.
# Run from anywhere; writes rust/fuzz/corpus/open_shard/ (gitignored, regenerated).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/corpus/open_shard"
mkdir -p "$out"
for f in "$here"/../../tests/golden/v*/*.pxs; do
    name=$(basename "$(dirname "$f")")-$(basename "$f" .pxs)
    for mode in 0 1 2; do
        { printf "\\00$mode"; cat "$f"; } > "$out/golden-$name-mode$mode"
    done
    {
        printf '\003\007'
        for i in 0 1 2 3 4 5 6; do printf "\\00$i\\001\\0\\0\\0\\0\\0\\0\\0\\0"; done
        cat "$f"
    } > "$out/golden-$name-mode3"
done
ls -l "$out"
