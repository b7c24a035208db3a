#!/bin/bash
# bench-mount: sequential read of a large file through `chestfs mount` (FUSE,
# userspace LUKS2 + ext4) against the kernel reading the plaintext image
# through a loop mount, in the same run, page caches dropped before each read.
# Also times `ls -l` of a 100k-entry directory on both, the same read
# through a mount that checks every block against a dm-verity tree (ratio
# to the mount without), and prints `openssl speed -evp aes-256-xts` for
# context.
#
# The LUKS2 image follows the Azure sidecar's recipe (aes-xts-plain64, 512-bit
# key, 4096-byte sectors, pbkdf2) and is made by cryptsetup itself: the kernel
# fills a fresh ext4 image through a loop mount, `cryptsetup reencrypt
# --encrypt` encrypts a copy in place (no dm-crypt needed).
#
# Tree workloads: a tree shaped like a software environment (TREE_FILES
# files of 1-16 KiB in TREE_FILES/50 directories, a few levels deep), cold
# caches, each timed on both mounts: a stat walk (find -ls), ls -lR, reading
# every file (tar to a pipe: GNU tar skips reading when writing to /dev/null)
# and an import-like walk (per directory: probe a few names that do not
# exist, stat, open and read every file, as Python's import does).
#
# Needs root (drop_caches, loop mount). Environment:
#   BIN=bin/chestfs  SIZE_MB=640 (file size; 0 skips the sequential read)
#   REPS=5  FILES=100000 (directory entries; 0 skips the ls test)
#   TREE_FILES=30000 (0 skips the tree workloads)  TREE_REPS=5
#   TMPDIR (where the ~1.5 GiB of images go)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${BIN:-bin/chestfs}")
SIZE_MB=${SIZE_MB:-640}
REPS=${REPS:-5}
FILES=${FILES:-100000}
TREE_FILES=${TREE_FILES:-30000}
TREE_REPS=${TREE_REPS:-5}

if [ "$(id -u)" -ne 0 ]; then
	echo "bench-mount: needs root (it drops the page cache and loop-mounts the plaintext image); run it with sudo" >&2
	exit 1
