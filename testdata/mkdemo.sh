#!/bin/sh
# Rebuilds testdata/demo.img from testdata/demo-src with the real tools, using
# the Azure sidecar's recipe (LUKS2, aes-xts-plain64, 4096-byte sectors,
# pbkdf2 with 1000 iterations). No dm-crypt needed: cryptsetup encrypts the
# file in place. demo.key is the 32-byte keyfile (a test key, not a secret).
set -eu
cd "$(dirname "$0")"
[ -f demo.key ] || head -c 32 /dev/urandom > demo.key
rm -f demo.img
truncate -s 9M demo.img
# The first 1 MiB is left for the LUKS header that reencrypt puts in front.
mkfs.ext4 -q -F -b 4096 -L chestfs-demo -E offset=0 -d demo-src demo.img 8M
cryptsetup reencrypt --batch-mode --encrypt --type luks2 --reduce-device-size 1M \
	--luks2-metadata-size 16k --luks2-keyslots-size 256k \
	--sector-size 4096 --cipher aes-xts-plain64 --key-size 512 \
	--pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file demo.key demo.img
cryptsetup luksDump demo.img | head -20
