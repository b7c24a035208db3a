#!/bin/sh
# The main job on a laptop: mount testdata/demo.img with its key released by
# the local mock of Azure Attestation + Key Vault (or, with --key-file, with
# the key file), show what is inside, unmount.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/chestfs}
IMG=testdata/demo.img
KEY=testdata/demo.key
WORK=$(mktemp -d "${TMPDIR:-/tmp}/chestfs-demo.XXXXXX")
MNT=$WORK/mnt
mkdir -p "$MNT"
KMS_PID= MOUNT_PID=
cleanup() {
	[ -n "$MOUNT_PID" ] && kill -TERM "$MOUNT_PID" 2>/dev/null && wait "$MOUNT_PID" 2>/dev/null || true
	[ -n "$KMS_PID" ] && kill -TERM "$KMS_PID" 2>/dev/null && wait "$KMS_PID" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

mounted() { grep -qs " $MNT " /proc/self/mountinfo; }

if [ "${1:-}" = "--key-file" ]; then
	echo "== mounting $IMG with its key file"
	"$BIN" mount --key-file "$KEY" "$IMG" "$MNT" &
	MOUNT_PID=$!
else
	echo "== starting mock-kms (a local stand-in for Azure Attestation + Key Vault)"
	"$BIN" mock-kms --state-dir "$WORK/kms" >"$WORK/url" 2>"$WORK/mock-kms.log" &
	KMS_PID=$!
	i=0
	until [ -s "$WORK/url" ]; do
		i=$((i + 1)); [ $i -lt 300 ] || { cat "$WORK/mock-kms.log"; exit 1; }
		sleep 0.1
	done
	URL=$(cat "$WORK/url")
	export CHESTFS_AKV_TOKEN=demo-token
	echo "== importing $KEY as key 'demo-key' with a release policy on the SEV-SNP host data"
	"$BIN" import-key --vault "$URL" --ca "$WORK/kms/ca.pem" --key-file "$KEY" --key-name demo-key --out "$WORK/key.json"
	cat "$WORK/key.json"
	echo "== mounting $IMG: fake SEV-SNP evidence -> attestation token -> key release -> LUKS2 unlock"
	"$BIN" mount --skr "$WORK/key.json" --attestation fake --ca "$WORK/kms/ca.pem" "$IMG" "$MNT" &
	MOUNT_PID=$!
fi

i=0
until mounted; do
	kill -0 "$MOUNT_PID" 2>/dev/null || { MOUNT_PID=; echo "mount failed" >&2; exit 1; }
	i=$((i + 1)); [ $i -lt 600 ] || { echo "mount not ready after 60 s" >&2; exit 1; }
	sleep 0.1
done
echo "== mounted at $MNT"
grep " $MNT " /proc/self/mountinfo | cut -d' ' -f5-
echo "== ls -la $MNT"
ls -la "$MNT"
echo "== cat $MNT/README.txt"
cat "$MNT/README.txt"
echo "== df -h $MNT"
df -h "$MNT"
if [ -t 0 ]; then
	printf '== press Enter to unmount '
	read -r _
fi
echo "== unmounting (SIGTERM)"
kill -TERM "$MOUNT_PID"
wait "$MOUNT_PID"
MOUNT_PID=
mounted && { echo "still mounted" >&2; exit 1; }
echo "== done: unmounted cleanly"