fi
for c in cryptsetup mkfs.ext4 openssl dd mount losetup; do
	command -v "$c" >/dev/null || { echo "bench-mount: $c not found (make setup-apt)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "bench-mount: $BIN not built (make build)" >&2; exit 1; }
[ "$SIZE_MB" -eq 0 ] || [ "$SIZE_MB" -ge 512 ] || { echo "bench-mount: SIZE_MB must be 0 or at least 512" >&2; exit 1; }
command -v python3 >/dev/null || [ "$TREE_FILES" -eq 0 ] || { echo "bench-mount: python3 not found (the tree workloads need it)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/chestfs-bench.XXXXXX")
FMNT=$WORK/fuse
VMNT=$WORK/verity
KMNT=$WORK/kernel
mkdir -p "$FMNT" "$VMNT" "$KMNT"
MOUNT_PIDS=
cleanup() {
	set +e
	for p in $MOUNT_PIDS; do
		kill -TERM "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	grep -qs " $FMNT " /proc/self/mountinfo && umount -l "$FMNT"
	grep -qs " $VMNT " /proc/self/mountinfo && umount -l "$VMNT"
	grep -qs " $KMNT " /proc/self/mountinfo && umount "$KMNT"
	# mount -o loop sets autoclear; detach anything left on our image anyway.
	for l in $(losetup -j "$WORK/plain.img" -O NAME -n 2>/dev/null); do losetup -d "$l"; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
# mbps BYTES START END
mbps() { awk -v b="$1" -v s="$2" -v e="$3" 'BEGIN { printf "%.0f", b / (e - s) / 1e6 }'; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

echo "== building test data in $WORK (${SIZE_MB} MiB random file, $FILES-entry directory)"
# The kernel fills the image (mkfs.ext4 -d is very slow with 100k files in a directory).
IMG_MB=$((SIZE_MB + SIZE_MB / 8 + FILES / 2000 + TREE_FILES * 12 / 1024 + 64))
truncate -s "${IMG_MB}M" "$WORK/plain.img"
mkfs.ext4 -q -F -b 4096 -N $((FILES + TREE_FILES * 11 / 10 + 1024)) "$WORK/plain.img"
mount -o loop "$WORK/plain.img" "$KMNT"
[ "$SIZE_MB" -eq 0 ] || dd if=/dev/urandom of="$KMNT/big" bs=1M count="$SIZE_MB" status=none
if [ "$TREE_FILES" -gt 0 ]; then
	# A package tree: TREE_FILES/50 directories, in groups of 10 under
	# packages, 1-16 KiB files (seeded: the same tree every run).
	python3 - "$KMNT/tree" "$TREE_FILES" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(20)
ndirs = max(1, n // 50)
blob = os.urandom(16384)
for d in range(ndirs):
    path = os.path.join(root, "pkg%03d" % (d // 10), "mod%02d" % (d % 10))
    os.makedirs(path, exist_ok=True)
    for f in range(n // ndirs):
        with open(os.path.join(path, "file%03d.py" % f), "wb") as fh:
            fh.write(blob[: rnd.randint(1024, 16384)])
PY
fi
if [ "$FILES" -gt 0 ]; then
	mkdir "$KMNT/many"
	(cd "$KMNT/many" && seq -f 'f%06g' 1 "$FILES" | xargs touch)
fi
umount "$KMNT"

echo "== encrypting a copy with cryptsetup reencrypt --encrypt (luks2, aes-xts-plain64, 512-bit key, 4096-byte sectors)"
head -c 32 /dev/urandom >"$WORK/key"
cp "$WORK/plain.img" "$WORK/luks.img"
truncate -s +32M "$WORK/luks.img"
cryptsetup reencrypt --encrypt --type luks2 --batch-mode --reduce-device-size 32M \
	--cipher aes-xts-plain64 --key-size 512 --sector-size 4096 \
	--pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$WORK/key" "$WORK/luks.img" >/dev/null

if [ "$SIZE_MB" -gt 0 ]; then
	echo "== a copy with a dm-verity tree appended (chestfs verity format)"
	cp "$WORK/luks.img" "$WORK/luksv.img"
	"$BIN" verity format --root-hash-file "$WORK/root" "$WORK/luksv.img" >/dev/null
fi

# chestfs_mount MOUNTPOINT ARGS...: start `chestfs mount` and wait until it serves.
chestfs_mount() {
	local mp=$1 pid i=0
	shift
	"$BIN" mount "$@" "$mp" 2>>"$WORK/mount.log" &
	pid=$!
	MOUNT_PIDS="$MOUNT_PIDS $pid"
	until grep -qs " $mp " /proc/self/mountinfo; do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "bench-mount: chestfs mount failed:" >&2
			cat "$WORK/mount.log" >&2
			exit 1
		fi
		i=$((i + 1))
		[ $i -lt 600 ] || { echo "bench-mount: chestfs mount not ready after 60 s" >&2; exit 1; }
		sleep 0.1
	done
}

echo "== mounting: kernel loop mount of the plaintext, chestfs mount of the LUKS2 image (and with --verity-root)"
mount -o loop,ro "$WORK/plain.img" "$KMNT"
chestfs_mount "$FMNT" --key-file "$WORK/key" "$WORK/luks.img"
[ "$SIZE_MB" -eq 0 ] || chestfs_mount "$VMNT" --key-file "$WORK/key" --verity-root "$(cat "$WORK/root")" "$WORK/luksv.img"
FDEV=$(stat -c '%d' "$FMNT")
echo "   fuse readahead: $(cat /sys/class/bdi/$((FDEV >> 8)):$((FDEV & 255))/read_ahead_kb 2>/dev/null || echo '?') KiB;" \
	"loop readahead: $(cat /sys/class/bdi/$(stat -c '%d' "$KMNT" | awk '{ printf "%d:%d", int($1 / 256), $1 % 256 }')/read_ahead_kb 2>/dev/null || echo '?') KiB"

# median N...: the middle value (the lower middle for an even count).
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

if [ "$SIZE_MB" -gt 0 ]; then
	BYTES=$(stat -c %s "$KMNT/big")
	[ "$(stat -c %s "$FMNT/big")" = "$BYTES" ] || { echo "bench-mount: file sizes differ" >&2; exit 1; }

	# readfile PATH: drop caches, read sequentially with 1 MiB reads, print MB/s.
	readfile() {
		drop
		local s e
		s=$(now)
		dd if="$1" of=/dev/null bs=1M status=none
		e=$(now)
		mbps "$BYTES" "$s" "$e"
	}

	echo "== sequential read of a $((BYTES >> 20)) MiB file, caches dropped before each ($REPS repetitions, interleaved)"
	fall=() kall=() vall=()
	for r in $(seq 1 "$REPS"); do
		f=$(readfile "$FMNT/big")
		v=$(readfile "$VMNT/big")
		k=$(readfile "$KMNT/big")
		printf '   rep %d: chestfs %6s MB/s   chestfs+verity %6s MB/s   kernel %6s MB/s\n' "$r" "$f" "$v" "$k"
		fall+=("$f")
		vall+=("$v")
		kall+=("$k")
	done
	# Medians: other work on the machine makes single repetitions swing widely.
	FUSE_MBPS=$(median "${fall[@]}")
	KERN_MBPS=$(median "${kall[@]}")
	VER_MBPS=$(median "${vall[@]}")

	echo "== checking that both mounts read the same bytes"
	cmp "$FMNT/big" "$KMNT/big" && cmp "$VMNT/big" "$KMNT/big" && echo "   identical"
fi

# timed SECONDS-OUTPUT CMD...: drop caches, run CMD (output discarded), print seconds.
timed() {
	drop
	local s e
	s=$(now)
	"$@" >/dev/null
	e=$(now)
	awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f", e - s }'
}
RESULTS=()
# compare NAME REPS TARGET CMD...: CMD runs in the chestfs and then the kernel
# mount's copy of the data (it gets the mount point as its last argument),
# cold, REPS times interleaved; prints each round and keeps the medians.
compare() {
	local name=$1 reps=$2 target=$3 fs=() ks=() f k r
	shift 3
	for r in $(seq 1 "$reps"); do
		f=$(timed "$@" "$FMNT")
		k=$(timed "$@" "$KMNT")
		printf '   %-22s rep %d: chestfs %7s s   kernel %7s s\n' "$name" "$r" "$f" "$k"
		fs+=("$f")
		ks+=("$k")
	done
	f=$(median "${fs[@]}")
	k=$(median "${ks[@]}")
	RESULTS+=("$(printf '   %-22s median of %d: chestfs %7s s   kernel %7s s   ratio %s (target >= %s)' \
		"$name" "$reps" "$f" "$k" "$(ratio "$k" "$f")" "$target")")
}

if [ "$TREE_FILES" -gt 0 ]; then
	echo "== tree workloads: $TREE_FILES files of 1-16 KiB in $((TREE_FILES / 50)) directories, caches dropped before each"
	stat_walk() { cd "$1/tree" && find . -ls; }
	ls_r() { cd "$1/tree" && ls -lR; }
	read_all() { cd "$1/tree" && tar cf - . | cat; }
	import_walk() {
		python3 - "$1/tree" <<'PY'
import os, sys
n = 0
for dirpath, dirs, files in os.walk(sys.argv[1]):
    dirs.sort()
    for probe in ("__init__.cpython-312-x86_64-linux-gnu.so", "__init__.abi3.so", "__pycache__"):
        try:
            os.stat(os.path.join(dirpath, probe))
        except FileNotFoundError:
            pass
    for f in sorted(files):
        p = os.path.join(dirpath, f)
        os.stat(p)
        with open(p, "rb") as fh:
            n += len(fh.read())
print(n)
PY
	}
	[ "$(stat_walk "$FMNT" | wc -l)" = "$(stat_walk "$KMNT" | wc -l)" ] || { echo "bench-mount: the trees differ" >&2; exit 1; }
	[ "$(import_walk "$FMNT")" = "$(import_walk "$KMNT")" ] || { echo "bench-mount: the trees' bytes differ" >&2; exit 1; }
	compare "find -ls" "$TREE_REPS" 0.9 stat_walk
	compare "ls -lR" "$TREE_REPS" 0.9 ls_r
	compare "read all (tar)" "$TREE_REPS" 0.9 read_all
	compare "import-like walk" "$TREE_REPS" 0.9 import_walk
fi

if [ "$FILES" -gt 0 ]; then
	echo "== ls -l of a $FILES-entry directory (stat of every entry)"
	ls_many() { ls -l "$1/many"; }
	compare "ls -l $FILES entries" 3 0.5 ls_many
	[ "$(ls "$FMNT/many" | wc -l)" = "$FILES" ] || { echo "bench-mount: chestfs lists a different entry count" >&2; exit 1; }
fi

echo "== openssl speed -evp aes-256-xts (one core, for context)"
openssl speed -seconds 2 -bytes 4096 -evp aes-256-xts 2>/dev/null | tail -1 |
	awk '{ v = $NF; sub(/k$/, "", v); printf "   %s MB/s at 4096-byte blocks\n", int(v * 1000 / 1e6) }'

echo "== peak memory of the chestfs mounts (VmHWM; their caches are bounded, see docs/performance.md)"
for p in $MOUNT_PIDS; do
	printf '   pid %s (%s): %s\n' "$p" "$(tr '\0' ' ' </proc/"$p"/cmdline | grep -o -- '--verity-root' || echo plain)" \
		"$(awk '/^VmHWM/ { printf "%d MiB", $2 / 1024 }' /proc/"$p"/status)"
done

echo "== result (ratio: chestfs speed / kernel speed)"
if [ "$SIZE_MB" -gt 0 ]; then
	printf '   median of %d: chestfs mount %d MB/s   kernel loop mount (plaintext) %d MB/s   ratio %s (target >= 0.5)\n' "$REPS" \
		"$FUSE_MBPS" "$KERN_MBPS" "$(ratio "$FUSE_MBPS" "$KERN_MBPS")"
	printf '   median of %d: chestfs mount with verity %d MB/s   without %d MB/s   ratio %s (target >= 0.85)\n' "$REPS" \
		"$VER_MBPS" "$FUSE_MBPS" "$(ratio "$VER_MBPS" "$FUSE_MBPS")"
fi
for l in "${RESULTS[@]}"; do echo "$l"; done
