#!/bin/sh
# Regenerates the fuzz seeds in testdata/seeds: the header region (no keyslot
# area, no data) of real images made by cryptsetup.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/seeds"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
head -c 32 /dev/urandom >"$tmp/key"

mk() { # name size bytes-to-keep luksFormat-args...
	name=$1 size=$2 keep=$3
	shift 3
	rm -f "$tmp/img"
	truncate -s "$size" "$tmp/img"
	cryptsetup luksFormat --batch-mode "$@" "$tmp/img" "$tmp/key"
	head -c "$keep" "$tmp/img" >"$out/$name.hdr"
}

# The Azure sidecar's recipe.
mk luks2-sidecar 20M 32768 --type luks2 --sector-size 4096 --cipher aes-xts-plain64 --pbkdf pbkdf2 --pbkdf-force-iterations 1000
# Argon2id, a label, a second keyslot with another priority.
mk luks2-argon2 20M 32768 --type luks2 --pbkdf argon2id --pbkdf-memory 32768 --pbkdf-force-iterations 4 --label seed --subsystem chestfs
cryptsetup luksAddKey --batch-mode --key-file "$tmp/key" --pbkdf argon2i --pbkdf-memory 32768 --pbkdf-force-iterations 4 "$tmp/img" "$tmp/key"
cryptsetup config --priority prefer --key-slot 1 "$tmp/img"
head -c 32768 "$tmp/img" >"$out/luks2-argon2.hdr"
# LUKS1, xts and cbc-essiv.
mk luks1-xts 4M 1024 --type luks1 --cipher aes-xts-plain64 --pbkdf-force-iterations 1000
mk luks1-essiv 4M 1024 --type luks1 --cipher aes-cbc-essiv:sha256 --key-size 256 --pbkdf-force-iterations 1000
