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
# The compact bases of the differential test (diff_test.go), header only:
# FuzzMutatedHeader pads them with zeros to their image size.
uuid=5eed5eed-0000-4000-8000-00000000cafe
mk diff-luks2-pbkdf2 608K 32768 --type luks2 --uuid $uuid --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --sector-size 4096 \
	--luks2-metadata-size 16k --luks2-keyslots-size 512k --offset 1088
cryptsetup luksAddKey --batch-mode --key-file "$tmp/key" --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$tmp/img" "$tmp/key"
echo '{"type":"chestfs-test","keyslots":["1"],"x":[1,"2"]}' | cryptsetup token import "$tmp/img"
head -c 32768 "$tmp/img" >"$out/diff-luks2-pbkdf2.hdr"
mk diff-luks2-argon2 352K 65536 --type luks2 --uuid $uuid --pbkdf argon2id --pbkdf-memory 64 --pbkdf-force-iterations 4 \
	--key-size 256 --sector-size 512 --luks2-metadata-size 32k --luks2-keyslots-size 256k --offset 640 --label diff --subsystem chestfs
cryptsetup luksAddKey --batch-mode --key-file "$tmp/key" --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$tmp/img" "$tmp/key"
head -c 65536 "$tmp/img" >"$out/diff-luks2-argon2.hdr"
mk diff-luks1 2112K 1024 --type luks1 --uuid $uuid --key-size 256 --pbkdf-force-iterations 1000
cryptsetup luksAddKey --batch-mode --key-file "$tmp/key" --pbkdf-force-iterations 1000 "$tmp/img" "$tmp/key"
head -c 1024 "$tmp/img" >"$out/diff-luks1.hdr"
