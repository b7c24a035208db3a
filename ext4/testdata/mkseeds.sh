#!/bin/sh
# Regenerates the small ext2/3/4 images that seed FuzzOpen and TestSeeds.
# Unprivileged: mkfs.ext4 -d copies a prepared tree into each image.
# Usage: cd ext4/testdata && ./mkseeds.sh
set -eu
command -v mkfs.ext4 >/dev/null || { echo "mkfs.ext4 (e2fsprogs) is required" >&2; exit 1; }
out=$(cd "$(dirname "$0")" && pwd)/seeds
src=$(mktemp -d)
trap 'rm -rf "$src" "$out"/*.img' EXIT
mkdir -p "$out"

# The tree: a small file, an inline-sized file, a sparse file, a directory
# big enough for an htree index, fast and slow symlinks, a hard link.
printf 'hello\n' > "$src/tiny"
head -c 3000 /dev/zero | tr '\0' 'a' > "$src/medium"
printf 'z' | dd of="$src/sparse" bs=1 seek=40000 conv=notrunc 2>/dev/null
mkdir -p "$src/dir/sub"
i=0
while [ $i -lt 80 ]; do
	: > "$src/dir/entry-$i-with-a-longer-name"
	i=$((i + 1))
done
ln -s tiny "$src/short"
ln -s "$(printf '%080d' 0)" "$src/long"
ln "$src/tiny" "$src/dir/sub/hard"
setfattr -n user.seed -v value "$src/tiny" 2>/dev/null || true
touch -d '2001-02-03 04:05:06' "$src/tiny"

mk() { # name size mkfs-args...
	name=$1 size=$2
	shift 2
	rm -f "$out/$name.img"
	truncate -s "$size" "$out/$name.img"
	mkfs.ext4 -q -F -U 6b1c7a3e-5a43-4c0e-9d0b-2f1e0d3c4b5a -E root_owner=0:0 -d "$src" "$@" "$out/$name.img"
	# mkfs -d writes linear directories; e2fsck -D indexes them (htree).
	e2fsck -fyD "$out/$name.img" >/dev/null 2>&1 || [ $? -le 1 ]
	gzip -9 -n -f "$out/$name.img"
}
mk csum1k 256K -b 1024 -N 128 -O ^has_journal -I 256
mk inline 256K -b 1024 -N 128 -O ^has_journal,inline_data -I 256
mk ext2 256K -t ext2 -b 1024 -N 128 -I 128
mk nocsum4k 512K -b 4096 -O ^has_journal,^metadata_csum,^64bit -N 128
ls -l "$out"
